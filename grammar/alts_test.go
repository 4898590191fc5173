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
