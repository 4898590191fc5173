package grammar

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// diffSchemas are the schemas FuzzSchemaDiff checks documents against: every keyword of
// the subset, keys that need escapes, enums whose values begin alike, ambiguous
// unions and recursion.
var diffSchemas = []string{
	`{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"score":{"type":"number"},
		"tags":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":3},"ok":{"type":"boolean"},"none":{"type":"null"}},"required":["name"]}`,
	`{"type":"object","properties":{"a\"b":{"type":"integer"},"c\\d":{"type":"string"},"é\u2028":{"type":"boolean"}},"additionalProperties":{"type":["integer","null"]}}`,
	`{"enum":["a","ab","abc",1,12,-1.5,true,null,{"x":[1]},["a"]]}`,
	`{"anyOf":[{"type":"object","properties":{"k":{"type":"string"}},"required":["k"]},{"type":"object","properties":{"k":{"type":"integer"},"n":{"const":"v"}}},{"type":"array","items":{"$ref":"#"}},{"const":"leaf"}]}`,
	`{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"type":"null"},{"$ref":"#/$defs/node"}]}},"required":["v","next"]}},"$ref":"#/$defs/node"}`,
	`{"type":"array","items":{"oneOf":[{"type":"string","enum":["x","xy"]},{"type":"integer"},{"type":"array","maxItems":0}]},"maxItems":4}`,
	`{"type":"object","additionalProperties":false}`,
	`{"type":["number","string"]}`,
}

// FuzzSchemaDiff: a document the matcher takes whole is JSON that a validator of the
// subset, written from the JSON Schema text, accepts; and a document that validator
// accepts, written as compact JSON within the grammar's bounds, the matcher takes whole.
func FuzzSchemaDiff(f *testing.F) {
	for i, doc := range []string{`{"name":"x","age":3,"tags":["a"]}`, `{"a\"b":1,"c\\d":"s","é\u2028":true,"z":null}`, `"ab"`, `{"x":[1]}`,
		`[{"k":"s"},[["leaf"]],{"k":1,"n":"v"}]`, `{"v":1,"next":{"v":2,"next":null}}`, `["xy",3,[]]`, `{}`, `"s"`, `-0.5e+3`,
		`{"name":"x","age":3.0}`, `{"\u0061\"b":"s"}`, `["x",1,[],"x","x"]`, `12`, `{"k":"s","n":"v"}`} {
		f.Add(uint8(i), doc)
	}
	f.Fuzz(func(t *testing.T, which uint8, doc string) {
		schema := diffSchemas[int(which)%len(diffSchemas)]
		fm, err := SchemaFormat([]byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		var root any
		if err := json.Unmarshal([]byte(schema), &root); err != nil {
			t.Fatal(err)
		}
		v := &validator{root: root}
		_, whole := fm.Check([]byte(doc))
		d := json.NewDecoder(strings.NewReader(doc))
		d.UseNumber()
		var val any
		decoded := d.Decode(&val) == nil && !d.More()
		if whole && !decoded {
			t.Fatalf("%s: %q taken whole but is not JSON", schema, doc)
		}
		if !decoded {
			return
		}
		valid := v.valid(root, val, doc)
		if whole && !valid {
			t.Fatalf("%s: %q taken whole but the validator refuses it", schema, doc)
		}
		if valid && !whole && compact(val) == doc && digitsOK(doc) {
			t.Fatalf("%s: %q is valid compact JSON but refused", schema, doc)
		}
	})
}

// compact is v as Go's encoder writes it: no white space, keys sorted, the shortest
// escapes.
func compact(v any) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if e.Encode(v) != nil {
		return ""
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// digitsOK reports whether no run of digits outside strings passes maxDigits.
func digitsOK(s string) bool {
	in, esc, run := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case !in && c >= '0' && c <= '9':
			if run++; run > maxDigits {
				return false
			}
			continue
		}
		run = 0
	}
	return true
}

// validator checks a decoded document against the subset, read from the schema's
// JSON text without the compiler. Integers are numbers written without fraction or
// exponent, and enum and const values compare as compact JSON, as the package
// comment says.
type validator struct{ root any }

func (v *validator) valid(s, x any, _ string) bool {
	m, ok := s.(map[string]any)
	if !ok {
		return s == true
	}
	if ref, ok := m["$ref"].(string); ok {
		if ref == "#" {
			return v.valid(v.root, x, "")
		}
		name := strings.TrimPrefix(ref, "#/$defs/")
		return v.valid(v.root.(map[string]any)["$defs"].(map[string]any)[name], x, "")
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := m[k].([]any); ok {
			return slices.ContainsFunc(alts, func(a any) bool { return v.valid(a, x, "") })
		}
	}
	if t, ok := m["type"]; ok && !typeOK(t, x) {
		return false
	}
	if c, ok := m["const"]; ok && compact(c) != compact(x) {
		return false
	}
	if e, ok := m["enum"].([]any); ok && !slices.ContainsFunc(e, func(c any) bool { return compact(c) == compact(x) }) {
		return false
	}
	switch x := x.(type) {
	case map[string]any:
		props, hasProps := m["properties"].(map[string]any)
		extra, hasExtra := m["additionalProperties"]
		if !hasExtra {
			extra = !hasProps
		}
		for k, val := range x {
			if ps, ok := props[k]; ok {
				if !v.valid(ps, val, "") {
					return false
				}
			} else if !v.valid(extra, val, "") {
				return false
			}
		}
		req, _ := m["required"].([]any)
		for _, r := range req {
			if _, ok := x[r.(string)]; !ok {
				return false
			}
		}
	case []any:
		if n, ok := m["minItems"].(float64); ok && float64(len(x)) < n {
			return false
		}
		if n, ok := m["maxItems"].(float64); ok && float64(len(x)) > n {
			return false
		}
		if it, ok := m["items"]; ok {
			for _, e := range x {
				if !v.valid(it, e, "") {
					return false
				}
			}
		}
	}
	return true
}

func typeOK(t, x any) bool {
	if list, ok := t.([]any); ok {
		return slices.ContainsFunc(list, func(n any) bool { return typeOK(n, x) })
	}
	switch t {
	case "object":
		_, ok := x.(map[string]any)
		return ok
	case "array":
		_, ok := x.([]any)
		return ok
	case "string":
		_, ok := x.(string)
		return ok
	case "number":
		_, ok := x.(json.Number)
		return ok
	case "integer":
		n, ok := x.(json.Number)
		return ok && !strings.ContainsAny(string(n), ".eE")
	case "boolean":
		_, ok := x.(bool)
		return ok
	case "null":
		return x == nil
	}
	return false
}
