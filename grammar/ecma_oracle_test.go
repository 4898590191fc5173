package grammar

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// ecmaRow is a line of testdata/ecma-oracle/verdicts.jsonl: a pattern, strings, and
// whether Node.js's new RegExp(pattern, "u").test(string) holds for each (match), the
// string's length in code points within minLength and maxLength where they are set;
// or, for a pattern ECMA-262 refuses with the u flag, its error and what the reading
// without u (Annex B) says (annexB), unless that refuses it too.
type ecmaRow struct {
	Pattern     string   `json:"pattern"`
	MinLength   *int     `json:"minLength"`
	MaxLength   *int     `json:"maxLength"`
	Error       string   `json:"error"`
	Strings     []string `json:"strings"`
	Match       []bool   `json:"match"`
	AnnexB      []bool   `json:"annexB"`
	AnnexBError string   `json:"annexBError"`
}

// schema is the JSON Schema of r: a string with r's pattern and length bounds.
func (r ecmaRow) schema() []byte {
	schema := map[string]any{"type": "string", "pattern": r.Pattern}
	if r.MinLength != nil {
		schema["minLength"] = *r.MinLength
	}
	if r.MaxLength != nil {
		schema["maxLength"] = *r.MaxLength
	}
	doc, _ := json.Marshal(schema)
	return doc
}

func readECMAOracle(t *testing.T) []ecmaRow {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "ecma-oracle", "verdicts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []ecmaRow
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r ecmaRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("verdicts.jsonl line %d: %v", len(rows)+1, err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// ecmaRefusals are the features of ECMA-262 patterns that specd refuses, as
// docs/operations.md ("Structured output", pattern) lists them: each a part of the
// error a refusal of it says. A pattern ECMA-262 takes and specd refuses for any other
// reason is a bug.
var ecmaRefusals = []struct{ feature, says string }{
	{"look-arounds", "look-arounds"},
	{"back-references", "back-references"},
	{"word boundaries", `word boundaries`},
	{"Unicode property classes other than General_Category, Script and Go's binary properties", "Unicode property class"},
	{"^ elsewhere than the start of an alternative at the top", "'^' only at the start"},
	{"$ elsewhere than the end of an alternative at the top", "'$' only at the end"},
	{"a lone surrogate", "is not a character"},
	{"the automaton's bounds", "too complex"},
	{"the automaton's bounds", "makes the grammar more than"},
	{"the automaton's bounds", "too ambiguous"},
	{"no string a JSON string holds without \\u escapes matches", "no string a JSON string can hold"},
	{"no string matches", "the pattern matches no text"},
}

// ecmaLenient are the patterns ECMA-262 refuses with the u flag (ajv, JSON Schema's
// reading) that specd takes, each with why; where the reading without u (Annex B)
// takes them, specd means what it means.
var ecmaLenient = map[string]string{
	`^\-$`:             `\- outside a class: Python's re and Annex B read it as '-'`,
	`^\"$`:             `\ before punctuation is the punctuation, as in Python's re and Annex B`,
	`^\#\@\ \,$`:       `\ before punctuation is the punctuation, as in Python's re and Annex B`,
	`^\_$`:             `\ before punctuation is the punctuation, as in Python's re and Annex B`,
	`^\é$`:             `\ before a character past ASCII is the character, as in Python's re and Annex B`,
	`^(?P<n>x)$`:       `Python's named group, read as a group`,
	`^(?<a-b>x)$`:      `a group's name is not checked`,
	`^(?<n>a)(?<n>b)$`: `a group's name is not checked`,
	`^a{$`:             `a '{' that begins no quantifier is itself, as in Annex B`,
	`^a{1$`:            `a '{' that begins no quantifier is itself, as in Annex B`,
	`^a{1,2$`:          `a '{' that begins no quantifier is itself, as in Annex B`,
	`^a{x}$`:           `a '{' that begins no quantifier is itself, as in Annex B`,
	`^a{ 2}$`:          `a '{' that begins no quantifier is itself, as in Annex B`,
	`^{$`:              `a '{' that begins no quantifier is itself, as in Annex B`,
	`^}$`:              `a lone '}' is itself, as in Annex B`,
	`^]$`:              `a lone ']' is itself, as in Annex B`,
}

// TestPatternAgreesWithECMA: for every pattern of testdata/ecma-oracle that ECMA-262
// takes, specd either refuses it for a feature docs/operations.md says it does not
// support (ecmaRefusals) or takes exactly the strings Node.js's RegExp matches — those
// a JSON string under a pattern can hold (no control character without a one-letter
// escape) — through the automaton (strRule.matches) and through the matcher reading
// the string as JSON, byte by byte, as the mask does (Check). A pattern ECMA-262
// refuses is refused, or listed in ecmaLenient and read as Annex B reads it.
func TestPatternAgreesWithECMA(t *testing.T) {
	rows := readECMAOracle(t)
	refused := map[string]int{}
	pairs, checked, unassigned := 0, 0, 0
	lenient := map[string]bool{}
	for _, r := range rows {
		pairs += len(r.Strings)
		doc := r.schema()
		fm, err := SchemaFormat(doc)
		want := r.Match
		switch {
		case r.Error == "" && err != nil:
			i := slices.IndexFunc(ecmaRefusals, func(e struct{ feature, says string }) bool {
				return strings.Contains(err.Error(), e.says)
			})
			if i < 0 {
				t.Errorf("pattern %q: ECMA-262 takes it, specd refuses it for no documented reason: %v", r.Pattern, err)
				continue
			}
			refused[ecmaRefusals[i].feature]++
			continue
		case r.Error != "" && err != nil:
			if _, ok := ecmaLenient[r.Pattern]; ok {
				t.Errorf("pattern %q: ecmaLenient says specd takes it, it refuses it: %v", r.Pattern, err)
			}
			continue
		case r.Error != "":
			why, ok := ecmaLenient[r.Pattern]
			if !ok {
				t.Errorf("pattern %q: ECMA-262 refuses it (%s), specd takes it", r.Pattern, r.Error)
				continue
			}
			lenient[r.Pattern] = true
			if r.AnnexB == nil {
				t.Logf("pattern %q: taken (%s); nothing reads it to compare", r.Pattern, why)
				continue
			}
			want = r.AnnexB
		}
		var auto *patternRule
		var keys Format // the pattern as propertyNames, over the keys of an object
		if r.MinLength == nil && r.MaxLength == nil {
			if fm.root.str != nil {
				auto, _ = fm.root.str.auto.(*patternRule)
			}
			doc, _ := json.Marshal(map[string]any{"type": "object", "propertyNames": map[string]any{"pattern": r.Pattern}, "additionalProperties": true})
			// Keys are at most maxKeyChars characters: a pattern none so short
			// matches is refused there.
			if keys, err = SchemaFormat(doc); err != nil && !strings.Contains(err.Error(), "no key of at most") {
				t.Errorf("pattern %q: as propertyNames: %v", r.Pattern, err)
			}
		}
		props := strings.Contains(r.Pattern, `\p`) || strings.Contains(r.Pattern, `\P`)
		for i, s := range r.Strings {
			astral := strings.ContainsFunc(s, func(c rune) bool { return c > 0xFFFF })
			if r.Error != "" && astral {
				continue // Annex B reads a surrogate pair as two characters
			}
			w := want[i] && !strings.ContainsFunc(s, func(c rune) bool { return !writable(c) })
			// A character Unicode assigned after Go's tables is in no property class of
			// specd's (uniprop.go), though it may be in Node's: specd may refuse
			// such a string Node takes, never the other way.
			newer := props && w && strings.ContainsFunc(s, func(c rune) bool { return unicode.Is(unicode.Cn, c) })
			agree := func(got bool) bool {
				if got != w && newer && !got {
					unassigned++
					return true
				}
				return got == w
			}
			doc := escapeFree(mustJSON(s))
			if _, whole := fm.Check(doc); !agree(whole) {
				t.Errorf("pattern %q (minLength %v, maxLength %v) on %q: Check whole %v, ECMA-262 %v", r.Pattern, deref(r.MinLength), deref(r.MaxLength), s, whole, w)
			}
			if strings.Contains(s, "/") { // JSON may write '/' as \/
				if _, whole := fm.Check(bytes.ReplaceAll(doc, []byte("/"), []byte(`\/`))); !agree(whole) {
					t.Errorf("pattern %q on %q, '/' written \\/: Check whole %v, ECMA-262 %v", r.Pattern, s, whole, w)
				}
			}
			if keys.root != nil {
				obj := append(append([]byte{'{'}, doc...), ": 1}"...)
				long := utf8.RuneCountInString(s) > maxKeyChars // no key is so long
				if _, whole := keys.Check(obj); long && whole || !long && !agree(whole) {
					t.Errorf("propertyNames pattern %q on the key %q: Check whole %v, ECMA-262 %v", r.Pattern, s, whole, w)
				}
			}
			if auto != nil {
				if got := (&strRule{max: -1, auto: auto}).matches(s); !agree(got) {
					t.Errorf("pattern %q on %q: automaton %v, ECMA-262 %v", r.Pattern, s, got, w)
				}
			}
			checked++
		}
	}
	for p := range ecmaLenient {
		if !lenient[p] && !slices.ContainsFunc(rows, func(r ecmaRow) bool { return r.Pattern == p }) {
			t.Errorf("ecmaLenient lists %q, which verdicts.jsonl does not hold", p)
		}
	}
	t.Logf("%d patterns, %d pairs, %d checked (%d checks refused a character Go's Unicode tables do not assign); refused (documented): %v", len(rows), pairs, checked, unassigned, refused)
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestPatternMaskAgreesWithECMA: over real vocabularies, for patterns of
// testdata/ecma-oracle both take and strings ECMA-262 matches, the mask at each token
// of the string written as JSON leaves that token (and the end once the string is
// whole): it never blocks the way to a string ECMA-262 takes. And at each of those
// positions, and along random walks through the mask, it leaves exactly the tokens
// whose bytes the matcher can step through (Allows) — a state that
// TestPatternAgreesWithECMA holds to ECMA-262 — so it never leaves a token that leads
// outside the language, through its fast paths (the plain tokens a state of the
// automaton keeps, the walk of characters past ASCII, the first byte of an escape).
func TestPatternMaskAgreesWithECMA(t *testing.T) {
	rows := readECMAOracle(t)
	vocabs := []struct {
		name, path string
		patterns   int // patterns checked
		stride     int // every stride-th token's mask is checked against Allows
	}{
		{"specd", testmodels.ForTest(t, "specd-draft-q8_0.gguf"), 60, 1},
		{"qwen2", filepath.Join(testmodels.VocabDir(t), "ggml-vocab-qwen2.gguf"), 4, 1},
	}
	if testing.Short() { // Allows over 152k tokens is a second a mask under -race
		vocabs[0].patterns, vocabs[1].patterns, vocabs[1].stride = 15, 1, 101
	}
	// The patterns with strings to write: those both take, a string ECMA-262 matches
	// that a JSON string under a pattern can hold.
	type usable struct {
		f       Format
		strs    []string
		name    string
		lengths bool // minLength or maxLength beside the pattern
	}
	var use []usable
	for _, r := range rows {
		if r.Error != "" {
			continue
		}
		doc := r.schema()
		f, err := SchemaFormat(doc)
		if err != nil {
			continue
		}
		var strs []string
		for i, s := range r.Strings {
			if r.Match[i] && !strings.ContainsFunc(s, func(c rune) bool { return !writable(c) }) && len(s) < 200 {
				strs = append(strs, s)
			}
		}
		if len(strs) > 0 {
			use = append(use, usable{f, strs[:min(len(strs), 2)], string(doc), r.MinLength != nil || r.MaxLength != nil})
		}
	}
	for _, v := range vocabs {
		tok, err := ggufvocab.Open(v.path)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(v.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(8, 12))
			ends := []int32{tok.EOS()}
			logits := make([]float32, tok.VocabSize())
			// Every pattern once in a while, from the first (the hand-written ones) on.
			step := max(1, len(use)/v.patterns)
			checks := 0
			for k, u := range use {
				if k%step != 0 && !u.lengths {
					continue
				}
				g := u.f.Grammar(tok)
				same := func(m *Matcher, after []int32) {
					t.Helper()
					clear(logits)
					m.Mask(logits, ends)
					for id := 0; id < len(logits); id += v.stride {
						masked := math.IsInf(float64(logits[id]), -1)
						if m.Allows(int32(id), ends) == masked {
							t.Fatalf("%s after %q: token %d %q: Allows %v, the mask leaves it %v", u.name, tok.Decode(after), id, tok.TokenBytes(int32(id)), masked, !masked)
						}
					}
					checks++
				}
				for _, s := range u.strs {
					doc := escapeFree(mustJSON(s))
					ids := tok.Encode(string(doc), false)
					if !bytes.Equal([]byte(tok.Decode(ids)), doc) {
						continue // the vocabulary cannot write it as these bytes
					}
					m := g.NewMatcher().(*Matcher)
					for i, id := range ids {
						same(m, ids[:i])
						if math.IsInf(float64(logits[id]), -1) {
							t.Fatalf("%s: %s after %q: the mask blocks token %q of it", u.name, doc, tok.Decode(ids[:i]), tok.TokenBytes(id))
						}
						m.Advance(id)
					}
					same(m, ids)
					if math.IsInf(float64(logits[tok.EOS()]), -1) {
						t.Fatalf("%s: %s whole: the mask blocks the end", u.name, doc)
					}
				}
				// A walk through the mask, leaving the strings ECMA-262 matches.
				m := g.NewMatcher().(*Matcher)
				var walked []int32
				for range 6 {
					same(m, walked)
					allowed := allowedIDs(logits, tok)
					if len(allowed) == 0 {
						t.Fatalf("%s after %q: the mask leaves nothing", u.name, tok.Decode(walked))
					}
					id := allowed[rng.IntN(len(allowed))]
					if id == tok.EOS() {
						break
					}
					m.Advance(id)
					walked = append(walked, id)
				}
			}
			t.Logf("%d masks checked token by token", checks)
		})
	}
}

// allowedIDs are the tokens whose logit a mask left.
func allowedIDs(logits []float32, tok *tokenizer.Tokenizer) []int32 {
	var out []int32
	for id, l := range logits {
		if !math.IsInf(float64(l), -1) && id < tok.VocabSize() {
			out = append(out, int32(id))
		}
	}
	return out
}
