package generate_test

import (
	"testing"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
)

// TestOutputFinish: generation ends with Length when max tokens come first and with
// Context when the context window fills — also when max tokens is reached by the same
// token (a request for "the rest of the context", or more than fits).
func TestOutputFinish(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := m.Tok.Encode("Once upon a time", true)
	ids := m.Tok.Encode(" the", false)
	tok := ids[len(ids)-1]
	room := m.Context - len(prompt)
	for _, tc := range []struct {
		name      string
		maxTokens int
		want      generate.Finish
		n         int
	}{
		{"max tokens first", 3, generate.Length, 3},
		{"both at once", room, generate.Context, room},
		{"more than fits", room + 100, generate.Context, room},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := generate.NewOutput(m.Tok, prompt, generate.Limits{MaxTokens: tc.maxTokens, Context: m.Context, EOS: m.Tok.EOS(), BOS: m.Tok.BOS()})
			for !o.Done() {
				o.Push(tok)
			}
			if o.Reason != tc.want || len(o.IDs) != tc.n {
				t.Errorf("finish %v after %d tokens, want %v after %d", o.Reason, len(o.IDs), tc.want, tc.n)
			}
		})
	}
}
