package grammar_test

import (
	"math"
	"testing"

	"github.com/specd-dev/specd/grammar"
)

// TestEndsWithText: an end id that is also a token with text (a stop_token_ids entry
// such as the id of `"`) ends the output, so it is masked until the document is whole
// even where its text would continue the document, and allowed once it is.
func TestEndsWithText(t *testing.T) {
	for name, tok := range vocabs(t) {
		var quote, brace int32 = -1, -1
		for id := range int32(tok.VocabSize()) {
			switch string(tok.TokenBytes(id)) {
			case `"`:
				quote = id
			case `}`:
				brace = id
			}
		}
		if quote < 0 || brace < 0 {
			t.Fatalf("%s: no token for %q or %q", name, `"`, `}`)
		}
		ends := []int32{tok.EOS(), quote, brace}
		m := grammar.ObjectFormat().Grammar(tok).NewMatcher()
		logits := make([]float32, tok.VocabSize())
		for _, at := range []string{`{`, `{"a":`, `{"a":"x`} {
			m.Reset(tok.Encode(at, false))
			clear(logits)
			m.Mask(logits, ends)
			for _, e := range ends {
				if !math.IsInf(float64(logits[e]), -1) {
					t.Errorf("%s after %q: end %d (%q) allowed before the document is whole", name, at, e, tok.TokenBytes(e))
				}
			}
		}
		m.Reset(tok.Encode(`{}`, false))
		clear(logits)
		m.Mask(logits, ends)
		for _, e := range ends {
			if math.IsInf(float64(logits[e]), -1) {
				t.Errorf("%s after {}: end %d masked", name, e)
			}
		}
	}
}
