package verifiersvc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services/verifiersvc"
	"google.golang.org/protobuf/proto"
)

// TestLogprobs: a request asking for log-probabilities gets one per generated token,
// and they are the log-softmax of the target's own logits at each position — computed
// here by one teacher-forced pass over the prompt and the output — bit for bit, with
// the likeliest tokens in order. They do not change with speculation (a real draft at
// γ 4, greedy and sampled) or the sampling parameters: the same tokens get the same
// numbers.
func TestLogprobs(t *testing.T) {
	checkLeaks(t)
	draft := startDraft(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
		Engine: verifiersvc.EngineConfig{Threads: 1}})
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0.gguf"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const prompt, n, top = "Once upon a time", 48, 5
	// teacher returns the target's logits after each of ids, one pass over all.
	teacher := func(ids []int32) []float32 {
		kv, err := m.NewKVPool(8<<20, ggml.F32)
		if err != nil {
			t.Fatal(err)
		}
		pool := kernels.NewPool(1)
		defer pool.Close()
		logits, err := m.NewState(pool, kv.NewSeq(), len(ids)).Forward(ids, true)
		if err != nil {
			t.Fatal(err)
		}
		return logits
	}
	type result struct {
		ids     []int32
		lps     []*specdv1.TokenLogprob
		drafted uint32
	}
	run := func(sampling *specdv1.SamplingParams, so *specdv1.SpeculationOptions) result {
		t.Helper()
		st, err := client.Generate(ctx, &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
			Prompt: prompt, MaxTokens: n, Sampling: sampling, Speculation: so, Logprobs: true, TopLogprobs: top}})
		if err != nil {
			t.Fatal(err)
		}
		var r result
		for {
			msg, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if c := msg.GetChunk(); c != nil {
				if len(c.GetLogprobs()) != len(c.GetTokenIds()) {
					t.Fatalf("a chunk of %d tokens carries %d logprobs", len(c.GetTokenIds()), len(c.GetLogprobs()))
				}
				r.ids = append(r.ids, c.GetTokenIds()...)
				r.lps = append(r.lps, c.GetLogprobs()...)
			}
			if f := msg.GetFinal(); f != nil {
				r.drafted = f.GetStats().GetDraftedTokens()
				return r
			}
		}
	}
	seed := uint64(11)
	sampled := &specdv1.SamplingParams{Temperature: 0.9, Seed: &seed}
	for _, c := range []struct {
		name     string
		sampling *specdv1.SamplingParams
	}{{"greedy", nil}, {"sampled", sampled}} {
		plain := run(c.sampling, &specdv1.SpeculationOptions{Disabled: true})
		// A just-started draft on a busy machine may first propose after a request
		// has ended (see TestRealDraftProposalsPass): try until draft tokens are checked.
		spec := run(c.sampling, &specdv1.SpeculationOptions{Gamma: 4})
		for try := 1; spec.drafted == 0; try++ {
			if try == 20 {
				t.Fatalf("%s: no draft token checked in %d requests", c.name, try)
			}
			spec = run(c.sampling, &specdv1.SpeculationOptions{Gamma: 4})
		}
		if len(plain.ids) != n || !proto.Equal(&specdv1.CompleteResponse{TokenIds: plain.ids, Logprobs: plain.lps},
			&specdv1.CompleteResponse{TokenIds: spec.ids, Logprobs: spec.lps}) {
			t.Fatalf("%s: speculative tokens or logprobs differ from plain decoding's", c.name)
		}
		ids := append(m.Tok.Prompt(prompt), plain.ids...)
		logits := teacher(ids)
		V := m.Vocab
		for i, id := range plain.ids {
			row := logits[(len(ids)-n+i-1)*V:][:V]
			lse, _ := sample.LogSumExp(row, nil)
			lp := plain.lps[i]
			if want := float32(float64(row[id]) - lse); lp.GetLogprob() != want {
				t.Fatalf("%s: token %d (%d): logprob %v, the teacher-forced pass gives %v", c.name, i, id, lp.GetLogprob(), want)
			}
			if !bytes.Equal(lp.GetToken(), m.Tok.TokenBytes(id)) {
				t.Errorf("%s: token %d: bytes %q, want %q", c.name, i, lp.GetToken(), m.Tok.TokenBytes(id))
			}
			want := sample.TopIDs(nil, row, top)
			if len(lp.GetTop()) != top {
				t.Fatalf("%s: token %d: %d top logprobs, want %d", c.name, i, len(lp.GetTop()), top)
			}
			for j, tl := range lp.GetTop() {
				if tl.GetTokenId() != want[j] || tl.GetLogprob() != float32(float64(row[want[j]])-lse) {
					t.Fatalf("%s: token %d: top[%d] = %d (%v), want %d (%v)", c.name, i, j, tl.GetTokenId(), tl.GetLogprob(), want[j], float32(float64(row[want[j]])-lse))
				}
			}
			if c.sampling == nil && lp.GetTop()[0].GetTokenId() != id {
				t.Errorf("greedy token %d is %d, not the likeliest (%d)", i, id, lp.GetTop()[0].GetTokenId())
			}
			if p := math.Exp(float64(lp.GetLogprob())); p <= 0 || p > 1 {
				t.Errorf("%s: token %d: probability %v", c.name, i, p)
			}
		}
	}
}

// TestPromptLogprobs: a request asking for the prompt's log-probabilities gets one
// entry per prompt token — the first with its bytes alone, each other the log-softmax
// of the target's logits after the tokens before it, from one teacher-forced pass —
// for a prompt longer than a prefill chunk, and again when the same prompt is in the
// prefix cache (whose entries would skip the logits).
func TestPromptLogprobs(t *testing.T) {
	ctx, client, m := startTargetVerifier(t)
	prompt := "Once upon a time there was a little fox who lived in a hole under an old oak tree at the edge of a forest, and every morning"
	for range 300 / len(prompt) {
		prompt += " the fox went out to look for berries and came home before the sun was high."
	}
	ids := m.Tok.Prompt(prompt)
	if len(ids) <= 64 {
		t.Fatalf("a prompt of %d tokens fits one pass of the verifier (64): the test needs chunks", len(ids))
	}
	logits := teacherForced(t, m, ids)
	V := m.Vocab
	request := func(resume []int32) *speculationv1.GenerateRequest {
		return &speculationv1.GenerateRequest{ResumeIds: resume, Request: &specdv1.GenerateRequest{
			Prompt: prompt, MaxTokens: 2, PromptLogprobs: true, TopLogprobs: 2, Speculation: &specdv1.SpeculationOptions{Disabled: true}}}
	}
	var generated []int32
	// Runs 0 and 1: the prompt alone, then again with it in the prefix cache; 2 and 3:
	// resumed after a failover with one of the two tokens, and with both (the verifier
	// has nothing left to generate, only the prompt's log-probabilities to compute).
	for run := range 4 {
		var resume []int32
		if run >= 2 {
			resume = generated[:run-1]
		}
		ids2, stats, lps, err := generatePrompt(ctx, client, request(resume))
		if err != nil {
			t.Fatal(err)
		}
		if run == 0 {
			if generated = ids2; len(generated) != 2 {
				t.Fatalf("%d tokens generated, want 2", len(generated))
			}
		}
		if len(lps) != len(ids) {
			t.Fatalf("run %d: %d prompt logprobs for %d prompt tokens", run, len(lps), len(ids))
		}
		if stats.GetCachedPromptTokens() != 0 {
			t.Errorf("run %d: %d prompt tokens from the prefix cache, want none", run, stats.GetCachedPromptTokens())
		}
		if lps[0].GetLogprob() != 0 || len(lps[0].GetTop()) != 0 || !bytes.Equal(lps[0].GetToken(), m.Tok.TokenBytes(ids[0])) {
			t.Errorf("run %d: first entry %v, want only the bytes of token %d", run, lps[0], ids[0])
		}
		// Each shows the text it adds: together, the prompt's decoded text (BOS none,
		// the first piece without its dummy-prefix space).
		var text strings.Builder
		for _, lp := range lps {
			text.WriteString(lp.GetText())
		}
		if got := text.String(); got != m.Tok.Decode(ids) || got != prompt {
			t.Errorf("run %d: the prompt's tokens show %q, want %q", run, got, prompt)
		}
		for k := 1; k < len(ids); k++ {
			row := logits[(k-1)*V:][:V]
			lse, _ := sample.LogSumExp(row, nil)
			if want := float32(float64(row[ids[k]]) - lse); lps[k].GetLogprob() != want || len(lps[k].GetTop()) != 2 {
				t.Fatalf("run %d: prompt token %d (%d): %v, the teacher-forced pass gives %v with 2 top", run, k, ids[k], lps[k], want)
			}
		}
	}
}

// generatePrompt runs req to its end and returns its token ids, final stats and the
// prompt log-probabilities its chunks carried, all of which must come before the
// first token and none in the final message.
func generatePrompt(ctx context.Context, client speculationv1.VerifierServiceClient, req *speculationv1.GenerateRequest) ([]int32, *specdv1.Stats, []*specdv1.TokenLogprob, error) {
	st, err := client.Generate(ctx, req)
	if err != nil {
		return nil, nil, nil, err
	}
	var ids []int32
	var lps []*specdv1.TokenLogprob
	for {
		msg, err := st.Recv()
		if err != nil {
			return ids, nil, nil, err
		}
		if p := msg.GetChunk().GetPromptLogprobs(); len(p) > 0 && len(ids) > 0 {
			return ids, nil, nil, fmt.Errorf("%d prompt log-probabilities after %d tokens", len(p), len(ids))
		}
		lps = append(lps, msg.GetChunk().GetPromptLogprobs()...)
		ids = append(ids, msg.GetChunk().GetTokenIds()...)
		if f := msg.GetFinal(); f != nil {
			if len(f.GetPromptLogprobs()) > 0 { // (deprecated: checked unset)
				return ids, nil, nil, errors.New("prompt log-probabilities in the final message")
			}
			return ids, f.GetStats(), lps, nil
		}
	}
}

// TestPromptLogprobsBatched: requests for their prompt's log-probabilities run side by
// side with ordinary ones, in the scheduler's shared passes (a prompt over a chunk, a
// short one, one of a single token): each prompt's entries are those of its own
// teacher-forced pass, and every request's generated tokens and log-probabilities are
// its run alone — a row of logits given to the wrong request would change them.
func TestPromptLogprobsBatched(t *testing.T) {
	ctx, client, m := startTargetVerifier(t)
	long := "Once upon a time there was a little fox who lived in a hole under an old oak tree at the edge of a forest"
	for range 3 {
		long += ", and every morning the fox went out to look for berries"
	}
	type job struct {
		req  *specdv1.GenerateRequest
		ids  []int32 // the prompt's tokens, for those asking their log-probabilities
		want []*specdv1.TokenLogprob
		gen  []int32
		lps  []*specdv1.TokenLogprob
	}
	jobs := []*job{
		{req: &specdv1.GenerateRequest{Prompt: long, PromptLogprobs: true, TopLogprobs: 3}, ids: m.Tok.Prompt(long)},
		{req: &specdv1.GenerateRequest{Prompt: "The fox ran", Logprobs: true, TopLogprobs: 2}},
		{req: &specdv1.GenerateRequest{Prompt: "In the forest", PromptLogprobs: true, Logprobs: true, TopLogprobs: 1}, ids: m.Tok.Prompt("In the forest")},
		{req: &specdv1.GenerateRequest{PromptIds: []int32{m.Tok.BOS()}, PromptLogprobs: true}, ids: []int32{m.Tok.BOS()}},
		{req: &specdv1.GenerateRequest{Prompt: long + " until", Logprobs: true}},
	}
	if len(jobs[0].ids) <= 64 {
		t.Fatalf("a prompt of %d tokens fits one pass of the verifier (64): the test needs chunks", len(jobs[0].ids))
	}
	run := func(j *job) ([]int32, []*specdv1.TokenLogprob, []*specdv1.TokenLogprob, error) {
		req := proto.Clone(j.req).(*specdv1.GenerateRequest)
		req.MaxTokens, req.Speculation = 6, &specdv1.SpeculationOptions{Disabled: true}
		st, err := client.Generate(ctx, &speculationv1.GenerateRequest{Request: req})
		if err != nil {
			return nil, nil, nil, err
		}
		var ids []int32
		var lps, prompt []*specdv1.TokenLogprob
		for {
			msg, err := st.Recv()
			if err != nil {
				return nil, nil, nil, err
			}
			ids = append(ids, msg.GetChunk().GetTokenIds()...)
			lps = append(lps, msg.GetChunk().GetLogprobs()...)
			prompt = append(prompt, msg.GetChunk().GetPromptLogprobs()...)
			if msg.GetFinal() != nil {
				return ids, prompt, lps, nil
			}
		}
	}
	for _, j := range jobs {
		gen, prompt, lps, err := run(j)
		if err != nil {
			t.Fatal(err)
		}
		j.gen, j.lps, j.want = gen, lps, prompt
		if len(j.want) != len(j.ids) {
			t.Fatalf("%.20q alone: %d prompt logprobs for %d prompt tokens", j.req.GetPrompt(), len(j.want), len(j.ids))
		}
	}
	// The prompts' entries alone are the teacher-forced pass's (as TestPromptLogprobs
	// checks at length): here the first and last of the long one.
	ids := jobs[0].ids
	logits := teacherForced(t, m, ids)
	for _, k := range []int{1, len(ids) - 1} {
		row := logits[(k-1)*m.Vocab:][:m.Vocab]
		lse, _ := sample.LogSumExp(row, nil)
		if want := float32(float64(row[ids[k]]) - lse); jobs[0].want[k].GetLogprob() != want {
			t.Fatalf("alone: prompt token %d: %v, the teacher-forced pass gives %v", k, jobs[0].want[k].GetLogprob(), want)
		}
	}
	for round := range 3 {
		type result struct {
			gen    []int32
			prompt []*specdv1.TokenLogprob
			lps    []*specdv1.TokenLogprob
			err    error
		}
		res := make([]result, len(jobs))
		var wg sync.WaitGroup
		for i, j := range jobs {
			wg.Go(func() {
				r := &res[i]
				r.gen, r.prompt, r.lps, r.err = run(j)
			})
		}
		wg.Wait()
		for i, j := range jobs {
			r := res[i]
			if r.err != nil {
				t.Fatalf("round %d, request %d: %v", round, i, r.err)
			}
			if !slices.Equal(r.gen, j.gen) || !logprobsEqual(r.lps, j.lps) {
				t.Errorf("round %d, request %d: generated %v beside the others, %v alone (or their log-probabilities differ)", round, i, r.gen, j.gen)
			}
			if !logprobsEqual(r.prompt, j.want) {
				t.Errorf("round %d, request %d: the prompt's log-probabilities beside the others differ from those alone", round, i)
			}
		}
	}
}

// logprobsEqual reports whether two lists of log-probabilities are the same, bit for bit.
func logprobsEqual(a, b []*specdv1.TokenLogprob) bool {
	return slices.EqualFunc(a, b, func(x, y *specdv1.TokenLogprob) bool { return proto.Equal(x, y) })
}

// startTargetVerifier starts a verifier on the shared target (one thread, checking for
// leaks) and loads the target for the test's own passes.
func startTargetVerifier(t *testing.T) (context.Context, speculationv1.VerifierServiceClient, *model.Model) {
	t.Helper()
	checkLeaks(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}})
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0.gguf"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return ctx, client, m
}

// teacherForced returns the logits of m after each token of ids, from one pass over
// them with an F32 cache.
func teacherForced(t *testing.T, m *model.Model, ids []int32) []float32 {
	t.Helper()
	kv, err := m.NewKVPool(16<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(1)
	defer pool.Close()
	logits, err := m.NewState(pool, kv.NewSeq(), 64).Forward(ids, true)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}
