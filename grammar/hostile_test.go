package grammar_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/specd-dev/specd/grammar"
)

// hostileSchema is a union of maxAlts object schemas that differ only in a required
// property no one writes first: every key and string value is read by all of them.
func hostileSchema(tb testing.TB) grammar.Format {
	var alts []string
	for i := range 64 {
		alts = append(alts, fmt.Sprintf(`{"type":"object","properties":{"k%d":{"type":"string"}},"additionalProperties":{"type":"string"}}`, i))
	}
	f, err := grammar.SchemaFormat([]byte(`{"anyOf":[` + strings.Join(alts, ",") + `]}`))
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// BenchmarkMaskUnion: a mask inside a string that many alternatives read.
func BenchmarkMaskUnion(b *testing.B) {
	f := hostileSchema(b)
	for name, tok := range vocabs(b) {
		g := f.Grammar(tok)
		for _, at := range []struct{ name, text string }{{"key", `{"story`}, {"string", `{"story": "Once upon`}} {
			b.Run(name+"/"+at.name, func(b *testing.B) {
				benchMask(b, g, tok, tok.Encode(at.text, false))
			})
		}
	}
}

// bigEnum is a 64 KiB schema of one enum of short distinct strings.
func bigEnum(tb testing.TB) grammar.Format {
	var vals []string
	for i := 0; len(vals)*9 < 60<<10; i++ {
		vals = append(vals, fmt.Sprintf(`"w%05d"`, i*7919%100000))
	}
	f, err := grammar.SchemaFormat([]byte(`{"type":"object","properties":{"v":{"enum":[` + strings.Join(vals, ",") + `]}},"required":["v"]}`))
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// BenchmarkMaskEnum: a mask at the start and inside a value of a large enum.
func BenchmarkMaskEnum(b *testing.B) {
	f := bigEnum(b)
	for name, tok := range vocabs(b) {
		g := f.Grammar(tok)
		for _, at := range []struct{ name, text string }{{"start", `{"v":`}, {"inside", `{"v": "w1`}} {
			b.Run(name+"/"+at.name, func(b *testing.B) {
				benchMask(b, g, tok, tok.Encode(at.text, false))
			})
		}
	}
}

// BenchmarkCompileEnum: compiling a 64 KiB enum.
func BenchmarkCompileEnum(b *testing.B) {
	for b.Loop() {
		bigEnum(b)
	}
}

// BenchmarkCompileUnicodeClasses: compiling 64 KiB patterns of classes that are
// complements of Unicode's (hundreds of spans each), the same one repeated and each
// different; the repeated one took 1 s before classes were keyed by their bytes and
// read once per pattern.
func BenchmarkCompileUnicodeClasses(b *testing.B) {
	var distinct strings.Builder
	for i := 0; distinct.Len() < 64<<10-16; i++ {
		fmt.Fprintf(&distinct, `[^\w\u%04x]`, 0x100+i)
	}
	for _, tc := range []struct{ name, pattern string }{
		{"repeated", strings.Repeat(`[^\w]`, 64<<10/5)},
		{"repeated-fold", `(?i)` + strings.Repeat(`[^a-z]`, 64<<10/6-1)},
		{"distinct", distinct.String()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := grammar.RegexFormat(tc.pattern); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMaskLongConst: a mask deep inside a 60 KB const string.
func BenchmarkMaskLongConst(b *testing.B) {
	long := strings.Repeat("lorem ipsum dolor sit amet ", 60<<10/27)
	f, err := grammar.SchemaFormat([]byte(`{"const":"` + long + `"}`))
	if err != nil {
		b.Fatal(err)
	}
	for name, tok := range vocabs(b) {
		g := f.Grammar(tok)
		ids := tok.Encode(`"`+long[:50<<10], false)
		b.Run(name, func(b *testing.B) {
			benchMask(b, g, tok, ids)
		})
	}
}

// BenchmarkMaskLongKey: a mask deep inside a 60 KB property name.
func BenchmarkMaskLongKey(b *testing.B) {
	long := strings.Repeat("lorem ipsum dolor sit amet ", 60<<10/27)
	f, err := grammar.SchemaFormat([]byte(`{"type":"object","properties":{"` + long + `":{"type":"null"}}}`))
	if err != nil {
		b.Fatal(err)
	}
	for name, tok := range vocabs(b) {
		g := f.Grammar(tok)
		ids := tok.Encode(`{"`+long[:50<<10], false)
		b.Run(name, func(b *testing.B) {
			benchMask(b, g, tok, ids)
		})
	}
}

// TestHostileComposition: schemas that would make allOf, unions with siblings, and
// references blow up or loop compile quickly or are refused with ErrSchema.
func TestHostileComposition(t *testing.T) {
	var doubling, nested, wide []string
	for i := range 40 {
		doubling = append(doubling, fmt.Sprintf(`"d%d":{"allOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]}`, i, i+1, i+1))
		nested = append(nested, fmt.Sprintf(`"d%d":{"type":"object","properties":{"a":{"allOf":[{"$ref":"#/$defs/d%d"}],"title":"a"},"b":{"allOf":[{"$ref":"#/$defs/d%d"}],"title":"b"}}}`, i, i+1, i+1))
	}
	for i := range 64 {
		wide = append(wide, fmt.Sprintf(`{"type":"string","format":"date-time","maxLength":%d}`, 20+i))
	}
	for _, c := range []struct {
		name, schema string
		ok           bool
	}{
		{"allOf doubling 40 deep", `{"$defs":{` + strings.Join(doubling, ",") + `,"d40":{"type":"object"}},"$ref":"#/$defs/d0"}`, false},
		{"allOf in properties 40 deep", `{"$defs":{` + strings.Join(nested, ",") + `,"d40":{"type":"null"}},"$ref":"#/$defs/d0"}`, true},
		{"allOf of itself", `{"$defs":{"a":{"allOf":[{"$ref":"#/$defs/a"}]}},"$ref":"#/$defs/a"}`, false},
		{"recursion through allOf", `{"$defs":{"a":{"type":"object","properties":{"n":{"allOf":[{"$ref":"#/$defs/a"}],"description":"x"}}}},"$ref":"#/$defs/a"}`, true},
		{"$ref with siblings to itself", `{"$defs":{"a":{"$ref":"#/$defs/a","minimum":1}},"$ref":"#/$defs/a"}`, false},
		{"union of 64 formats", `{"anyOf":[` + strings.Join(wide, ",") + `]}`, true},
		{"siblings into 64 branches", `{"maxLength":3,"anyOf":[` + strings.Repeat(`{"type":"string"},`, 63) + `{"type":"string"}]}`, true},
		{"maxLength past the bound", `{"type":"string","maxLength":1e30}`, false},
		{"huge tuple", `{"type":"array","prefixItems":[` + strings.Repeat(`{},`, 2000) + `{}]}`, false},
	} {
		f, err := grammar.SchemaFormat([]byte(c.schema))
		switch {
		case err != nil && !errors.Is(err, grammar.ErrSchema):
			t.Errorf("%s: %v does not wrap ErrSchema", c.name, err)
		case (err == nil) != c.ok:
			t.Errorf("%s: SchemaFormat = %v, want ok %v", c.name, err, c.ok)
		case err == nil:
			// The matcher takes any text without a hang.
			f.Check([]byte(`{"a":{"a":{"n":"2024-01-01T00:00:00Z` + strings.Repeat(`"`, 10)))
		}
	}
}

// BenchmarkMaskFormat: a mask inside strings whose characters an automaton checks, and
// inside one whose length alone is bounded (the plain tokens within the room are taken
// without a walk).
func BenchmarkMaskFormat(b *testing.B) {
	tok := vocabs(b)["qwen2"]
	for _, c := range []struct{ name, schema, text string }{
		{"date-time", `{"type":"string","format":"date-time"}`, `"2024-02-`},
		{"email", `{"type":"string","format":"email"}`, `"first.last`},
		{"maxLength", `{"type":"string","maxLength":40}`, `"Once upon`},
		{"number-bounds", `{"type":"number","exclusiveMinimum":0,"maximum":100}`, `12`},
		// Patterns: anchored and counted, a free run between anchors (.+ takes nearly
		// every token), and an unanchored one once it has matched (any text follows).
		{"pattern-code", `{"type":"string","pattern":"^[A-Z]{3}-\\d{4}$"}`, `"AB`},
		{"pattern-dot", `{"type":"string","pattern":"^<.+>$"}`, `"<Once upon`},
		{"pattern-email", `{"type":"string","pattern":"^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,4}$"}`, `"first.last`},
		{"pattern-matched", `{"type":"string","pattern":"abc"}`, `"xabc and`},
		// A key under propertyNames: the fast paths of a string under a pattern (the
		// general walk, a frame per byte, took 200 ms under ^.+$).
		{"propertyNames", `{"type":"object","propertyNames":{"pattern":"^[a-z_]+$"},"additionalProperties":true}`, `{"first_na`},
		{"propertyNames-dot", `{"type":"object","propertyNames":{"pattern":"^.+$"},"additionalProperties":true}`, `{"Once upon`},
	} {
		f, err := grammar.SchemaFormat([]byte(c.schema))
		if err != nil {
			b.Fatal(err)
		}
		g := f.Grammar(tok)
		b.Run(c.name, func(b *testing.B) {
			benchMask(b, g, tok, tok.Encode(c.text, false))
		})
	}
}

// TestHostileSources: grammars and patterns near MaxSourceBytes — one long line, groups
// nested as deep as the text allows, many short rules — are compiled or refused with
// ErrGrammar. Nesting was bounded by the text alone, the parsers recursing once per
// group (a megabyte of '(' overflowed the goroutine's stack, a fatal error); rules that
// open the same many alternatives were each expanded to count them (0.4 s for 48 KB).
func TestHostileSources(t *testing.T) {
	const n = grammar.MaxSourceBytes / 8
	const elems = 60000 // under the bound on elements
	var rules strings.Builder
	rules.WriteString("root ::= r0\n")
	for i := 0; rules.Len() < grammar.MaxSourceBytes-64; i++ {
		fmt.Fprintf(&rules, "r%d ::= \"a\" | \"b\" r%d\n", i, i+1)
	}
	// 4000 rules that each open the same 200 alternatives, through 20 references.
	var shared strings.Builder
	shared.WriteString("root ::= a0\nw ::= " + strings.Repeat("y | ", 19) + "y\ny ::= ")
	for i := range 200 {
		fmt.Fprintf(&shared, "\"%c\" | ", rune(0x100+i))
	}
	shared.WriteString("\"z\"\n")
	for i := range 4000 {
		fmt.Fprintf(&shared, "a%d ::= w\n", i)
	}
	for _, tc := range []struct {
		name, src string
		regex     bool
		ok        bool
	}{
		{"gbnf/long line", "root ::= " + strings.Repeat(`"a"   `, elems), false, true},
		{"gbnf/nested", "root ::= " + strings.Repeat(`("a" `, n) + strings.Repeat(")", n), false, false},
		{"gbnf/open", "root ::= " + strings.Repeat("(", grammar.MaxSourceBytes-16), false, false},
		{"gbnf/nested one", "root ::= " + strings.Repeat("(", n) + `"a"` + strings.Repeat(")", n), false, false},
		{"gbnf/many rules", rules.String(), false, false},
		{"gbnf/shared alternatives", shared.String(), false, false},
		{"regex/long", strings.Repeat("a", elems), true, true},
		{"regex/nested", strings.Repeat("(a", n) + strings.Repeat(")", n), true, false},
		{"regex/open", strings.Repeat("(", grammar.MaxSourceBytes), true, false},
		{"regex/classes", strings.Repeat(`[\s\S]`, elems), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compile := grammar.GBNFFormat
			if tc.regex {
				compile = grammar.RegexFormat
			}
			_, err := compile(tc.src)
			switch {
			case tc.ok && err != nil:
				t.Errorf("compile(%d bytes) = %v, want it compiled", len(tc.src), err)
			case !tc.ok && !errors.Is(err, grammar.ErrGrammar):
				t.Errorf("compile(%d bytes) = %v, want ErrGrammar", len(tc.src), err)
			case err != nil:
				t.Log(err)
			}
		})
	}
}

// BenchmarkMaskRulesCJK: masks along a text under a loop of 250 alternatives, each a
// range of 40 CJK characters: every character a token has inside another leads to the
// loop's set again (660 ms a mask over Qwen2's tokens while each such step made a new
// set that learned its steps anew).
func BenchmarkMaskRulesCJK(b *testing.B) {
	var alts []string
	for i := range 250 {
		lo := 0x4E00 + 40*i
		alts = append(alts, fmt.Sprintf(`[\u%04X-\u%04X]`, lo, lo+39))
	}
	f, err := grammar.GBNFFormat("root ::= (" + strings.Join(alts, " | ") + ")+")
	if err != nil {
		b.Fatal(err)
	}
	for name, tok := range vocabs(b) {
		g := f.Grammar(tok)
		ids := tok.Encode("一二三四五六七八九十", false)
		logits := make([]float32, tok.VocabSize())
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				m := g.NewMatcher()
				for _, id := range ids {
					m.Mask(logits, []int32{tok.EOS()})
					m.Advance(id)
				}
			}
		})
	}
}

// TestHostilePatterns: JSON Schema patterns built to blow up the parser, the rewriting
// of repetitions of what may be empty or the automaton are compiled or refused with
// ErrSchema, and a string is then checked, without a panic or a hang. A repetition of
// 4,000 optional characters, written without its empty text, would be some 8 million
// elements (each non-empty way is a tail of the group) but for the bound on them.
func TestHostilePatterns(t *testing.T) {
	var astral strings.Builder
	for r := rune(0x10000); r < 0x10000+2*6000; r += 2 {
		astral.WriteRune(r)
	}
	for _, tc := range []struct{ name, pattern string }{
		{"empty-able group of many", "(" + strings.Repeat("a?", 4000) + ")*"},
		{"empty-able group of some", "^(" + strings.Repeat("a?b?", 150) + ")+$"},
		{"nested stars", strings.Repeat("(", 900) + "a*" + strings.Repeat(")*", 900)},
		{"nested plus of optional", strings.Repeat("(?:", 900) + "a?" + strings.Repeat(")+", 900) + "b"},
		{"empty alternatives", "(" + strings.Repeat("|", 30000) + ")*b"},
		{"same alternative", "^(" + strings.Repeat("a|", 10000) + "a)*$"},
		{"bounded of star", "(?:[^]*){1000}x"},
		{"stars of stars", strings.Repeat("(a*)*", 2000)},
		{"star then many", "(.*a){200}"},
		{"huge count", "x{99999999}"},
		{"astral class", "^[" + astral.String() + "]{3}$"},
		{"astral alternatives", "^(" + strings.Join(strings.Split(astral.String(), ""), "|") + ")+$"},
		{"escapes", strings.Repeat(`\u{10FFFF}\cZ\x7f`, 3000)},
		{"property classes", strings.Repeat(`\P{Lu}`, 9000)},
		{"property classes in a class", "^[" + strings.Repeat(`\p{Lu}\p{Nd}\P{sc=Greek}`, 2000) + "]+$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			schema, _ := json.Marshal(map[string]any{"type": "string", "pattern": tc.pattern, "maxLength": 40})
			f, err := grammar.SchemaFormat(schema)
			if err != nil {
				if !errors.Is(err, grammar.ErrSchema) {
					t.Fatalf("SchemaFormat(%d-byte pattern) = %v, want ErrSchema", len(tc.pattern), err)
				}
				t.Log(err)
				return
			}
			f.Check([]byte(`"` + strings.Repeat("ab", 20) + `"`))
		})
	}
}
