package grammar_test

import (
	"slices"
	"testing"

	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/sample"
)

// TestSetHistoryWithPenalties: a sampler told its history at once (as a draft is,
// SetHistory) masks as one that observed each token, with penalties on too: the
// grammar takes the output once.
func TestSetHistoryWithPenalties(t *testing.T) {
	tok := vocabs(t)["specd"]
	prompt := tok.Encode("Lily is a girl. As JSON: ", true)
	out := tok.Encode(`{"name": "Lily", "age": 5}`, false)
	for _, p := range []sample.Params{
		{Temperature: 1, TopP: 1},
		{Temperature: 1, TopP: 1, FrequencyPenalty: 0.5},
		{Temperature: 1, TopP: 1, RepetitionPenalty: 1.2},
	} {
		p.Grammar = grammar.ObjectFormat().Grammar(tok)
		for n := range len(out) + 1 {
			seq := append(slices.Clone(prompt), out[:n]...)
			told := sample.New(p)
			told.SetEnds([]int32{tok.EOS()})
			told.SetHistory(seq, len(prompt))
			seen := sample.New(p)
			seen.SetEnds([]int32{tok.EOS()})
			seen.SetPrompt(prompt)
			for _, id := range out[:n] {
				seen.Observe(id)
			}
			logits := make([]float32, tok.VocabSize())
			got := slices.Clone(told.Penalize(logits))
			want := seen.Penalize(logits)
			if !slices.Equal(got, want) {
				t.Fatalf("%+v after %d tokens: SetHistory's logits differ from Observe's", p, n)
			}
		}
	}
}
