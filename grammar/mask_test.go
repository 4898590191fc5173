package grammar_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// vocabs are tokenizers of every kind the grammar maps to bytes: the specd pair's
// SentencePiece vocabulary (byte fallback, dummy-prefix spaces) and byte-level BPE
// vocabularies of 128k and 152k tokens.
func vocabs(tb testing.TB) map[string]*tokenizer.Tokenizer {
	tb.Helper()
	out := map[string]*tokenizer.Tokenizer{}
	for name, path := range map[string]string{
		"specd":     testmodels.ForTest(tb, "specd-draft-q8_0.gguf"),
		"llama-bpe": filepath.Join(testmodels.VocabDir(tb), "ggml-vocab-llama-bpe.gguf"),
		"qwen2":     filepath.Join(testmodels.VocabDir(tb), "ggml-vocab-qwen2.gguf"),
	} {
		tok, err := ggufvocab.Open(path)
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = tok
	}
	return out
}

// TestMaskFollowsTokens: the tokens a tokenizer writes a document with are each allowed
// where they stand, the ends only once the document is whole; a token that would break
// the document is masked.
func TestMaskFollowsTokens(t *testing.T) {
	schema, err := grammar.SchemaFormat([]byte(`{"type":"object","properties":{"name":{"type":"string"},
		"tags":{"type":"array","items":{"type":"string"}},"n":{"type":"number"}},"required":["name"]}`))
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{`{"name": "Zoë ☃ 😀", "tags": ["a\"b", "\u00e9"], "n": -12.5e3}`, `{"name":""}`}
	for name, tok := range vocabs(t) {
		for _, f := range []grammar.Format{grammar.ObjectFormat(), schema} {
			for _, doc := range docs {
				ids := tok.Encode(doc, false)
				if got := tok.Decode(ids); got != doc {
					t.Fatalf("%s: %q decodes to %q", name, doc, got)
				}
				m := f.Grammar(tok).NewMatcher()
				end := tok.EOS()
				logits := make([]float32, tok.VocabSize())
				for i, id := range ids {
					clear(logits)
					m.Mask(logits, []int32{end})
					if math.IsInf(float64(logits[id]), -1) {
						t.Fatalf("%s: token %d (%q) of %q masked after %q", name, i, tok.TokenBytes(id), doc, tok.Decode(ids[:i]))
					}
					if !math.IsInf(float64(logits[end]), -1) {
						t.Fatalf("%s: the end allowed after %q, before the document is whole", name, tok.Decode(ids[:i]))
					}
					m.Advance(id)
				}
				clear(logits)
				m.Mask(logits, []int32{end})
				if math.IsInf(float64(logits[end]), -1) {
					t.Errorf("%s: the end masked after the whole document %q", name, doc)
				}
				allowed := 0
				for _, l := range logits {
					if !math.IsInf(float64(l), -1) {
						allowed++
					}
				}
				if allowed != 1 {
					t.Errorf("%s: %d tokens allowed after the whole object %q, want the end alone", name, allowed, doc)
				}
			}
		}
		// After '{', a bare word cannot come.
		m := grammar.ObjectFormat().Grammar(tok).NewMatcher()
		for _, id := range tok.Encode("{", false) {
			m.Advance(id)
		}
		logits := make([]float32, tok.VocabSize())
		m.Mask(logits, nil)
		for _, w := range []string{"x", "hello", "}}", ","} {
			ids := tok.Encode(w, false)
			if len(ids) == 1 && !math.IsInf(float64(logits[ids[0]]), -1) {
				t.Errorf("%s: %q allowed after '{'", name, w)
			}
		}
	}
}

// BenchmarkMask: the cost of one token's mask, at the start of an object (few tokens
// fit) and inside a string (nearly all do), per vocabulary.
func BenchmarkMask(b *testing.B) {
	for name, tok := range vocabs(b) {
		g := grammar.ObjectFormat().Grammar(tok)
		for _, at := range []struct{ name, text string }{{"object", `{`}, {"string", `{"story": "Once upon`}} {
			b.Run(name+"/"+at.name, func(b *testing.B) {
				benchMask(b, g, tok, tok.Encode(at.text, false))
			})
		}
	}
}

// benchMask times the mask at the state after ids, the same matcher each time.
func benchMask(b *testing.B, g *grammar.Grammar, tok *tokenizer.Tokenizer, ids []int32) {
	m := g.NewMatcher()
	m.Reset(ids)
	logits := make([]float32, tok.VocabSize())
	for b.Loop() {
		m.Mask(logits, []int32{tok.EOS()})
	}
}

// TestSamplerAllows: after a draw, the sampler says which tokens the grammar's mask left
// (a draft checks its repeat lookup's token so), and the draw is one of them.
func TestSamplerAllows(t *testing.T) {
	tok := vocabs(t)["specd"]
	s := sample.New(sample.Params{TopP: 1, Grammar: grammar.ObjectFormat().Grammar(tok)})
	logits := make([]float32, tok.VocabSize())
	first, _ := s.Top2(logits, 0)
	if !s.Allows(first) {
		t.Errorf("the draw %d (%q) is not allowed", first, tok.TokenBytes(first))
	}
	brace, word := tok.Encode("{", false), tok.Encode("the", false)
	if len(brace) != 1 || len(word) != 1 {
		t.Fatalf("want one token each: %v %v", brace, word)
	}
	if !s.Allows(brace[0]) || s.Allows(word[0]) || s.Allows(-1) {
		t.Errorf("allows {: %v, the: %v, -1: %v; want true, false, false", s.Allows(brace[0]), s.Allows(word[0]), s.Allows(-1))
	}
	if !sample.New(sample.Params{TopP: 1}).Allows(word[0]) {
		t.Errorf("without a grammar, a token is not allowed")
	}
}

// TestLazyDraw: under a grammar, greedy and unfiltered sampled draws race without the
// mask and check the winner (as llama.cpp does); the token is the one the masked race
// gives, at every position of a document, for random logits — including a stop id
// with text, which ends the output and so is allowed only where the document is whole.
func TestLazyDraw(t *testing.T) {
	tok := vocabs(t)["specd"]
	ids := tok.Encode(`{"name": "Lily", "age": 5, "tags": ["a", "b"]}`, false)
	stop := tok.Encode(",", false)[0]
	ends := []int32{tok.EOS(), stop}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range []sample.Params{{TopP: 1}, {Temperature: 0.9, TopP: 1, Seed: 4}} {
		p.Grammar = grammar.ObjectFormat().Grammar(tok)
		lazy, full := sample.New(p), sample.New(p)
		lazy.SetEnds(ends)
		full.SetEnds(ends)
		logits := make([]float32, tok.VocabSize())
		for pos, id := range append(ids, -1) {
			for range 20 {
				for i := range logits {
					logits[i] = float32(rng.NormFloat64() * 3)
				}
				// Make the unmasked winner often a token the grammar forbids.
				logits[rng.IntN(len(logits))] += 12
				got, _ := lazy.Top2(logits, pos)
				var want int32
				if p.Greedy() {
					want = sample.Argmax(full.Penalize(logits))
				} else {
					want = full.GumbelMax(full.Distribution(logits), pos)
				}
				if got != want {
					t.Fatalf("%+v at %d: lazy draw %d (%q), masked draw %d (%q)", p, pos, got, tok.TokenBytes(got), want, tok.TokenBytes(want))
				}
				if !full.Allows(got) {
					t.Fatalf("%+v at %d: drew %d, which the grammar forbids", p, pos, got)
				}
			}
			if id >= 0 {
				lazy.Observe(id)
				full.Observe(id)
			}
		}
	}
}

// BenchmarkDraw: a greedy draw under a grammar inside a string, where the model's
// choice is allowed (the race without the mask decides), and without a grammar, per
// vocabulary.
func BenchmarkDraw(b *testing.B) {
	for name, tok := range vocabs(b) {
		for _, g := range []sample.Grammar{nil, grammar.ObjectFormat().Grammar(tok)} {
			b.Run(fmt.Sprintf("%s/grammar=%v", name, g != nil), func(b *testing.B) {
				s := sample.New(sample.Params{TopP: 1, Grammar: g})
				s.SetEnds([]int32{tok.EOS()})
				for _, id := range tok.Encode(`{"story": "Once upon`, false) {
					s.Observe(id)
				}
				logits := make([]float32, tok.VocabSize())
				logits[tok.Encode(" a", false)[0]] = 10
				for b.Loop() {
					s.Top2(logits, 7)
				}
			})
		}
	}
}
