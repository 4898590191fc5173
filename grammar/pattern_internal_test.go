package grammar

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
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
		// With lengths beside it, in code points: minLength is folded into the
		// automaton, maxLength bounds the string.
		n := utf8.RuneCountInString(text)
		lo, hi := len(pb)%4, len(pb)%4+len(text)%6
		schema := fmt.Sprintf(`{"type":"string","minLength":%d,"maxLength":%d,"pattern":%s}`, lo, hi, mustJSON(p.String()))
		if fm, err = SchemaFormat([]byte(schema)); err != nil {
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("%s: %v", schema, err)
			}
			return // no string of those lengths matches
		}
		want := re.MatchString(text) && n >= lo && n <= hi
		if _, whole := fm.Check(escapeFree(doc)); whole != want {
			t.Fatalf("%s on %s: Check whole %v, want %v", schema, doc, whole, want)
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

// FuzzPattern: any pattern, with a minimum length, is taken or refused with ErrSchema,
// never a panic or a hang, and a pattern taken has an automaton with no dead state:
// from every state its rest leads to a final one.
func FuzzPattern(f *testing.F) {
	for _, p := range []string{`^[A-Z]{3}-\d{4}$`, `^\+?[0-9 ]{7,15}$`, `abc`, `colou?r`, `[^"]*`, `(?=a)`, `a{,3}`, `[]|[^]`,
		`\u{1F600}+`, `[\uD83D\uDE00-\uD83D\uDE4F]\uD83D`, `(a|b)*a(a|b){12}`, `^(?<n>x)+$`, `\p{L}`, `[\s\S]{3}\S`,
		`\cJ(a?)*`, `((a*|b?)*c)+`, `^https://`, `a{,2}`, `\u{0000041}`, `(|a)+$`, `^\-\"\#`} {
		f.Add(p, "abc")
	}
	f.Fuzz(func(t *testing.T, p, text string) {
		if len(p) > 256 {
			return
		}
		// A minimum of 0 to 3 characters, folded into the automaton.
		schema := append(append([]byte(`{"type":"string","minLength":`+strconv.Itoa(len(text)%4)+`,"pattern":`), mustJSON(p)...), '}')
		fm, err := SchemaFormat(schema)
		if err != nil {
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("%q: %v does not wrap ErrSchema", p, err)
			}
			return
		}
		fm.Check(append(append([]byte{'"'}, text[:min(len(text), 64)]...), '"'))
		if fm.root.str == nil || fm.root.str.auto == nil {
			return // the empty pattern: any string (of the minimum)
		}
		auto, ok := fm.root.str.auto.(*patternRule)
		if !ok {
			t.Fatalf("%q: a rule %T", p, fm.root.str.auto)
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

// TestPatternCache: a pattern compiled again (for another request) is the automaton
// compiled before, with what its states learned; a refusal is remembered too.
func TestPatternCache(t *testing.T) {
	a, err := compilePattern(`^cache-[a-z]+$`, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := compilePattern(`^cache-[a-z]+$`, 2)
	if err != nil || a != b {
		t.Errorf("compilePattern again = %p, %v; want %p", b, err, a)
	}
	if c, _ := compilePattern(`^cache-[a-z]+$`, 3); c == a {
		t.Errorf("another minimum gave the same automaton")
	}
	_, err1 := compilePattern(`[ab]*a[ab]{14}`, 0)
	_, err2 := compilePattern(`[ab]*a[ab]{14}`, 0)
	if !errors.Is(err1, errPatternSize) || err1 != err2 {
		t.Errorf("refusals %v, %v; want errPatternSize, the same", err1, err2)
	}
}

// BenchmarkMaskPatternFirst: the first mask at a position inside a pattern's string,
// the schema compiled anew and the automata kept for other requests forgotten (so the
// plain tokens its state takes are found anew), over Qwen2's vocabulary.
func BenchmarkMaskPatternFirst(b *testing.B) {
	tok, err := ggufvocab.Open(filepath.Join(testmodels.VocabDir(b), "ggml-vocab-qwen2.gguf"))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, schema, text string }{
		{"code", `{"type":"string","pattern":"^[A-Z]{3}-\\d{4}$"}`, `"AB`},
		{"dot", `{"type":"string","pattern":"^<.+>$"}`, `"<Once upon`},
		{"email", `{"type":"string","pattern":"^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,4}$"}`, `"first.last`},
	} {
		ids := tok.Encode(c.text, false)
		logits := make([]float32, tok.VocabSize())
		first := func() {
			patternCache.mu.Lock()
			clear(patternCache.rules)
			patternCache.mu.Unlock()
			f, err := SchemaFormat([]byte(c.schema))
			if err != nil {
				b.Fatal(err)
			}
			m := f.Grammar(tok).NewMatcher()
			m.Reset(ids)
			m.Mask(logits, []int32{tok.EOS()})
		}
		first() // the vocabulary's tries, built once per process
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				first()
			}
		})
	}
}
