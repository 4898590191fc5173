package draft

import (
	"slices"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
)

// TestPenalizedDraftFollowsPlain: with sampling penalties the draft proposes what its
// own model decodes plainly with those penalties — the context's first PromptLen
// tokens penalized as prompt, the rest and its drafts as output — also after a
// verdict rolls it back onto a token it did not draft; and the penalties change what
// it proposes.
func TestPenalizedDraftFollowsPlain(t *testing.T) {
	m, pool := loadDraft(t)
	ctx := m.Tok.Prompt("Once upon a time, there was a little girl named Lily. She loved to play with her toys and her")
	const gamma, generated = 6, 12
	promptLen := len(ctx) - generated
	p := sample.Params{TopP: 1, RepetitionPenalty: 1.4, FrequencyPenalty: 1, PresencePenalty: 0.5}
	// plain decodes n tokens greedily after seq with the penalties, seq[:promptLen]
	// being the prompt.
	plain := func(params sample.Params, seq []int32, n int) []int32 {
		kv, err := m.NewKVPool(8<<20, ggml.F32)
		if err != nil {
			t.Fatal(err)
		}
		st := m.NewState(pool, kv.NewSeq(), 64)
		smp := sample.New(params)
		smp.SetPrompt(seq[:promptLen])
		for _, id := range seq[promptLen:] {
			smp.Observe(id)
		}
		logits, err := st.Forward(seq, false)
		if err != nil {
			t.Fatal(err)
		}
		var out []int32
		for range n {
			id := smp.Sample(logits, 0)
			smp.Observe(id)
			out = append(out, id)
			if logits, err = st.Forward([]int32{id}, false); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	kv, err := m.NewKVPool(8<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(m.NewState(pool, kv.NewSeq(), 64), ctx, spec.Options{Sampling: p, Gamma: gamma, MaxPosition: m.Context, PromptLen: promptLen})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, ok, err := s.Draft(nil)
	if err != nil || !ok {
		t.Fatalf("Draft: %v, %v", ok, err)
	}
	want := plain(p, ctx, gamma)
	if !slices.Equal(first.Tokens, want) {
		t.Fatalf("penalized draft proposed %v, plain decoding with the penalties gives %v", first.Tokens, want)
	}
	unpenalized := sample.Params{TopP: 1}
	if slices.Equal(want, plain(unpenalized, ctx, gamma)) {
		t.Fatal("the penalties change nothing here; the test would prove nothing")
	}
	// The verifier keeps two tokens and corrects the third to something else.
	fix := (first.Tokens[2] + 1) % int32(m.Vocab)
	if err := s.Apply(spec.Verdict{Round: first.Round, Seq: 1, Accepted: 2, Position: len(ctx), Tokens: []int32{first.Tokens[0], first.Tokens[1], fix}, Rollback: true}); err != nil {
		t.Fatal(err)
	}
	second, ok, err := s.Draft(nil)
	if err != nil || !ok {
		t.Fatalf("Draft after the rollback: %v, %v", ok, err)
	}
	committed := append(slices.Clone(ctx), first.Tokens[0], first.Tokens[1], fix)
	if want := plain(p, committed, len(second.Tokens)); !slices.Equal(second.Tokens, want) {
		t.Errorf("after the rollback the draft proposed %v, plain decoding with the penalties gives %v", second.Tokens, want)
	}
}
