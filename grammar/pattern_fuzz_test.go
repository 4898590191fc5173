package grammar

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// patternPieces are the parts FuzzPatternGo builds patterns of: syntax that ECMA-262
// (a pattern's reading) and Go's regexp read alike. Not '.' (Go's matches \r and
// U+2028) nor \s (Go's lacks \v and the Unicode spaces).
var patternPieces = []string{
	"a", "b", "é", "世", " ", `\n`, `"`, `\\`, `\d`, `\w`, `\W`, `\D`, "[ab]", "[^a]", "[a-c1]", `[^\n]`,
	"(", "(?:", ")", "|", "*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}", "*?", "+?", "^", "$", `\.`, `\u00e9`, `\x41`,
}

// FuzzPatternGo: for a pattern of patternPieces that both take, a string is one the
// pattern's automaton accepts exactly when Go's regexp matches somewhere in it (not
// anchored unless '^' or '$' says so), for strings a JSON string can hold under a
// pattern.
func FuzzPatternGo(f *testing.F) {
	f.Add([]byte{0, 17, 0, 19, 1, 18, 20}, "xaab")
	f.Add([]byte{29, 8, 22, 30}, "12")
	f.Add([]byte{0, 1}, "ccabcc")
	f.Add([]byte{6, 15, 20, 6}, `say "hi"`)
	f.Fuzz(func(t *testing.T, pb []byte, text string) {
		if len(pb) > 24 || len(text) > 32 || !utf8.ValidString(text) || strings.ContainsFunc(text, func(r rune) bool { return !writable(r) }) {
			return
		}
		var p strings.Builder
		for _, c := range pb {
			p.WriteString(patternPieces[int(c)%len(patternPieces)])
		}
		re, err := regexp.Compile(p.String())
		if err != nil {
			return
		}
		auto, err := compilePattern(p.String(), 0)
		if err != nil {
			if !errors.Is(err, ErrGrammar) && !errors.Is(err, errPatternSize) {
				t.Fatalf("%q: %v wraps neither ErrGrammar nor errPatternSize", p.String(), err)
			}
			return // refused: '^' or '$' inside a group, a repetition of what may be empty
		}
		rule := &strRule{max: -1, auto: auto}
		if got, want := rule.matches(text), re.MatchString(text); got != want {
			t.Fatalf("%q on %q: automaton %v, Go's regexp %v", p.String(), text, got, want)
		}
		// Through the matcher, as a JSON string.
		doc, _ := json.Marshal(text)
		fm, err := SchemaFormat(append(append([]byte(`{"type":"string","pattern":`), mustJSON(p.String())...), '}'))
		if err != nil {
			t.Fatalf("%q: %v", p.String(), err)
		}
		if _, whole := fm.Check(escapeFree(doc)); whole != re.MatchString(text) {
			t.Fatalf("%q on %s: Check whole %v, Go's regexp %v", p.String(), doc, whole, re.MatchString(text))
		}
	})
}

func mustJSON(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// escapeFree is a JSON string as the matcher writes it under a pattern: no \u escapes
// (encoding/json writes <, >, & and U+2028-9 so).
func escapeFree(doc []byte) []byte {
	var s string
	_ = json.Unmarshal(doc, &s)
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return []byte(b.String())
}

// FuzzPattern: any pattern is taken or refused with ErrSchema, never a panic or a hang,
// and a pattern taken has an automaton with no dead state: from every state its rest
// leads to a final one.
func FuzzPattern(f *testing.F) {
	for _, p := range []string{`^[A-Z]{3}-\d{4}$`, `^\+?[0-9 ]{7,15}$`, `abc`, `colou?r`, `[^"]*`, `(?=a)`, `a{,3}`, `[]|[^]`,
		`\u{1F600}+`, `(a|b)*a(a|b){12}`, `^(?<n>x)+$`, `\p{L}`, `[\s\S]{3}\S`} {
		f.Add(p, "abc")
	}
	f.Fuzz(func(t *testing.T, p, text string) {
		if len(p) > 256 {
			return
		}
		fm, err := SchemaFormat(append(append([]byte(`{"type":"string","pattern":`), mustJSON(p)...), '}'))
		if err != nil {
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("%q: %v does not wrap ErrSchema", p, err)
			}
			return
		}
		fm.Check(append(append([]byte{'"'}, text[:min(len(text), 64)]...), '"'))
		auto, ok := fm.root.str.auto.(*patternRule)
		if !ok {
			return // the empty pattern
		}
		for s := range auto.fin {
			if d := auto.dist[s]; d >= 0 && auto.fin[s] != (d == 0) {
				t.Fatalf("%q: state %d final %v at distance %d", p, s, auto.fin[s], d)
			}
		}
		for i, to := range auto.trans {
			if to >= 0 && auto.dist[to] < 0 {
				t.Fatalf("%q: state %d steps to %d, from which no string ends", p, i/auto.classes, to)
			}
		}
	})
}
