package grammar

import (
	"bytes"
	"encoding/json"
	"math/big"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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
	`{"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":5},"score":{"type":"number","exclusiveMinimum":0,"maximum":2.5},
		"n":{"type":"integer","multipleOf":3,"minimum":-10,"maximum":10},"when":{"type":"string","format":"date-time"}},"required":["name"]}`,
	`{"type":"array","prefixItems":[{"type":"string","format":"date"},{"type":"string","format":"uuid"},{"type":"string","format":"ipv4"},{"type":"string","format":"email"},{"type":"string","format":"uri"},{"type":"string","format":"ipv6"}],
		"items":{"type":"string","format":"hostname","maxLength":12}}`,
	`{"type":"array","items":{"enum":["a","ab","b",1,null]},"uniqueItems":true,"minItems":1}`,
	`{"$defs":{"base":{"type":"object","properties":{"id":{"type":"integer","minimum":0}},"required":["id"]}},
		"allOf":[{"$ref":"#/$defs/base"},{"properties":{"tag":{"type":"string","maxLength":3},"id":{"maximum":5}}}],"maxProperties":2}`,
	`{"anyOf":[{"type":"string","format":"time"},{"type":"string","format":"duration"},{"type":"number","minimum":-1.25,"exclusiveMaximum":0.5}],"nullable":true}`,
	`{"type":"object","additionalProperties":{"type":"string","minLength":2},"minProperties":2,"maxProperties":3,"properties":{"k":{"type":"boolean"},"j":{"type":"null"}},"required":["k"]}`,
	`{"type":"array","items":[{"type":"integer"},{"type":"string","maxLength":1},{"type":"string","format":"uuid4"}],"additionalItems":false}`,
	`{"type":"string","format":"uuid","pattern":"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"}`,
	`{"type":"string","format":"date-time","pattern":"^(?:(?:\\d\\d[2468][048]|\\d\\d[13579][26]|\\d\\d0[48]|[02468][048]00|[13579][26]00)-02-29|\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|(?:02)-(?:0[1-9]|1\\d|2[0-8])))T(?:(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d+)?(?:Z))$"}`,
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
	for i, docs := range [][]string{
		{`{"name":"Zoë","score":2.5,"n":-9,"when":"2024-02-29T23:59:59.123456+05:30"}`, `{"name":"","score":0}`, `{"name":"abcdef"}`, `{"name":"a","score":1e0}`, `{"name":"a","n":4}`},
		{`["2023-02-29","123e4567-e89b-12d3-a456-426614174000","10.0.0.255","a.b+c@ex-ample.co","http://h:80/a%2F?b#c","::ffff:1.2.3.4","my-host.local"]`, `["2024-02-29","123e4567-e89b-12d3-a456-426614174000","10.0.0.255","a.b+c@ex-ample.co","http://h:80/a%2F?b#c","1:2:3:4:5:6:7::","my-host.local"]`, `["2024-02-29","123e4567-e89b-12d3-a456-426614174000","10.0.0.255","a.b+c@ex-ample.co","http://h:80/a%2F?b#c","1:2:3:4:5:6:7:8:9"]`, `["2024-12-31"]`, `["2024-01-01","x"]`, `["2024-01-01","123E4567-E89B-12D3-A456-426614174000","256.1.1.1"]`},
		{`["a","ab",1,null,"b"]`, `["a","a"]`, `[]`, `[null,1]`},
		{`{"id":5,"tag":"abc"}`, `{"id":6}`, `{"tag":"a"}`, `{"id":0,"x":1}`},
		{`"23:59:60Z"`, `"00:00:00.5-00:00"`, `"P1Y2M3DT4H5M6S"`, `"P1Y3D"`, `"PT1.5S"`, `-1.25`, `0.4999`, `0.5`, `null`, `"P2W"`},
		{`{"k":true,"j":null}`, `{"k":false}`, `{"k":true,"ab":"cd","x":"yz"}`, `{"k":true,"ab":"c"}`, `{"k":true,"j":null,"ab":"cd"}`},
		{`[1,"a"]`, `[1,"ab"]`, `[1,"a",2]`, `[1]`, `[1,"a","123e4567-e89b-42d3-a456-426614174000"]`, `[1,"a","123e4567-e89b-42d3-c456-426614174000"]`, `[1,"a","123e4567-e89b-12d3-a456-426614174000"]`},
		{`"123e4567-e89b-42d3-a456-426614174000"`, `"00000000-0000-0000-0000-000000000000"`, `"ffffffff-ffff-ffff-ffff-ffffffffffff"`, `"123e4567-e89b-02d3-a456-426614174000"`, `"00000000-0000-0000-0000-000000000001"`},
		{`"2024-02-29T12:00:00Z"`, `"2023-02-29T12:00:00Z"`, `"2024-01-01T00:00:00+01:00"`, `"1900-02-28T00:00:00.1234567Z"`},
	} {
		for _, doc := range docs {
			f.Add(uint8(8+i), doc)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, doc string) {
		schema := diffSchemas[int(which)%len(diffSchemas)]
		fm, err := SchemaFormat([]byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		sd := json.NewDecoder(strings.NewReader(schema))
		sd.UseNumber()
		var root any
		if err := sd.Decode(&root); err != nil {
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
// exponent, enum and const values compare as compact JSON, formats are the subsets the
// package comment names, and a number under bounds that allow a fraction is written
// without an exponent, as the package comment says. A schema with properties and no
// additionalProperties allows no other key; in an allOf (or beside a $ref or a union),
// a key that some part names.
type validator struct{ root any }

func (v *validator) valid(s, x any, _ string) bool { return v.check(s, x, false) }

// notAsserting are the keywords the validator skips.
var notAsserting = map[string]bool{"title": true, "description": true, "$defs": true, "default": true, "discriminator": true, "examples": true, "$schema": true}

func asserting(m map[string]any, skip ...string) int {
	n := 0
	for k := range m {
		if !notAsserting[k] && !slices.Contains(skip, k) {
			n++
		}
	}
	return n
}

func (v *validator) target(ref string) any {
	if ref == "#" {
		return v.root
	}
	name := strings.TrimPrefix(ref, "#/$defs/")
	return v.root.(map[string]any)["$defs"].(map[string]any)[name]
}

// parts are the schemas whose conjunction s is (allOf, $ref), s less those.
func (v *validator) parts(s any) []map[string]any {
	m, ok := s.(map[string]any)
	if !ok {
		return nil // true: nothing to check
	}
	var out []map[string]any
	if ref, ok := m["$ref"].(string); ok {
		out = append(out, v.parts(v.target(ref))...)
	}
	all, _ := m["allOf"].([]any)
	for _, a := range all {
		out = append(out, v.parts(a)...)
	}
	rest := map[string]any{}
	for k, val := range m {
		if k != "$ref" && k != "allOf" {
			rest[k] = val
		}
	}
	return append(out, rest)
}

// all checks x against every part, objects open, then for an object that some part
// gives properties and none additionalProperties, that every key is named by some part.
func (v *validator) all(parts []map[string]any, x any, open bool) bool {
	for _, p := range parts {
		if !v.check(p, x, true) {
			return false
		}
	}
	obj, isObj := x.(map[string]any)
	if !isObj || open {
		return true
	}
	named, anyProps := map[string]bool{}, false
	for _, p := range parts {
		if _, ok := p["additionalProperties"]; ok {
			return true
		}
		props, ok := p["properties"].(map[string]any)
		anyProps = anyProps || ok
		for k := range props {
			named[k] = true
		}
	}
	for k := range obj {
		if anyProps && !named[k] {
			return false
		}
	}
	return true
}

func (v *validator) check(s, x any, open bool) bool {
	m, ok := s.(map[string]any)
	if !ok {
		return s == true
	}
	if m["nullable"] == true && m["type"] == nil {
		rest := map[string]any{}
		for k, val := range m {
			if k != "nullable" {
				rest[k] = val
			}
		}
		return x == nil || v.check(rest, x, open)
	}
	_, hasAll := m["allOf"]
	ref, hasRef := m["$ref"].(string)
	switch {
	case hasAll || hasRef && asserting(m) > 1:
		return v.all(v.parts(m), x, open)
	case hasRef:
		return v.check(v.target(ref), x, open)
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		alts, ok := m[k].([]any)
		if !ok {
			continue
		}
		if asserting(m) == 1 {
			return slices.ContainsFunc(alts, func(a any) bool { return v.check(a, x, open) })
		}
		siblings := map[string]any{}
		for key, val := range m {
			if key != k {
				siblings[key] = val
			}
		}
		return slices.ContainsFunc(alts, func(a any) bool { return v.all(append(v.parts(siblings), v.parts(a)...), x, open) })
	}
	if t, ok := m["type"]; ok && !typeOK(t, x) && !(x == nil && m["nullable"] == true) {
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
			extra = !hasProps || open
		}
		for k, val := range x {
			if ps, ok := props[k]; ok {
				if !v.check(ps, val, false) {
					return false
				}
			} else if !v.check(extra, val, false) {
				return false
			}
		}
		req, _ := m["required"].([]any)
		for _, r := range req {
			if _, ok := x[r.(string)]; !ok {
				return false
			}
		}
		if !countOK(m, "minProperties", "maxProperties", len(x)) {
			return false
		}
	case []any:
		if !countOK(m, "minItems", "maxItems", len(x)) {
			return false
		}
		prefix, _ := m["prefixItems"].([]any)
		items, hasItems := m["items"]
		if list, ok := items.([]any); ok { // draft 7's tuple
			prefix = list
			items, hasItems = m["additionalItems"]
		}
		for i, e := range x {
			switch {
			case i < len(prefix):
				if !v.check(prefix[i], e, false) {
					return false
				}
			case hasItems:
				if !v.check(items, e, false) {
					return false
				}
			}
		}
		if m["uniqueItems"] == true {
			seen := map[string]bool{}
			for _, e := range x {
				if seen[compact(e)] {
					return false
				}
				seen[compact(e)] = true
			}
		}
	case string:
		n := utf8.RuneCountInString(x)
		if !countOK(m, "minLength", "maxLength", n) {
			return false
		}
		if f, ok := m["format"].(string); ok && !formatOK(f, x) {
			return false
		}
		if p, ok := m["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			return false
		}
	case json.Number:
		if !numberOK(m, x) {
			return false
		}
	}
	return true
}

// countOK checks a count against a pair of bounds.
func countOK(m map[string]any, lo, hi string, n int) bool {
	if b, ok := m[lo].(json.Number); ok && float64(n) < mustFloat(b) {
		return false
	}
	if b, ok := m[hi].(json.Number); ok && float64(n) > mustFloat(b) {
		return false
	}
	return true
}

func mustFloat(n json.Number) float64 {
	f, _ := n.Float64()
	return f
}

// numberOK checks minimum, maximum, their exclusive forms and multipleOf, exactly.
func numberOK(m map[string]any, x json.Number) bool {
	val, ok := new(big.Rat).SetString(string(x))
	if !ok {
		return false
	}
	fraction := m["type"] == nil || typeOK(m["type"], json.Number("0.5"))
	for i, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
		b, ok := m[k].(json.Number)
		if !ok {
			continue
		}
		if fraction && strings.ContainsAny(string(x), "eE") {
			return false // the grammar writes no exponent under bounds
		}
		r, _ := new(big.Rat).SetString(string(b))
		c := val.Cmp(r)
		if i == 0 && c < 0 || i == 1 && c <= 0 || i == 2 && c > 0 || i == 3 && c >= 0 {
			return false
		}
	}
	if b, ok := m["multipleOf"].(json.Number); ok {
		r, _ := new(big.Rat).SetString(string(b))
		if !new(big.Rat).Quo(val, r).IsInt() {
			return false
		}
	}
	return true
}

// formatOK checks a string against the subset of a format the package comment names.
func formatOK(format, s string) bool {
	switch format {
	case "date":
		_, err := time.Parse("2006-01-02", s)
		return err == nil && len(s) == 10
	case "time":
		return timeRE.MatchString(s)
	case "date-time":
		date, t, ok := strings.Cut(s, "T")
		return ok && formatOK("date", date) && formatOK("time", t)
	case "duration":
		return durationRE.MatchString(s)
	case "uuid":
		return uuidRE.MatchString(s)
	case "ipv4":
		a, err := netip.ParseAddr(s)
		return err == nil && a.Is4()
	case "hostname":
		return hostnameOK(s)
	case "email":
		local, domain, ok := strings.Cut(s, "@")
		labels := strings.Split(domain, ".")
		return ok && len(local) <= 64 && localRE.MatchString(local) && hostnameOK(domain) &&
			len(labels) >= 2 && tldRE.MatchString(labels[len(labels)-1])
	case "uri":
		return uriRE.MatchString(s)
	case "ipv6":
		a, err := netip.ParseAddr(s)
		return err == nil && a.Is6() && a.Zone() == "" && !strings.ContainsAny(s, "%")
	case "uuid4":
		return uuidRE.MatchString(s) && s[14] == '4' && strings.ContainsRune("89abAB", rune(s[19]))
	}
	return true // an annotation
}

func hostnameOK(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

var (
	timeRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`)
	durTime    = `T([0-9]{1,16}H([0-9]{1,16}M([0-9]{1,16}S)?)?|[0-9]{1,16}M([0-9]{1,16}S)?|[0-9]{1,16}S)`
	durationRE = regexp.MustCompile(`^P([0-9]{1,16}W|([0-9]{1,16}Y([0-9]{1,16}M([0-9]{1,16}D)?)?|[0-9]{1,16}M([0-9]{1,16}D)?|[0-9]{1,16}D)(` + durTime + `)?|` + durTime + `)$`)
	uuidRE     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	labelRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	localRE    = regexp.MustCompile(`^[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*$`)
	tldRE      = regexp.MustCompile(`^[A-Za-z]{2,}$`)
	uriChars   = `([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})`
	uriRE      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9._~-]+(:[0-9]{1,5})?(/` + uriChars + `*)*(\?(` + uriChars + `|[/?])*)?(#(` + uriChars + `|[/?])*)?$`)
)

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
