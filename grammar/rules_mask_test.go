package grammar_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/tokenizer"
)

// ruleFormats are a rule format of each kind with a text it takes whole.
func ruleFormats(t testing.TB) []struct {
	name string
	f    grammar.Format
	text string
} {
	t.Helper()
	// SentencePiece writes a space before the text: the grammars take one.
	gbnf, err := grammar.GBNFFormat(`root ::= " "? "Name: " name "\nAge: " [0-9]{1,3} ("\nTags: " tag ("," tag)*)?
name ::= [A-Z] [a-zë☃ ]+
tag ::= [^,\n]+`)
	if err != nil {
		t.Fatal(err)
	}
	regex, err := grammar.RegexFormat(`\s?\d{3}-\d{4} \((home|work)\)[^\n]*`)
	if err != nil {
		t.Fatal(err)
	}
	choice, err := grammar.ChoiceFormat([]string{" positive", "positive", " negative", "negative", " neutral", "neutral"})
	if err != nil {
		t.Fatal(err)
	}
	// Free text of most ASCII characters and a few others (a mask scans the vocabulary,
	// stepping through the tokens with other characters).
	some, err := grammar.GBNFFormat(`root ::= [ -~é世界]+ "\n"`)
	if err != nil {
		t.Fatal(err)
	}
	// Where most characters are free though the set changes with each: a period, and
	// a counted run that an end closes (a mask scans these too; see free).
	period, err := grammar.RegexFormat(`\s?(.{3})+`)
	if err != nil {
		t.Fatal(err)
	}
	counted, err := grammar.GBNFFormat(`root ::= " "? "{" [^}]{0,40} "}"`)
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name string
		f    grammar.Format
		text string
	}{
		{"regex-period", period, "Zoë ☃ ab😀"},
		{"gbnf-counted", counted, "{Zoë ☃ 世界 ok, \"yes\" and more}"},
		{"gbnf", gbnf, "Name: Zoë ☃\nAge: 42\nTags: 😀 x,b"},
		{"gbnf-some", some, "Zoé 世界 ok, \"yes\"\n"},
		{"regex", regex, "555-1234 (work) Zoë ☃"},
		{"choice", choice, "neutral"},
	}
}

// TestRuleMaskFollowsTokens: the tokens a tokenizer writes a sentence with are each
// allowed where they stand, the end only once the sentence is whole; at each position
// the mask leaves exactly the tokens Allows allows.
func TestRuleMaskFollowsTokens(t *testing.T) {
	for vname, tok := range vocabs(t) {
		for _, rf := range ruleFormats(t) {
			ids := tok.Encode(rf.text, false)
			if got := tok.Decode(ids); got != rf.text {
				t.Fatalf("%s: %q decodes to %q", vname, rf.text, got)
			}
			m := rf.f.Grammar(tok).NewMatcher()
			end := tok.EOS()
			ends := []int32{end}
			logits := make([]float32, tok.VocabSize())
			for i, id := range append(ids, -1) {
				clear(logits)
				m.Mask(logits, ends)
				masked := func(id int32) bool { return math.IsInf(float64(logits[id]), -1) }
				if id >= 0 && masked(id) {
					t.Fatalf("%s/%s: token %d (%q) masked after %q", vname, rf.name, i, tok.TokenBytes(id), tok.Decode(ids[:i]))
				}
				var before []byte // the bytes so far, as the grammar reads them
				for _, id := range ids[:i] {
					before = append(before, tok.TokenBytes(id)...)
				}
				if _, whole := rf.f.Check(before); masked(end) == whole {
					t.Fatalf("%s/%s: end masked %v after %q", vname, rf.name, masked(end), tok.Decode(ids[:i]))
				}
				if i%5 == 0 || id < 0 {
					for j := range int32(len(logits)) {
						if m.Allows(j, ends) == masked(j) {
							t.Fatalf("%s/%s: after %q, Allows(%d %q) = %v but the mask says %v", vname, rf.name, before, j, tok.TokenBytes(j), m.Allows(j, ends), !masked(j))
						}
						// A fresh state, with nothing remembered from the walks, agrees.
						if b := tok.TokenBytes(j); vname == "specd" && j != end && len(b) > 0 && hasText(tok, j) {
							if ok, _ := rf.f.Check(append(before[:len(before):len(before)], b...)); ok == masked(j) {
								t.Fatalf("%s/%s: after %q, %q: Check says %v but the mask says %v", vname, rf.name, before, b, ok, !masked(j))
							}
						}
					}
				}
				if id >= 0 {
					m.Advance(id)
				}
			}
		}
	}
}

// BenchmarkMaskRules: the cost of one token's mask under rule grammars, per vocabulary:
// where few tokens fit (a number), where most do (free text), and a JSON grammar
// written in GBNF inside a string.
func BenchmarkMaskRules(b *testing.B) {
	cases := []struct{ name, grammar, at string }{
		{"digits", `root ::= " "? "Age: " [0-9]{1,3}`, "Age: "},
		{"text", `root ::= " "? "Story: " [^\n]+ "\n"`, "Story: Once upon"},
		{"json-string", jsonGBNF, `{"story": "Once upon`},
	}
	for name, tok := range vocabs(b) {
		for _, c := range cases {
			f, err := grammar.GBNFFormat(c.grammar)
			if err != nil {
				b.Fatal(err)
			}
			g := f.Grammar(tok)
			ids := tok.Encode(c.at, false)
			logits := make([]float32, tok.VocabSize())
			// warm: the same position again, as a loop in the grammar is (see Mask);
			// cold: a matcher's first mask there.
			b.Run(name+"/"+c.name+"/warm", func(b *testing.B) {
				m := g.NewMatcher()
				m.Reset(ids)
				m.Mask(logits, []int32{tok.EOS()})
				for b.Loop() {
					m.Mask(logits, []int32{tok.EOS()})
				}
			})
			b.Run(name+"/"+c.name+"/cold", func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					m := g.NewMatcher()
					m.Reset(ids)
					b.StartTimer()
					m.Mask(logits, []int32{tok.EOS()})
				}
			})
		}
	}
}

// jsonGBNF is llama.cpp's grammars/json.gbnf, in substance (and a space before, as
// SentencePiece writes one).
const jsonGBNF = `root   ::= " "? object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
`

// hasText reports whether token id stands for text (what the grammar reads of it).
func hasText(tok *tokenizer.Tokenizer, id int32) bool {
	switch tok.Type(id) {
	case tokenizer.TypeNormal, tokenizer.TypeUserDefined, tokenizer.TypeByte, tokenizer.TypeUnused:
		return id != tok.BOS() && id != tok.EOS()
	}
	return false
}

// BenchmarkMaskRulesHostile: a matcher's first mask under a grammar that keeps 250
// alternatives open, each a run of classes of half the letters, so that the stacks a
// token leaves differ with nearly every letter it has: the walk's steps do not share.
func BenchmarkMaskRulesHostile(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var alts []string
	for range 250 {
		var w strings.Builder
		for range 6 {
			w.WriteString("[")
			for c := 'a'; c <= 'z'; c++ {
				if rng.IntN(2) == 0 {
					w.WriteRune(c)
				}
			}
			w.WriteString("x]")
		}
		alts = append(alts, w.String())
	}
	f, err := grammar.GBNFFormat("root ::= (" + strings.Join(alts, " | ") + ")+")
	if err != nil {
		b.Fatal(err)
	}
	for name, tok := range vocabs(b) {
		g := f.Grammar(tok)
		logits := make([]float32, tok.VocabSize())
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				g.NewMatcher().Mask(logits, []int32{tok.EOS()})
			}
		})
	}
}

// BenchmarkMaskRulesRuns: masks along a text under patterns where most characters may
// come next though the set changes with each character (a period, counted runs).
func BenchmarkMaskRulesRuns(b *testing.B) {
	const text = "hello world, this is a long text of many words and it goes on"
	for _, p := range []string{`(.{3})*x`, `[^\n]{1,500}`, `.{0,300}\n`} {
		f, err := grammar.RegexFormat(p)
		if err != nil {
			b.Fatal(err)
		}
		for name, tok := range vocabs(b) {
			g := f.Grammar(tok)
			ids := tok.Encode(text, false)
			logits := make([]float32, tok.VocabSize())
			b.Run(name+"/"+p, func(b *testing.B) {
				for b.Loop() {
					m := g.NewMatcher()
					for _, id := range ids[:8] {
						m.Mask(logits, []int32{tok.EOS()})
						m.Advance(id)
					}
				}
			})
		}
	}
}
