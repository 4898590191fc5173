package grammar

import (
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
)

// Composition: allOf, a $ref with other keywords beside it, and a union with keywords
// beside it are rewritten into schemas the compiler takes without them. An allOf is
// merged into one schema, keyword by keyword, where its parts can be (Pydantic 1's
// allOf: [{$ref}] wrapper, models that extend others); what cannot be merged is refused.
// Keywords beside a union are distributed into its branches: S ∧ (A ∨ B) is
// (S ∧ A) ∨ (S ∧ B).

// maxParts bounds the schemas one allOf merges, references followed.
const maxParts = 64

// allOf compiles s, a schema with allOf or a $ref beside other keywords, as the one
// schema its parts merge into. A schema met again while it is compiled (recursion
// through allOf) is the same node.
func (c *compiler) allOf(s map[string]any, at string) (*node, error) {
	key, err := json.Marshal(s)
	if err != nil {
		return nil, c.errorf(at, "%v", err)
	}
	if n, ok := c.merged[string(key)]; ok {
		return n, nil
	}
	parts, err := c.conjuncts(s, at, nil, 0)
	if err != nil {
		return nil, err
	}
	m, err := c.merge(parts, at)
	if err != nil {
		return nil, err
	}
	n := &node{}
	c.merged[string(key)] = n
	got, err := c.compile(m, at)
	if err != nil {
		return nil, err
	}
	*n = *got
	return n, nil
}

// conjuncts appends to out the schemas whose conjunction s is: s without allOf and
// $ref, the allOf branches' and the $ref target's, each taken apart likewise.
func (c *compiler) conjuncts(s map[string]any, at string, out []map[string]any, depth int) ([]map[string]any, error) {
	if depth > 16 {
		return nil, c.errorf(at, "allOf and $ref nested more than 16 deep")
	}
	if ref, ok := s["$ref"]; ok {
		target, err := c.target(ref, at)
		if err != nil {
			return nil, err
		}
		if out, err = c.part(target, at+"/$ref", out, depth); err != nil {
			return nil, err
		}
	}
	if all, ok := s["allOf"]; ok {
		list, ok := all.([]any)
		if !ok || len(list) == 0 {
			return nil, c.errorf(at+"/allOf", "a non-empty array of schemas")
		}
		for i, a := range list {
			var err error
			if out, err = c.part(a, fmt.Sprintf("%s/allOf/%d", at, i), out, depth); err != nil {
				return nil, err
			}
		}
	}
	rest := without(s, "allOf", "$ref")
	if len(out) >= maxParts {
		return nil, c.errorf(at, "allOf merges more than %d schemas", maxParts)
	}
	return append(out, rest), nil
}

func (c *compiler) part(v any, at string, out []map[string]any, depth int) ([]map[string]any, error) {
	switch v := v.(type) {
	case bool:
		if !v {
			return nil, c.errorf(at, "false matches nothing")
		}
		return out, nil
	case map[string]any:
		return c.conjuncts(v, at, out, depth+1)
	}
	return nil, c.errorf(at, "a schema is an object or a boolean, not %s", jsonKind(v))
}

// merge returns one schema that holds exactly where every part does, or refuses the
// keywords it cannot merge. Properties are the union of the parts' (a property in
// several is the allOf of its schemas), and an object keeps only them unless a part
// says otherwise: as for one schema, a key no part names is not written.
func (c *compiler) merge(parts []map[string]any, at string) (map[string]any, error) {
	out := map[string]any{}
	for _, p := range parts {
		for k, v := range p {
			if annotations[k] {
				continue
			}
			if !keywords[k] {
				return nil, c.errorf(at, "keyword %q is not supported", k)
			}
			old, seen := out[k]
			if !seen {
				out[k] = v
				continue
			}
			merged, err := c.mergeKeyword(k, old, v, at)
			if err != nil {
				return nil, err
			}
			out[k] = merged
		}
	}
	// A part's additionalProperties says what keys it does not name may be: a
	// property another part names would fall under it too.
	for i, p := range parts {
		ap, ok := p["additionalProperties"]
		if !ok || ap == true {
			continue
		}
		own, _ := p["properties"].(map[string]any)
		for j, q := range parts {
			props, _ := q["properties"].(map[string]any)
			for name := range props {
				if _, named := own[name]; !named && i != j {
					return nil, c.errorf(at+"/allOf", "property %q of one part falls under another's additionalProperties: not supported", name)
				}
			}
		}
	}
	return out, nil
}

// mergeKeyword is keyword k of the merge of two schemas that give it as a and b.
func (c *compiler) mergeKeyword(k string, a, b any, at string) (any, error) {
	switch k {
	case "type":
		ta, err := c.types(a, at)
		if err != nil {
			return nil, err
		}
		tb, err := c.types(b, at)
		if err != nil {
			return nil, err
		}
		t := ta & tb // a number and an integer: an integer
		if t == 0 {
			return nil, c.errorf(at+"/allOf", "no type is allowed by every part")
		}
		var names []any
		for name, bits := range typeNames {
			if t&bits == bits {
				names = append(names, name)
			}
		}
		slices.SortFunc(names, func(x, y any) int { return cmpString(x.(string), y.(string)) })
		return names, nil
	case "properties":
		pa, okA := a.(map[string]any)
		pb, okB := b.(map[string]any)
		if !okA || !okB {
			return nil, c.errorf(at+"/properties", "an object")
		}
		out := make(map[string]any, len(pa)+len(pb))
		for name, v := range pa {
			out[name] = v
		}
		for name, v := range pb {
			if old, ok := out[name]; ok {
				out[name] = map[string]any{"allOf": []any{old, v}}
			} else {
				out[name] = v
			}
		}
		return out, nil
	case "required":
		la, _ := a.([]any)
		lb, _ := b.([]any)
		out := slices.Clone(la)
		for _, r := range lb {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
		return out, nil
	case "additionalProperties", "items", "additionalItems":
		if a == false || b == false {
			return false, nil
		}
		if _, isList := a.([]any); isList {
			return nil, c.errorf(at+"/allOf", "%s given twice as tuples: not supported", k)
		}
		if _, isList := b.([]any); isList {
			return nil, c.errorf(at+"/allOf", "%s given twice as tuples: not supported", k)
		}
		return map[string]any{"allOf": []any{a, b}}, nil
	case "minimum", "exclusiveMinimum", "minItems", "minLength", "minProperties":
		return c.extreme(a, b, 1, at+"/"+k)
	case "maximum", "exclusiveMaximum", "maxItems", "maxLength", "maxProperties":
		return c.extreme(a, b, -1, at+"/"+k)
	case "uniqueItems", "nullable":
		// uniqueItems: either asks it; nullable: null is allowed where both allow it.
		if k == "uniqueItems" {
			return a == true || b == true, nil
		}
		return a == true && b == true, nil
	case "enum", "const":
		ea, eb := enumList(k, a), enumList(k, b)
		var out []any
		for _, v := range ea {
			if slices.ContainsFunc(eb, func(w any) bool { return compactJSON(v) == compactJSON(w) }) {
				out = append(out, v)
			}
		}
		if len(out) == 0 {
			return nil, c.errorf(at+"/allOf", "no value is in every part's %s", k)
		}
		return out, nil
	}
	if compactJSON(a) == compactJSON(b) {
		return a, nil // format, pattern, multipleOf, a union: the same in both
	}
	return nil, c.errorf(at+"/allOf", "%s given differently in two parts: not supported", k)
}

// extreme is the greater of two numbers (sign 1) or the lesser (-1).
func (c *compiler) extreme(a, b any, sign int, at string) (any, error) {
	na, okA := a.(json.Number)
	nb, okB := b.(json.Number)
	ra, okRA := new(big.Rat).SetString(string(na))
	rb, okRB := new(big.Rat).SetString(string(nb))
	if !okA || !okB || !okRA || !okRB {
		return nil, c.errorf(at, "a number")
	}
	if ra.Cmp(rb)*sign >= 0 {
		return a, nil
	}
	return b, nil
}

// enumList is the values an enum or const keyword lists.
func enumList(k string, v any) []any {
	if k == "const" {
		return []any{v}
	}
	l, _ := v.([]any)
	return l
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compactJSON is v as compact JSON (keys sorted), to compare values.
func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// distribute compiles s, a union (keyword k, branches list) with other keywords
// beside it, as the union of each branch merged with them.
func (c *compiler) distribute(s map[string]any, k string, list []any, at string) (*node, error) {
	siblings := without(s, k)
	for name := range siblings {
		if annotations[name] {
			delete(siblings, name)
		}
	}
	branches := make([]any, len(list))
	for i, b := range list {
		branches[i] = map[string]any{"allOf": []any{siblings, b}}
	}
	return c.compile(map[string]any{k: branches}, at)
}
