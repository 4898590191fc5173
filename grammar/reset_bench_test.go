package grammar_test

import (
	"strings"
	"testing"

	"github.com/specd-dev/specd/grammar"
)

// BenchmarkReset: replaying an output of about 2,000 tokens, as a draft does before
// each token it drafts under a grammar.
func BenchmarkReset(b *testing.B) {
	doc := `{"items": [` + strings.Repeat(`{"name": "Lily", "age": 5, "tags": ["a girl", "happy"]}, `, 80) + `{}]}`
	for name, tok := range vocabs(b) {
		ids := tok.Encode(doc, false)
		g := grammar.ObjectFormat().Grammar(tok)
		m := g.NewMatcher()
		b.Run(name, func(b *testing.B) {
			b.ReportMetric(float64(len(ids)), "tokens")
			for b.Loop() {
				m.Reset(ids)
			}
		})
	}
}
