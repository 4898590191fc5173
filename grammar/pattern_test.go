package grammar_test

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/tokenizer"
)

// patternCases are schemas with patterns, each with where its strings are in a value
// and the pattern under Go's regexp (which reads these as ECMA-262 does; \s is spelled
// out, as Go's lacks \v and the Unicode spaces). hints are texts whose first token a
// walk tries now and then, so that it gets through the literal parts of a pattern.
var patternCases = []struct {
	name, schema string
	strs         func(v any) ([]string, bool) // the strings the pattern constrains, and whether v has the schema's shape
	re           string
	hints        []string
}{
	{"code", `{"type":"string","pattern":"^[A-Z]{3}-\\d{4}$"}`, rootString, `^[A-Z]{3}-\d{4}$`, []string{"ABC", "-", "12"}},
	{"phone in object", `{"type":"object","properties":{"phone":{"type":"string","pattern":"^\\+?[0-9 ]{7,15}$"}},"required":["phone"],"additionalProperties":false}`,
		field("phone"), `^\+?[0-9 ]{7,15}$`, []string{"+", "555", " 12"}},
	{"unanchored in array", `{"type":"array","items":{"type":"string","pattern":"abc"},"minItems":1,"maxItems":3}`, items, `abc`, []string{"abc", "abc", "x"}},
	{"colou?r nullable", `{"type":["string","null"],"pattern":"colou?r"}`, rootString, `colou?r`, []string{"colour", "color", "red "}},
	{"quotes", `{"type":"string","pattern":"^\"[^\"]*\"$"}`, rootString, `^"[^"]*"$`, []string{`\"`, "hi"}},
	{"backslash", `{"type":"string","pattern":"^a\\\\[bn]+$"}`, rootString, `^a\\[bn]+$`, []string{"a", `\\`, "b"}},
	{"no quotes", `{"type":"string","pattern":"^[^\"]*$","maxLength":12}`, rootString, `^[^"]*$`, nil},
	{"email-ish by $ref", `{"$defs":{"mail":{"type":"string","pattern":"^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,4}$"}},"type":"object","properties":{"to":{"$ref":"#/$defs/mail"}},"required":["to"]}`,
		field("to"), `^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,4}$`, []string{"bob", "@", "example", ".com"}},
	{"anyOf", `{"anyOf":[{"type":"string","pattern":"^\\d+$"},{"type":"string","pattern":"^[a-z]+$"}]}`, rootString, `^\d+$|^[a-z]+$`, []string{"42", "abc"}},
	{"allOf with lengths", `{"allOf":[{"type":"string","minLength":3,"maxLength":8},{"pattern":"^x"}]}`, rootString, `^x`, []string{"x"}},
	{"non-ASCII", `{"type":"string","pattern":"^(é|ü|世界|[α-ω])+$"}`, rootString, `^(é|ü|世界|[α-ω])+$`, []string{"é", "世界", "α"}},
	{"words and space", `{"type":"string","pattern":"^\\w+\\s\\w+$","maxLength":20}`, rootString,
		`^\w+[\t\n\v\f\r \x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{feff}]\w+$`, []string{"hello", " ", "world"}},
	{"dot and lazy", `{"type":"string","pattern":"^<.+?>$"}`, rootString, `^<.+?>$`, []string{"<", "tag", `>"`, `>"`}},
	{"propertyNames", `{"type":"object","propertyNames":{"type":"string","pattern":"^[a-z]{2,6}\\d?$"},"additionalProperties":{"type":"integer","minimum":0,"maximum":9},"maxProperties":3}`,
		keysOf, `^[a-z]{2,6}\d?$`, []string{"ab", "cd1", `":`, "1"}},
	{"minLength folded in", `{"type":"string","pattern":"^(ab|c+)$","minLength":3}`, rootString, `^(ab|c+)$`, []string{"ab", "c"}},
}

func rootString(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		return []string{v}, true
	case nil:
		return nil, true
	}
	return nil, false
}

func field(name string) func(v any) ([]string, bool) {
	return func(v any) ([]string, bool) {
		o, ok := v.(map[string]any)
		s, isString := o[name].(string)
		return []string{s}, ok && isString
	}
}

func keysOf(v any) ([]string, bool) {
	o, ok := v.(map[string]any)
	var out []string
	for k := range o {
		out = append(out, k)
	}
	return out, ok
}

func items(v any) ([]string, bool) {
	a, ok := v.([]any)
	var out []string
	for _, e := range a {
		s, isString := e.(string)
		ok = ok && isString
		out = append(out, s)
	}
	return out, ok
}

// TestPatternGeneration: outputs drawn through the mask at random (every token one the
// mask leaves, the end only where it leaves it) under schemas with patterns are JSON
// of the schema's shape whose strings Go's regexp matches, with the real vocabularies.
func TestPatternGeneration(t *testing.T) {
	// Walks per vocabulary: fewer over Qwen2's 152k tokens, whose masks cost more.
	walks := map[string]int{"specd": 12, "qwen2": 6}
	if testing.Short() {
		walks = map[string]int{"specd": 4, "qwen2": 2}
	}
	all, texts := vocabs(t), map[string][]string{}
	for name := range walks {
		texts[name] = tokenTexts(all[name])
	}
	for _, c := range patternCases {
		f, err := grammar.SchemaFormat([]byte(c.schema))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		re := regexp.MustCompile(c.re)
		for _, name := range []string{"specd", "qwen2"} {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				tok := all[name]
				rng := rand.New(rand.NewPCG(3, uint64(len(c.name))))
				finished := 0
				for range walks[name] {
					text, done := walkMask(tok, texts[name], f.Grammar(tok), rng, c.hints)
					if !done {
						continue
					}
					finished++
					var v any
					if err := json.Unmarshal([]byte(text), &v); err != nil {
						t.Fatalf("%q is not JSON: %v", text, err)
					}
					strs, ok := c.strs(v)
					if !ok {
						t.Fatalf("%q is not of the schema's shape", text)
					}
					for _, s := range strs {
						if !re.MatchString(s) {
							t.Fatalf("%q: %q does not match %s", text, s, c.re)
						}
						if _, whole := f.Check([]byte(text)); !whole {
							t.Fatalf("%q: Check does not take it whole", text)
						}
					}
				}
				if finished == 0 {
					t.Errorf("no walk of %d reached the end", walks[name])
				}
			})
		}
	}
}

// walkMask draws tokens through g's mask at random until the end is drawn (done) or
// maxWalk tokens: now and then a token that closes a string or a value, or one a hint
// begins with, where the mask allows it.
func walkMask(tok *tokenizer.Tokenizer, texts []string, g *grammar.Grammar, rng *rand.Rand, hints []string) (string, bool) {
	const maxWalk = 80
	m := g.NewMatcher()
	ends := []int32{tok.EOS()}
	logits := make([]float32, tok.VocabSize())
	var out []int32
	for range maxWalk {
		clear(logits)
		m.Mask(logits, ends)
		var allowed, closing []int32
		for id, l := range logits {
			if math.IsInf(float64(l), -1) || int32(id) == tok.EOS() {
				continue
			}
			allowed = append(allowed, int32(id))
			if b := texts[id]; len(b) <= 3 && strings.ContainsAny(b, `"]}`) {
				closing = append(closing, int32(id))
			}
		}
		endOK := !math.IsInf(float64(logits[tok.EOS()]), -1)
		if endOK && (len(allowed) == 0 || rng.IntN(3) > 0) {
			return tok.Decode(out), true
		}
		if len(allowed) == 0 {
			return tok.Decode(out), false // the mask left nothing: a dead end
		}
		id := allowed[rng.IntN(len(allowed))]
		switch r := rng.IntN(10); {
		case r < 3 && len(closing) > 0:
			id = closing[rng.IntN(len(closing))]
		case r < 8 && len(hints) > 0:
			// The longest token the mask allows that begins the hint.
			h, best := hints[rng.IntN(len(hints))], 0
			for _, a := range allowed {
				if b := texts[a]; len(b) > best && strings.HasPrefix(h, b) {
					id, best = a, len(b)
				}
			}
		}
		m.Advance(id)
		out = append(out, id)
	}
	return tok.Decode(out), false
}

// tokenTexts are tok's tokens' bytes, by id.
func tokenTexts(tok *tokenizer.Tokenizer) []string {
	out := make([]string, tok.VocabSize())
	for id := range out {
		out[id] = string(tok.TokenBytes(int32(id)))
	}
	return out
}

// TestPatternNoDeadEnd: the mask never leaves nothing at all (not even the end) under a
// pattern: a walk stops only by the end or by its length.
func TestPatternNoDeadEnd(t *testing.T) {
	tok := vocabs(t)["specd"]
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range patternCases {
		f, err := grammar.SchemaFormat([]byte(c.schema))
		if err != nil {
			t.Fatal(err)
		}
		g := f.Grammar(tok)
		for range 4 {
			m := g.NewMatcher()
			logits := make([]float32, tok.VocabSize())
			for step := range 40 {
				clear(logits)
				m.Mask(logits, []int32{tok.EOS()})
				var allowed []int32
				for id, l := range logits {
					if !math.IsInf(float64(l), -1) {
						allowed = append(allowed, int32(id))
					}
				}
				if len(allowed) == 0 {
					t.Fatalf("%s: the mask left nothing at step %d", c.name, step)
				}
				id := allowed[rng.IntN(len(allowed))]
				if id == tok.EOS() {
					break
				}
				m.Advance(id)
			}
		}
	}
}

// TestPatternSchemas: where a pattern stands in a schema, which strings it takes.
func TestPatternSchemas(t *testing.T) {
	for _, c := range []struct {
		schema string
		doc    string
		want   bool
	}{
		{`{"type":"string","pattern":"abc"}`, `"xxabcxx"`, true},
		{`{"type":"string","pattern":"abc"}`, `"xxabxcx"`, false},
		{`{"type":"string","pattern":"^abc"}`, `"abcxx"`, true},
		{`{"type":"string","pattern":"^abc"}`, `"xabc"`, false},
		{`{"type":"string","pattern":"abc$"}`, `"xabc"`, true},
		{`{"type":"string","pattern":"abc$"}`, `"abcx"`, false},
		{`{"type":"string","pattern":"^a|b$"}`, `"axx"`, true},
		{`{"type":"string","pattern":"^a|b$"}`, `"xxb"`, true},
		{`{"type":"string","pattern":"^a|b$"}`, `"xbx"`, false},
		{`{"type":"string","pattern":""}`, `"anything"`, true},
		{`{"type":"string","pattern":"\""}`, `"say \"hi\""`, true},
		{`{"type":"string","pattern":"^[^\"]*$"}`, `"say \"hi\""`, false},
		{`{"type":"string","pattern":"^\\u00e9\\x41$"}`, `"éA"`, true},
		{`{"type":"string","pattern":"^\\u00e9\\x41$"}`, `"\u00e9A"`, false}, // \u escapes are not written under a pattern
		{`{"type":"string","pattern":"^\\u{1F600}$"}`, `"😀"`, true},
		// A UTF-16 surrogate pair of \u escapes is one character, as with the u flag
		// (JSON.stringify and many schema generators write characters past U+FFFF so).
		{`{"type":"string","pattern":"^\\uD83D\\uDE00$"}`, `"😀"`, true},
		{`{"type":"string","pattern":"^\\ud83d\\ude00+$"}`, `"😀😀"`, true},
		{`{"type":"string","pattern":"^[\\uD83D\\uDE00-\\uD83D\\uDE4F]$"}`, `"🙂"`, true},
		{`{"type":"string","pattern":"^[\\uD83D\\uDE00-\\uD83D\\uDE4F]$"}`, `"😀😀"`, false},
		{`{"type":"string","pattern":"^\\uD83D\\uDE00$"}`, `"x"`, false},
		{`{"type":"string","pattern":"^\\d{2,}$","maxLength":3}`, `"1234"`, false},
		{`{"type":"string","pattern":"^\\d{2,}$","minLength":3}`, `"12"`, false},
		{`{"type":"string","pattern":"^\\d{2,}$","minLength":3}`, `"123"`, true},
		{`{"type":"string","pattern":"^[]$|a"}`, `"a"`, true}, // [] matches nothing in ECMA-262
		{`{"type":"string","pattern":"^[^]$"}`, `"\n"`, true},
		{`{"type":"string","pattern":"^.$"}`, `"\n"`, false},
		{`{"type":"string","pattern":"^a{2}{$"}`, `"aa{"`, true}, // a '{' that begins no quantifier is text
		{`{"type":"string","pattern":"^\\cJ\\cm$"}`, `"\n\r"`, true},
		{`{"type":"string","pattern":"^[\\cJ]$"}`, `"\n"`, true},
		{`{"type":"string","pattern":"^\\u{0000041}$"}`, `"A"`, true},
		// A repetition of what may be empty is one of its non-empty texts, repeated.
		{`{"type":"string","pattern":"^(a?)*$"}`, `""`, true},
		{`{"type":"string","pattern":"^(a?)*$"}`, `"aaa"`, true},
		{`{"type":"string","pattern":"^(a?)*$"}`, `"ab"`, false},
		{`{"type":"string","pattern":"^(a|b?c?)+d$"}`, `"abcacd"`, true},
		{`{"type":"string","pattern":"^(a|b?c?)+d$"}`, `"d"`, true},
		{`{"type":"string","pattern":"^(a|b?c?)+d$"}`, `"abdd"`, false},
		{`{"type":"string","pattern":"^()*x$"}`, `"x"`, true},
		{`{"type":"string","pattern":"^(?:(a*)*b)*$"}`, `"aabbab"`, true},
		{`{"type":"string","pattern":"^(?:(a*)*b)*$"}`, `"aaba"`, false},
		{`{"type":"string","pattern":"^\\s$"}`, `"\u00a0"`, false},
		{`{"type":"string","pattern":"^\\s$"}`, "\"\u00a0\"", true},
		{`{"type":"string","pattern":"^\\S$"}`, "\"\u00a0\"", false},
		{`{"type":"string","pattern":"^(?:ab)+?$"}`, `"abab"`, true},
		{`{"type":"string","pattern":"^(?<y>\\d{4})$"}`, `"2024"`, true},
		{`{"type":"integer","pattern":"^a"}`, `12`, true}, // a pattern asserts nothing of a number
		{`{"type":["string","null"],"pattern":"^a"}`, `null`, true},
		{`{"type":["string","null"],"pattern":"^a"}`, `"b"`, false},
		{`{"type":"object","properties":{"a":{"type":"string","pattern":"^x+$"}}}`, `{"a": "xxx"}`, true},
		{`{"type":"object","properties":{"a":{"type":"string","pattern":"^x+$"}}}`, `{"a": "xxy"}`, false},
		{`{"type":"array","items":{"pattern":"^x"}}`, `["x1", "x2", 3]`, true},
		{`{"type":"array","items":{"type":"string","pattern":"^x"}}`, `["x1", "y2"]`, false},
		{`{"type":"string","allOf":[{"pattern":"^x"},{"maxLength":3}]}`, `"xab"`, true},
		{`{"type":"string","allOf":[{"pattern":"^x"},{"maxLength":3}]}`, `"xabc"`, false},
		{`{"type":"string","allOf":[{"pattern":"^x"},{"pattern":"^x"}]}`, `"xy"`, true},
		{`{"pattern":"^x","anyOf":[{"type":"string","maxLength":2},{"type":"integer"}]}`, `"xy"`, true},
		{`{"pattern":"^x","anyOf":[{"type":"string","maxLength":2},{"type":"integer"}]}`, `"yy"`, false},
		{`{"$defs":{"p":{"type":"string","pattern":"^p"}},"$ref":"#/$defs/p","maxLength":2}`, `"pq"`, true},
		{`{"$defs":{"p":{"type":"string","pattern":"^p"}},"$ref":"#/$defs/p","maxLength":2}`, `"pqr"`, false},
		{`{"type":"string","format":"uuid","pattern":"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"}`,
			`"123e4567-e89b-12d3-a456-426614174000"`, true},
		{`{"enum":["ab","cd"],"pattern":"^a"}`, `"ab"`, true}, // enum values the pattern refuses are dropped
		{`{"enum":["ab","cd"],"pattern":"^a"}`, `"cd"`, false},
		{`{"type":"object","properties":{"x":{"type":"string","pattern":"^a"}},"additionalProperties":{"type":"string","pattern":"^b"}}`, `{"x":"a","y":"b"}`, true},
		{`{"type":"object","properties":{"x":{"type":"string","pattern":"^a"}},"additionalProperties":{"type":"string","pattern":"^b"}}`, `{"x":"a","y":"a"}`, false},
		// propertyNames: every key matches (zod's z.record(z.string().regex(…), …)).
		{`{"type":"object","propertyNames":{"type":"string","pattern":"^[a-z]+\\d$"},"additionalProperties":{"type":"integer"}}`, `{"ab1": 1, "c2": 2}`, true},
		{`{"type":"object","propertyNames":{"type":"string","pattern":"^[a-z]+\\d$"},"additionalProperties":{"type":"integer"}}`, `{"ab1": 1, "C2": 2}`, false},
		{`{"type":"object","propertyNames":{"type":"string","pattern":"^[a-z]+\\d$"},"additionalProperties":{"type":"integer"}}`, `{"ab": 1}`, false},
		{`{"type":"object","propertyNames":{"pattern":"^x","maxLength":3},"properties":{"xa":{"type":"null"}},"additionalProperties":true}`, `{"xa": null, "xbc": 1}`, true},
		{`{"type":"object","propertyNames":{"pattern":"^x","maxLength":3},"properties":{"xa":{"type":"null"}},"additionalProperties":true}`, `{"xa": null, "xbcd": 1}`, false},
		{`{"type":"object","propertyNames":{"minLength":2},"additionalProperties":true}`, `{"a": 1}`, false},
		{`{"type":"object","propertyNames":{"minLength":2},"additionalProperties":true}`, `{"ab": 1}`, true},
		{`{"type":"object","propertyNames":{"pattern":"\""},"additionalProperties":true}`, `{"a\"b": 1}`, true},
		{`{"type":"object","propertyNames":{"pattern":"^\\n$"},"properties":{"\n":{}}}`, `{"\n": 1}`, true},
		{`{"type":"object","propertyNames":{"pattern":"^\\n$"},"properties":{"\n":{}},"additionalProperties":true}`, `{"\\n": 1}`, false},
		// Once the pattern has matched, any text follows: the minimum is counted by the
		// string, not in states of the automaton.
		{`{"type":"string","pattern":"^ab","minLength":100000}`, `"` + "ab" + strings.Repeat("é", 99998) + `"`, true},
		{`{"type":"string","pattern":"^ab","minLength":100000}`, `"` + "ab" + strings.Repeat("😀", 99997) + `"`, false},
		{`{"type":"string","pattern":"x","minLength":3,"maxLength":3}`, `"😀x😀"`, true},
		{`{"type":"string","pattern":"x","minLength":3,"maxLength":3}`, `"x😀"`, false},
		// Unicode property classes, over what Go's tables assign.
		{`{"type":"string","pattern":"^[\\p{L}\\p{N} '-]+$"}`, `"Zoë O'Brien-Σ٣"`, true},
		{`{"type":"string","pattern":"^[\\p{L}\\p{N} '-]+$"}`, `"Zoë!"`, false},
		{`{"type":"string","pattern":"^\\p{Lu}\\p{Ll}+$"}`, `"Émile"`, true},
		{`{"type":"string","pattern":"^\\p{Script=Greek}+$"}`, `"αβγ"`, true},
		{`{"type":"string","pattern":"^\\p{Script=Greek}+$"}`, `"abc"`, false},
		{`{"type":"string","pattern":"^\\P{L}$"}`, `"5"`, true},
		{`{"type":"string","pattern":"^\\P{L}$"}`, "\"\U0001E5D0\"", false}, // assigned by Unicode 16, after Go's tables
		{`{"type":"string","pattern":"^[^\\p{L}]$"}`, "\"\U0001E5D0\"", false},
		{`{"type":"string","format":"made-up","pattern":"^m"}`, `"mm"`, true}, // an unknown format is an annotation
		{`{"type":"string","format":"made-up","pattern":"^m"}`, `"nn"`, false},
	} {
		f, err := grammar.SchemaFormat([]byte(c.schema))
		if err != nil {
			t.Errorf("SchemaFormat(%s) = %v", c.schema, err)
			continue
		}
		if _, whole := f.Check([]byte(c.doc)); whole != c.want {
			t.Errorf("SchemaFormat(%s).Check(%s) whole = %v, want %v", c.schema, c.doc, whole, c.want)
		}
	}
}

// TestPropertyNamesRefused: a propertyNames schema with more than a string's pattern
// and lengths, or one a named property does not match, is refused naming it.
func TestPropertyNamesRefused(t *testing.T) {
	for _, c := range []struct{ schema, want string }{
		{`{"type":"object","propertyNames":{"enum":["a","b"]}}`, `keyword "enum": only type string, pattern`},
		{`{"type":"object","propertyNames":{"format":"email"}}`, `keyword "format"`},
		{`{"type":"object","propertyNames":false}`, "a schema of type string"},
		{`{"type":"object","propertyNames":{"pattern":"^x"},"properties":{"y":{}}}`, `property "y" is not one of the names`},
		{`{"type":"object","propertyNames":{"pattern":"(?=x)"},"additionalProperties":true}`, "/propertyNames/pattern"},
		{`{"type":"object","propertyNames":{"minLength":65},"additionalProperties":true}`, "no key of at most 64 characters"},
		// encoding/json, as compact JSON, spells U+2028 \u2028: a key under a pattern
		// is not written with \u escapes.
		{`{"type":"object","propertyNames":{"pattern":"^\\u2028$"},"properties":{"\u2028":{}}}`, `is not one of the names`},
	} {
		_, err := grammar.SchemaFormat([]byte(c.schema))
		if !errors.Is(err, grammar.ErrSchema) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SchemaFormat(%s) = %v, want ErrSchema saying %q", c.schema, err, c.want)
		}
	}
}

// TestPatternRefused: what a pattern cannot have is refused with ErrSchema naming it,
// and an automaton that would blow up is refused when the schema is compiled.
func TestPatternRefused(t *testing.T) {
	for _, c := range []struct{ pattern, want string }{
		{`(?=a)b`, "look-arounds"},
		{`(?!a)b`, "look-arounds"},
		{`(?<=a)b`, "look-arounds"},
		{`(a)\1`, "back-references"},
		{`(?<n>a)\k<n>`, "back-references"},
		{`\bword\b`, "word boundaries"},
		{`\Bx`, "word boundaries"},
		{`\p{Alphabetic}`, "Unicode property class"},
		{`\p{sc=Grek}`, "Unicode property class"},
		{`\p{scx=Greek}`, "Script_Extensions is not supported"},
		{`\p{Cn}`, "Unicode property class"},
		{`\p{L`, `\p without {...}`},
		{`(?i)abc`, "inline flags"},
		{`a++`, "possessive"},
		{`\A`, "anchors"},
		{`\c1`, "\\c without an ASCII letter"},
		{`a{,2}`, "{,2} is not a quantifier in ECMA-262"},
		{`[]`, "matches no text"},
		{`\a`, "unknown escape"},
		{`\U0001F600`, "unknown escape"},
		{`a(^b)`, "'^' only at the start"},
		{`(a$)b`, "'$' only at the end"},
		{`\uD800`, "not a character"},
		{`\uD83Dx`, "not a character"},
		{`\uDE00\uD83D`, "not a character"},
		{`\uD83D\u0041`, "not a character"},
		{`[z-a]`, "below the start"},
		{`(a|b)*a(a|b){20}`, "too complex"},
		{`[ab]*a[ab]{14}`, "too complex"},
		{`[\s\S]{100000}`, "more than"},
		{`^\x01$`, "no string"},
		{strings.Repeat("(", 1200) + "a" + strings.Repeat(")", 1200), "nested more than"},
		{strings.Repeat("ab", 40000), "elements"},
	} {
		schema, _ := json.Marshal(map[string]any{"type": "string", "pattern": c.pattern})
		_, err := grammar.SchemaFormat(schema)
		if !errors.Is(err, grammar.ErrSchema) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "/pattern") {
			t.Errorf("SchemaFormat(%s) = %v, want ErrSchema at /pattern saying %q", schema, err, c.want)
		}
	}
}

// TestPatternSchemaBound: the patterns of one schema are bounded between them, not
// only each alone.
func TestPatternSchemaBound(t *testing.T) {
	// Each: some 900,000 entries (2,001 states × 450 classes of characters).
	var odd strings.Builder
	for c := rune(0x100); c < 0x100+2*220; c += 2 {
		odd.WriteRune(c)
	}
	props := map[string]any{}
	for i := range 6 {
		props[string(rune('a'+i))] = map[string]any{"type": "string", "pattern": "^[" + odd.String() + "]{" + strconv.Itoa(2000+i) + "}$"}
	}
	schema, _ := json.Marshal(map[string]any{"type": "object", "properties": props})
	_, err := grammar.SchemaFormat(schema)
	if !errors.Is(err, grammar.ErrSchema) || !strings.Contains(err.Error(), "between them") {
		t.Errorf("six large patterns: %v, want ErrSchema saying their automata are too large between them", err)
	}
}

// BenchmarkPatternCompile: compiling schemas with patterns, the automaton built.
func BenchmarkPatternCompile(b *testing.B) {
	for _, c := range patternCases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := grammar.SchemaFormat([]byte(c.schema)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPatternConcurrentMasks: matchers of one format on several goroutines share the
// automaton's kept masks (run with -race).
func TestPatternConcurrentMasks(t *testing.T) {
	tok := vocabs(t)["specd"]
	f, err := grammar.SchemaFormat([]byte(`{"type":"array","items":{"type":"string","pattern":"^<.+>$|abc"}}`))
	if err != nil {
		t.Fatal(err)
	}
	g := f.Grammar(tok)
	ids := tok.Encode(`["<Once upon a time>", "xabc and more"]`, false)
	want := maskAlong(g, tok, ids)
	done := make(chan [][]bool)
	for range 4 {
		go func() { done <- maskAlong(g, tok, ids) }()
	}
	for range 4 {
		if got := <-done; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("masks on another goroutine differ")
		}
	}
}

// maskAlong is the mask (allowed or not, per token) before each of ids.
func maskAlong(g *grammar.Grammar, tok *tokenizer.Tokenizer, ids []int32) [][]bool {
	m := g.NewMatcher()
	logits := make([]float32, tok.VocabSize())
	var out [][]bool
	for _, id := range ids {
		clear(logits)
		m.Mask(logits, []int32{tok.EOS()})
		row := make([]bool, len(logits))
		for i, l := range logits {
			row[i] = !math.IsInf(float64(l), -1)
		}
		out = append(out, row)
		m.Advance(id)
	}
	return out
}
