package grammar_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/specd-dev/specd/grammar"
)

// longDoc is an object of about 2,000 tokens.
var longDoc = `{"items": [` + strings.Repeat(`{"name": "Lily", "age": 5, "tags": ["a girl", "happy"]}, `, 80) + `{}]}`

// TestResetResumes: a matcher reset to outputs that roll back and go on (as a draft's
// line does) masks as a new matcher given the same output.
func TestResetResumes(t *testing.T) {
	f, err := grammar.SchemaFormat([]byte(`{"type":"object","properties":{"items":{"type":"array","items":{"anyOf":[
		{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}}},{"type":"object"}]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for name, tok := range vocabs(t) {
		ids := tok.Encode(longDoc, false)
		g := f.Grammar(tok)
		m := g.NewMatcher()
		got, want := make([]float32, tok.VocabSize()), make([]float32, tok.VocabSize())
		n := 0
		for range 40 {
			n = max(0, min(len(ids), n+rng.IntN(40)-12))
			out := slices.Clone(ids[:n])
			if rng.IntN(4) == 0 && n > 0 {
				out[n-1] = int32(rng.IntN(tok.VocabSize())) // a token the draft got wrong
			}
			m.Reset(out)
			fresh := g.NewMatcher()
			for _, id := range out {
				fresh.Advance(id)
			}
			clear(got)
			clear(want)
			m.Mask(got, []int32{tok.EOS()})
			fresh.Mask(want, []int32{tok.EOS()})
			if !slices.Equal(got, want) {
				t.Fatalf("%s: after a reset to %d tokens the mask differs from a new matcher's", name, n)
			}
		}
	}
}

// BenchmarkResetDraft: resets as a draft makes them, one per drafted token of an
// output of about 2,000 tokens (the cost of the whole output, per token).
func BenchmarkResetDraft(b *testing.B) {
	for name, tok := range vocabs(b) {
		ids := tok.Encode(longDoc, false)
		g := grammar.ObjectFormat().Grammar(tok)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				m := g.NewMatcher()
				for n := range len(ids) + 1 {
					m.Reset(ids[:n])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*(len(ids)+1)), "ns/token")
		})
	}
}
