package grammar

import "testing"

// TestComposition: allOf, $ref with keywords beside it, keywords beside a union,
// nullable, tuples, unique items and counted keys.
func TestComposition(t *testing.T) {
	pet := `"$defs":{"Pet":{"type":"object","properties":{"name":{"type":"string","maxLength":4},"age":{"type":"integer","minimum":0}},"required":["name"]}}`
	for _, c := range []struct {
		schema string
		yes    []string
		no     []string
	}{
		// Pydantic 1's wrapper of a reference, with annotations beside it.
		{`{` + pet + `,"type":"object","properties":{"p":{"allOf":[{"$ref":"#/$defs/Pet"}],"title":"P","default":null}}}`,
			[]string{`{"p":{"name":"Rex"}}`, `{}`}, []string{`{"p":{"name":"Rexxy"}}`, `{"p":{}}`, `{"p":null}`}},
		// A model that extends another.
		{`{` + pet + `,"allOf":[{"$ref":"#/$defs/Pet"},{"properties":{"owner":{"type":"string"},"age":{"maximum":20}},"required":["owner"]}]}`,
			[]string{`{"name":"a","owner":"b"}`, `{"owner":"b","name":"a","age":20}`}, []string{`{"name":"a"}`, `{"name":"a","owner":"b","age":21}`, `{"name":"a","owner":"b","x":1}`}},
		// $ref beside other keywords.
		{`{` + pet + `,"$ref":"#/$defs/Pet","required":["age"]}`, []string{`{"name":"a","age":1}`}, []string{`{"name":"a"}`}},
		// OpenAPI's nullable, with a type and beside a $ref.
		{`{"type":"string","nullable":true,"maxLength":1}`, []string{`"a"`, `null`}, []string{`"ab"`, `1`}},
		{`{` + pet + `,"$ref":"#/$defs/Pet","nullable":true}`, []string{`null`, `{"name":"a"}`}, []string{`{}`}},
		{`{"type":"string","nullable":false}`, []string{`"a"`}, []string{`null`}},
		// Keywords beside a union go into each branch.
		{`{"type":"object","required":["k"],"anyOf":[{"properties":{"k":{"const":1}}},{"properties":{"k":{"const":"x"},"v":{"type":"null"}}}]}`,
			[]string{`{"k":1}`, `{"k":"x","v":null}`}, []string{`{}`, `{"k":1,"v":null}`, `{"v":null}`}},
		{`{"maxLength":2,"anyOf":[{"type":"string"},{"type":"integer"}]}`, []string{`"ab"`, `123`}, []string{`"abc"`}},
		// Tuples, 2020-12's and draft 7's.
		{`{"type":"array","prefixItems":[{"type":"integer"},{"type":"string"}],"items":false}`, []string{`[1,"a"]`, `[1]`, `[]`}, []string{`[1,"a",2]`, `["a"]`}},
		{`{"type":"array","prefixItems":[{"type":"integer"}],"items":{"type":"boolean"},"minItems":2}`, []string{`[1,true,false]`}, []string{`[1]`, `[1,2]`}},
		{`{"type":"array","items":[{"type":"integer"},{"type":"string"}],"minItems":2}`, []string{`[1,"a"]`, `[1,"a",null]`}, []string{`[1,2]`, `[1]`}},
		{`{"type":"array","items":false}`, []string{`[]`}, []string{`[1]`}},
		// Unique items of an enum.
		{`{"type":"array","items":{"enum":["a","ab",1,null]},"uniqueItems":true}`, []string{`["a","ab",1,null]`, `[]`, `["ab","a"]`}, []string{`["a","a"]`, `[1,null,1]`, `["a","ab",1,null,"a"]`}},
		{`{"type":"array","items":{"enum":["a","b"]},"uniqueItems":false}`, []string{`["a","a"]`}, nil},
		// Counted keys.
		{`{"type":"object","additionalProperties":{"type":"integer"},"minProperties":1,"maxProperties":2}`, []string{`{"a":1}`, `{"a":1,"b":2}`}, []string{`{}`, `{"a":1,"b":2,"c":3}`}},
		{`{"type":"object","properties":{"a":{},"b":{},"c":{}},"required":["c"],"maxProperties":2}`, []string{`{"c":1}`, `{"a":1,"c":1}`, `{"c":1,"b":2}`}, []string{`{"a":1,"b":1}`, `{"a":1,"b":1,"c":1}`}},
		// An enum beside a string rule keeps the values the rule allows.
		{`{"type":"string","enum":["ab","abc","2024-01-01"],"maxLength":3}`, []string{`"ab"`, `"abc"`}, []string{`"2024-01-01"`}},
		{`{"type":"string","enum":["ab","2024-01-01"],"format":"date"}`, []string{`"2024-01-01"`}, []string{`"ab"`}},
	} {
		root := mustSchema(t, c.schema)
		for _, s := range c.yes {
			if _, whole := run(root, s); !whole {
				t.Errorf("%s: %s refused", c.schema, s)
			}
		}
		for _, s := range c.no {
			if _, whole := run(root, s); whole {
				t.Errorf("%s: %s taken", c.schema, s)
			}
		}
	}
}
