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
			o := generate.NewOutput(m.Tok, prompt, generate.Limits{MaxTokens: tc.maxTokens, Context: m.Context, End: m.Tok.EOG(), BOS: m.Tok.BOS()})
			for !o.Done() {
				o.Push(tok)
			}
			if o.Reason != tc.want || len(o.IDs) != tc.n {
				t.Errorf("finish %v after %d tokens, want %v after %d", o.Reason, len(o.IDs), tc.want, tc.n)
			}
		})
	}
}

// TestOutputEnds: any id of Limits.End ends the text as EOS does, without adding the id
// to the output — a chat model's end-of-turn marker as well as EOS.
func TestOutputEnds(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := m.Tok.Encode("Once upon a time", true)
	the := m.Tok.Encode(" the", false)
	marker := the[len(the)-1] // stands in for a vocabulary's <|im_end|>
	for _, end := range []int32{m.Tok.EOS(), marker} {
		o := generate.NewOutput(m.Tok, prompt, generate.Limits{MaxTokens: 8, Context: m.Context, End: []int32{m.Tok.EOS(), marker}, BOS: m.Tok.BOS()})
		o.Push(300)
		o.Push(end)
		if !o.Done() || o.Reason != generate.EOS || len(o.IDs) != 1 {
			t.Errorf("after 300, %d: done %v, reason %v, ids %v; want EOS after [300]", end, o.Done(), o.Reason, o.IDs)
		}
	}
}
