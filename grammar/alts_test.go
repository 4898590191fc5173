package grammar

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestManyAlternatives: an anyOf of more branches than the matcher keeps open at once
// still takes every branch's value.
func TestManyAlternatives(t *testing.T) {
	var alts []string
	for i := range 100 {
		alts = append(alts, fmt.Sprintf(`{"const":"v%d"}`, i))
	}
	schema := `{"anyOf":[` + strings.Join(alts, ",") + `]}`
	root := mustSchema(t, schema)
	for _, text := range []string{`"v0"`, `"v63"`, `"v64"`, `"v99"`} {
		if ok, whole := run(root, text); !ok || !whole {
			t.Errorf("%s: valid prefix %v, whole %v; want true, true", text, ok, whole)
		}
	}
}

// TestTooManyAlternatives: an anyOf that opens more values at one byte than the matcher
// keeps open is refused, rather than matched with some branches silently dropped.
func TestTooManyAlternatives(t *testing.T) {
	var alts []string
	for i := range maxAlts + 1 {
		alts = append(alts, fmt.Sprintf(`{"type":"object","properties":{"k%d":{"type":"integer"}},"required":["k%d"]}`, i, i))
	}
	schema := `{"anyOf":[` + strings.Join(alts, ",") + `]}`
	if _, err := SchemaFormat([]byte(schema)); !errors.Is(err, ErrSchema) {
		t.Errorf("SchemaFormat(%d object branches) = %v, want ErrSchema", maxAlts+1, err)
	}
	// Nested anyOf counts its leaves.
	nested := `{"anyOf":[{"anyOf":[` + strings.Join(alts[:maxAlts/2+1], ",") + `]},{"anyOf":[` + strings.Join(alts[maxAlts/2+1:], ",") + `]}]}`
	if _, err := SchemaFormat([]byte(nested)); !errors.Is(err, ErrSchema) {
		t.Errorf("SchemaFormat(nested, %d object branches) = %v, want ErrSchema", maxAlts+1, err)
	}
	ok := `{"anyOf":[` + strings.Join(alts[:maxAlts], ",") + `,{"type":"string"}]}`
	if _, err := SchemaFormat([]byte(ok)); err != nil {
		t.Errorf("SchemaFormat(%d object branches and a string) = %v", maxAlts, err)
	}
}

// TestUnionBlowUp: unions of unions through definitions, each doubling the branches,
// are refused at once rather than flattened into 2^depth branches.
func TestUnionBlowUp(t *testing.T) {
	defs := []string{}
	for i := range 40 {
		defs = append(defs, fmt.Sprintf(`"d%d":{"anyOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]}`, i, i+1, i+1))
	}
	defs = append(defs, `"d40":{"type":"object"}`)
	schema := `{"$defs":{` + strings.Join(defs, ",") + `},"$ref":"#/$defs/d0"}`
	if _, err := SchemaFormat([]byte(schema)); !errors.Is(err, ErrSchema) {
		t.Errorf("SchemaFormat(2^40 branches) = %v, want ErrSchema", err)
	}
}
