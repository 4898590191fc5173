package grammar

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

// run feeds text to a matcher of root: ok is false when a byte was refused, whole
// reports whether the text is a whole document.
func run(root *node, text string) (ok, whole bool) {
	alts := start(root, "", "")
	for i := 0; i < len(text); i++ {
		if alts = stepAll(nil, alts, text[i]); len(alts) == 0 {
			return false, false
		}
	}
	return true, accepting(alts)
}

func mustSchema(t *testing.T, s string) *node {
	t.Helper()
	f, err := SchemaFormat([]byte(s))
	if err != nil {
		t.Fatalf("SchemaFormat(%s): %v", s, err)
	}
	return f.root
}

func TestJSONObject(t *testing.T) {
	for _, c := range []struct {
		text        string
		prefix, all bool // a valid prefix; a whole object
	}{
		{`{}`, true, true},
		{` {"a": 1}`, true, true},
		{`{ "a" : [ 1 , 2 ] }`, true, true},
		{`{"a":[1,2.5e-3,-0,true,false,null,"x\u00e9\n"],"b":{"c":{}}}`, true, true},
		{`{"a":"é€😀"}`, true, true},
		{"{\"a\":\"\n\"}", false, false}, // a raw newline in a string
		{`{"a":1`, true, false},
		{`{"a":1.`, true, false},
		{`{"a":-`, true, false},
		{`{"a":"\u12`, true, false},
		{`[1]`, false, false},
		{`"x"`, false, false},
		{`{"a":01}`, false, false},
		{`{"a":1,}`, false, false},
		{`{"a" 1}`, false, false},
		{`{,}`, false, false},
		{`{"a":tru}`, false, false},
		{`{"a":"\x"}`, false, false},
		{"{\"a\":\"\x01\"}", false, false},
		{"{\"a\":\"\xc0\x80\"}", false, false},     // overlong
		{"{\"a\":\"\xed\xa0\x80\"}", false, false}, // a surrogate
		{"{\"a\":\"\xf4\x90\x80\x80\"}", false, false},
		{`{} `, false, false},       // nothing after the value
		{`{"a":1}{}`, false, false}, // one value only
		{"{ }", true, true},
		{"{  }", false, false},
		{"{\n}", false, false},
		{"{\t}", false, false},
		{"{\r\n}", false, false},
		{`{"a":` + strings.Repeat("1", maxDigits) + `.` + strings.Repeat("1", maxDigits) + `e-` + strings.Repeat("1", maxDigits) + `}`, true, true},
		{`{"a":` + strings.Repeat("1", maxDigits+1) + `}`, false, false},
		{`{"a":-0.` + strings.Repeat("1", maxDigits+1) + `}`, false, false},
	} {
		ok, whole := run(anyObject, c.text)
		if ok != c.prefix || whole != c.all {
			t.Errorf("%q: valid prefix %v, whole %v; want %v, %v", c.text, ok, whole, c.prefix, c.all)
		}
		if whole && !json.Valid([]byte(c.text)) {
			t.Errorf("%q: accepted, but encoding/json says it is not JSON", c.text)
		}
	}
}

func TestSchema(t *testing.T) {
	person := `{"type":"object","title":"P","properties":{
		"name":{"type":"string"},
		"age":{"type":"integer"},
		"tags":{"type":"array","items":{"enum":["a","b c",1]},"maxItems":2},
		"pet":{"anyOf":[{"type":"null"},{"$ref":"#/$defs/pet"}]}},
		"required":["name","age"],
		"$defs":{"pet":{"type":"object","properties":{"kind":{"const":"cat"},"next":{"$ref":"#/$defs/pet"}},"required":["kind"]}}}`
	pets := `{"oneOf":[{"$ref":"#/$defs/Cat"},{"$ref":"#/$defs/Dog"}],"title":"Pet",
		"discriminator":{"propertyName":"t","mapping":{"cat":"#/$defs/Cat","dog":"#/$defs/Dog"}},
		"$defs":{"Cat":{"type":"object","properties":{"t":{"const":"cat"},"m":{"type":"boolean"}},"required":["t","m"]},
			"Dog":{"type":"object","properties":{"t":{"const":"dog"}},"required":["t"]}}}`
	for _, c := range []struct {
		schema, text string
		prefix, all  bool
	}{
		{person, `{"name":"x","age":3}`, true, true},
		{person, `{"age":3,"name":"x"}`, true, true},
		{person, `{"name":"x"}`, false, false},               // age is required
		{person, `{"name":"x","age":3.5}`, false, false},     // an integer
		{person, `{"name":"x","age":3,"x":1}`, false, false}, // no other key
		{person, `{"name":"x","name":"y","age":1}`, false, false},
		{person, `{"name":"x","age":1,"tags":["b c",1]}`, true, true},
		{person, `{"name":"x","age":1,"tags":["b",1]}`, false, false},
		{person, `{"name":"x","age":1,"tags":["a","a","a"]}`, false, false},
		{person, `{"name":"x","age":1,"pet":null}`, true, true},
		{person, `{"name":"x","age":1,"pet":{"kind":"cat","next":{"kind":"cat"}}}`, true, true},
		{person, `{"name":"x","age":1,"pet":{"kind":"dog"}}`, false, false},
		{person, `{"name":"x","age":1,"pet":{}}`, false, false},
		{`{"type":"number"}`, `12`, true, true},
		{`{"type":"number"}`, `-1.5e+3`, true, true},
		{`{"type":"integer"}`, `-1.5`, false, false},
		{`{"enum":[1,12]}`, `1`, true, true},
		{`{"enum":[1,12]}`, `12`, true, true},
		{`{"enum":[1,12]}`, `13`, false, false},
		{`{"type":["string","null"]}`, `null`, true, true},
		{`{"type":"array","minItems":2}`, `[1]`, false, false},
		{`{"type":"array","minItems":2}`, `[1, {"a":[]}]`, true, true},
		{`{"type":"object","properties":{"a\"b":{"type":"boolean"}}}`, `{"a\"b":true}`, true, true},
		{`{"type":"object","properties":{"a":{}},"additionalProperties":{"type":"integer"}}`, `{"z":1,"a":"s"}`, true, true},
		{`{"type":"object","properties":{"a":{}},"additionalProperties":{"type":"integer"}}`, `{"z":"s"}`, false, false},
		{`true`, `[{"x":null}]`, true, true},
		{`{"oneOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]},{"type":"object","properties":{"a":{"type":"integer"}}}]}`, `{"a":1}`, true, true},
		// A Pydantic discriminated union: OpenAPI's discriminator beside oneOf, which
		// JSON Schema's validators ignore (the branches' consts tell them apart).
		{pets, `{"t":"dog"}`, true, true},
		{pets, `{"t":"cat","m":true}`, true, true},
		{pets, `{"t":"cat"}`, false, false},
	} {
		ok, whole := run(mustSchema(t, c.schema), c.text)
		if ok != c.prefix || whole != c.all {
			t.Errorf("%s against %.40s…: valid prefix %v, whole %v; want %v, %v", c.text, c.schema, ok, whole, c.prefix, c.all)
		}
	}
}

// TestWrapped: literal text before and after the document, as a tool call's tags.
func TestWrapped(t *testing.T) {
	f := ObjectFormat().Wrapped("<tool_call>\n", "\n</tool_call>")
	for _, c := range []struct {
		text        string
		prefix, all bool
	}{
		{"<tool_call>\n{\"a\": 1}\n</tool_call>", true, true},
		{"<tool_call>\n {}\n</tool_call>", true, true},
		{"<tool_call>\n\n{}\n</tool_call>", false, false},
		{"<tool_call>\n{}", true, false},
		{"<tool_call>\n{}\n</tool", true, false},
		{"<tool", true, false},
		{"{}", false, false},
		{"<tool_call>\n{}</tool_call>", false, false},
		{"<tool_call>\n{}\n</tool_call> ", false, false},
	} {
		if ok, whole := f.Check([]byte(c.text)); ok != c.prefix || whole != c.all {
			t.Errorf("%q: valid prefix %v, whole %v; want %v, %v", c.text, ok, whole, c.prefix, c.all)
		}
	}
	n, err := SchemaFormat([]byte(`{"type":"integer"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, whole := n.Wrapped("(", ")").Check([]byte("(12)")); !whole {
		t.Errorf("a number before the suffix: not whole")
	}
	if p, s := (Format{}).Wrapped("a", "b").Affixes(); p != "" || s != "" {
		t.Errorf("free text wrapped: %q %q", p, s)
	}
}

func TestSchemaErrors(t *testing.T) {
	for _, c := range []struct{ schema, want string }{
		{`{"type":"string","pattern":"(?=a)"}`, `look-arounds ((?=...)) are not supported`},
		{`{"type":"string","pattern":"(a)\\1"}`, `back-references (\1) are not supported`},
		{`{"type":"string","pattern":"\\bword"}`, `word boundaries (\b) are not supported`},
		{`{"type":"string","pattern":"(?<!a)b"}`, `look-arounds ((?<!...)) are not supported`},
		{`{"type":"string","pattern":"\\p{Emoji}"}`, `Unicode property class \p{Emoji}: an unknown property`},
		{`{"type":"string","pattern":"(?i)a"}`, `inline flags`},
		{`{"type":"string","pattern":"a^b"}`, `'^' only at the start`},
		{`{"type":"string","pattern":"(a"}`, `missing ')'`},
		{`{"type":"string","pattern":7}`, `a string, not`},
		{`{"type":"string","pattern":"^[a-c]$","minLength":2}`, `no string a JSON string can hold`},
		{`{"type":"string","pattern":"^\\x01$"}`, `no string a JSON string can hold`},
		{`{"type":"string","pattern":"^abc","maxLength":2}`, `no string matching pattern "^abc" has so few`},
		{`{"type":"string","pattern":"(a|b)*a(a|b){20}"}`, `too complex`},
		{`{"type":"number","multipleOf":0.5}`, "only on integers"},
		{`{"type":"integer","multipleOf":0}`, "a number above 0"},
		{`{"type":"integer","multipleOf":7,"minimum":1,"maximum":6}`, "no integer"},
		{`{"type":"number","minimum":2,"exclusiveMaximum":2}`, "no number"},
		{`{"type":"string","maxLength":3,"minLength":4}`, "more than maxLength"},
		{`{"type":"string","format":"uuid","minLength":37}`, "only a minimum every uuid meets (36)"},
		{`{"type":"string","format":"date","maxLength":9}`, "no date has so few"},
		{`{"type":"string","maxLength":-1}`, "a count in"},
		{`{"type":"array","prefixItems":[{}],"items":false,"minItems":2}`, "at most 1 items"},
		{`{"type":"array","items":{"type":"string"},"uniqueItems":true}`, "uniqueItems is enforced only on"},
		{`{"type":"array","items":{"enum":[1.5,2]},"uniqueItems":true}`, "only on strings, integers"},
		{`{"type":"array","items":{"enum":["a","b"]},"uniqueItems":true,"minItems":3}`, "only 2 distinct"},
		{`{"type":"object","properties":{"a":{}},"minProperties":2}`, "only 1 properties"},
		{`{"type":"object","properties":{"a":{},"b":{}},"required":["a","b"],"maxProperties":1}`, "2 properties are required"},
		{`{"allOf":[{"type":"string"},{"type":"integer"}]}`, "no type is allowed by every part"},
		{`{"allOf":[{"properties":{"a":{}},"additionalProperties":false},{"properties":{"b":{}}}]}`, "falls under another's additionalProperties"},
		{`{"allOf":[{"format":"date"},{"format":"uuid"}]}`, "given differently"},
		{`{"allOf":[{"const":1},{"const":2}]}`, "no value is in every part"},
		{`{"allOf":[]}`, "non-empty array"},
		{`{"nullable":"yes"}`, "a boolean"},
		{`{"type":"string","pattern":"^a$","format":"email"}`, `pattern beside format "email": not supported`},
		{`{"type":"integer","minimum":"0"}`, "a number, not a string"},
		{`{"type":"integer","exclusiveMinimum":true}`, "a number, not a boolean"},
		{`{"type":"integer","enum":[1,2],"maximum":1}`, "beside minimum, maximum"},
		{`{"type":"integer","minimum":3,"maximum":2.5}`, "no integer"},
		{`{"type":"integer","exclusiveMinimum":3,"exclusiveMaximum":4}`, "no integer"},
		{`{"type":"integer","minimum":1e17}`, "no integer"},
		{`{"type":"strng"}`, "unknown type strng"},
		{`{"properties":{"a":{}},"required":["b"]}`, "b is not among the properties"},
		{`{"$ref":"http://x/y"}`, "only #, #/$defs/NAME"},
		{`{"$ref":"#/$defs/missing"}`, "no such definition"},
		{`{"enum":[]}`, "non-empty array"},
		{`{"type":"integer","enum":["a"]}`, "no listed value has the schema's type"},
		{`{"minItems":3,"maxItems":1}`, "more than maxItems"},
		{`false`, "false matches nothing"},
		{`[1]`, "a schema is an object or a boolean"},
		{`{"a":`, "not JSON"},
		{`{} {}`, "text after the schema"},
		{`{"$ref":"#"}`, "refers to nothing but itself"},
		{`{"anyOf":[{"type":"null"},{"$ref":"#"}]}`, "leads back to itself"},
		{`{"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/b"}]},"b":{"oneOf":[{"$ref":"#/$defs/a"}]}},"$ref":"#/$defs/a"}`, "leads back to itself"},
	} {
		_, err := SchemaFormat([]byte(c.schema))
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrSchema saying %q", c.schema, err, c.want)
		}
	}
}

// FuzzJSONObject checks the matcher against encoding/json: a text it accepts whole is
// JSON, and a JSON object within its bounds is accepted.
func FuzzJSONObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":null}],"c":"\u00e9"}`, `{"a":-0.5E+2}`, `{"a" : true }`, "{\"\xe2\x82\xac\":1}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ok, whole := run(anyObject, s)
		valid := json.Valid([]byte(s)) && utf8.ValidString(s)
		if whole && !valid {
			t.Fatalf("%q accepted whole but is not valid JSON", s)
		}
		if !valid || !strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{") {
			return
		}
		if strings.TrimRight(s, " \t\r\n") != s || !whiteOK(s) || longestRun(s, "0123456789") > maxDigits {
			return // outside the bounds the grammar sets
		}
		if !ok || !whole {
			t.Fatalf("JSON object %q refused (prefix ok %v)", s, ok)
		}
	})
}

// whiteOK reports whether every run of white space outside strings in s is one the
// grammar allows.
func whiteOK(s string) bool {
	in, esc := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				in = false
			}
		case c == '"':
			in = true
		case strings.IndexByte(" \t\r\n", c) >= 0:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n", s[j]) >= 0 {
				j++
			}
			if !wsRun.MatchString(s[i:j]) {
				return false
			}
			i = j - 1
		}
	}
	return true
}

var wsRun = regexp.MustCompile("^ $")

// longestRun is the length of the longest run of bytes from set in s.
func longestRun(s, set string) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) >= 0 {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// FuzzSchema: any bytes given as a schema compile or are refused with ErrSchema, and a
// compiled schema's matcher takes any text without a panic or a hang.
func FuzzSchema(f *testing.F) {
	for _, s := range []string{`{"type":"object","properties":{"a":{"$ref":"#"}}}`, `{"anyOf":[{"enum":[1,"x"]},{"type":"array","items":{"type":"integer"},"maxItems":2}]}`,
		`{"$defs":{"p":{"type":"object","properties":{"n":{"$ref":"#/$defs/p"}}}},"$ref":"#/$defs/p"}`, `true`, `{"const":{"a":[1,2]}}`,
		`{"type":"integer","minimum":-3,"exclusiveMaximum":1e400}`, `{"type":["integer","array"],"items":{"$ref":"#"},"maximum":-7.5}`,
		`{"type":"string","format":"email","maxLength":9}`, `{"type":"number","exclusiveMinimum":-0.5,"maximum":1e-3}`,
		`{"allOf":[{"$ref":"#"},{"properties":{"a":{"format":"date"}}}],"nullable":true}`, `{"type":"array","prefixItems":[{"enum":[1,"x"]}],"items":false}`,
		`{"type":"array","items":{"enum":["x","xy"]},"uniqueItems":true}`, `{"maxProperties":1,"anyOf":[{"type":"object"},{"type":"string","minLength":2}]}`,
		`{"type":"object","properties":{"a":{"type":"string","pattern":"^[a-z]+\d?$","minLength":2}},"propertyNames":{"pattern":"^a"},"additionalProperties":{"pattern":"x|y$"}}`} {
		f.Add(s, `{"a":{"a":null}}`)
		f.Add(s, `[1,"x",2]`)
	}
	f.Fuzz(func(t *testing.T, schema, text string) {
		fm, err := SchemaFormat([]byte(schema))
		if err != nil {
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("%q: %v does not wrap ErrSchema", schema, err)
			}
			return
		}
		if ok, whole := fm.Check([]byte(text)); whole && !ok {
			t.Fatalf("%q: whole but not a valid prefix", text)
		} else if whole && !json.Valid([]byte(text)) {
			t.Fatalf("%q accepted whole under %q but is not JSON", text, schema)
		}
	})
}

// TestIntegerBounds: minimum, maximum and their exclusive forms on an integer let out
// exactly the integers within them, and a prefix exactly when some integer within them
// starts with it (so the mask never leads into a number that cannot end).
func TestIntegerBounds(t *testing.T) {
	for _, c := range []struct {
		bounds string
		lo, hi int64
	}{
		{`"minimum":-12,"maximum":7`, -12, 7},
		{`"minimum":3,"maximum":3`, 3, 3},
		{`"minimum":0,"maximum":100`, 0, 100},
		{`"exclusiveMinimum":-100,"exclusiveMaximum":-5`, -99, -6},
		{`"minimum":0.5,"maximum":20.5`, 1, 20},
		{`"minimum":-20.5,"maximum":-0.5`, -20, -1},
		{`"exclusiveMinimum":9.5,"maximum":1e2`, 10, 100},
		{`"minimum":95`, 95, maxInt},
		{`"maximum":-95`, -maxInt, -95},
	} {
		root := mustSchema(t, `{"type":"integer",`+c.bounds+`}`)
		window := func(v int64) bool { return v >= -300 && v <= 300 }
		for v := int64(-300); v <= 300; v++ {
			text := strconv.FormatInt(v, 10)
			if _, whole := run(root, text); whole != (v >= c.lo && v <= c.hi) {
				t.Errorf("%s: %s whole %v, want %v", c.bounds, text, whole, !whole)
			}
		}
		// Every string of up to three bytes of "-0123456789": a valid prefix exactly
		// when an allowed integer starts with it (checked where all the allowed
		// integers lie in the window).
		alphabet := "-0123456789"
		var strs []string
		for _, a := range alphabet {
			strs = append(strs, string(a))
			for _, b := range alphabet {
				strs = append(strs, string(a)+string(b))
				for _, d := range alphabet {
					strs = append(strs, string(a)+string(b)+string(d))
				}
			}
		}
		for _, s := range strs {
			// JSON's other spelling of 0, let out where negative integers are too.
			want := s == "-0" && c.lo < 0 && c.hi >= 0
			for v := max(c.lo, -300); v <= min(c.hi, 300); v++ {
				if strings.HasPrefix(strconv.FormatInt(v, 10), s) {
					want = true
					break
				}
			}
			if !window(c.lo) || !window(c.hi) {
				continue
			}
			if ok, _ := run(root, s); ok != want {
				t.Errorf("%s: prefix %q accepted %v, want %v", c.bounds, s, ok, want)
			}
		}
	}
	// zod's int(): ±2^53-1, which a 16-digit number can pass.
	safe := mustSchema(t, `{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991}`)
	for text, whole := range map[string]bool{"9007199254740991": true, "9007199254740992": false, "-9007199254740991": true,
		"-9007199254740992": false, "9999999999999999": false, "0": true, "-0": true, "42": true} {
		if _, got := run(safe, text); got != whole {
			t.Errorf("zod int(): %s whole %v, want %v", text, got, whole)
		}
	}
	if ok, _ := run(safe, "90071992547409920"); ok {
		t.Errorf("zod int(): 17 digits accepted")
	}
	// Beside other types, the bounds hold for the integer alone.
	opt := mustSchema(t, `{"type":["integer","null"],"minimum":1}`)
	for text, whole := range map[string]bool{"null": true, "1": true, "0": false, "-1": false} {
		if _, got := run(opt, text); got != whole {
			t.Errorf("integer or null, minimum 1: %s whole %v, want %v", text, got, whole)
		}
	}
	// On a schema that allows no number, they constrain nothing (as in JSON Schema).
	if _, whole := run(mustSchema(t, `{"type":"string","minimum":3}`), `"a"`); !whole {
		t.Errorf("a string with a minimum: refused")
	}
}

// TestFrameSize: a frame stays within 64 bytes, the allocation size class every step of
// the matcher pays for (80 made a draft's resets half as slow again).
func TestFrameSize(t *testing.T) {
	if n := unsafe.Sizeof(frame{}); n > 64 {
		t.Errorf("a frame is %d bytes, want at most 64", n)
	}
}
