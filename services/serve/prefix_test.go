package serve_test

import (
	"context"
	"slices"
	"testing"
	"time"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/telemetry"
)

// TestPrefixCacheAcrossRequests: a prompt sent again is computed from its last token
// only, whatever block boundary it ends at; a conversation sent again with more
// tokens is computed from where the earlier request's cache ended; the outputs are
// those computed without the cache; and the router's metrics count the cached tokens.
func TestPrefixCacheAcrossRequests(t *testing.T) {
	rtel, _ := recordSpans(t, "specd-router")
	vtel, _ := recordSpans(t, "specd-verifier")
	s := startStackWith(t, stackOptions{rtel: rtel, vtel: vtel})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tok, err := s.client.Tokenize(ctx, &specdv1.TokenizeRequest{Text: benchPrompts(t)[0].Prompt, AddBos: true})
	if err != nil {
		t.Fatal(err)
	}
	prompt := tok.GetTokenIds()
	if len(prompt)%64 == 0 {
		t.Fatalf("the prompt has %d tokens, a whole number of blocks: pick one that ends inside a block", len(prompt))
	}
	const n = 8
	run := func(ids []int32) ([]int32, *specdv1.Stats) {
		t.Helper()
		r, err := s.generate(ctx, &specdv1.GenerateRequest{PromptIds: ids, MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Disabled: true}})
		if err != nil {
			t.Fatal(err)
		}
		return r.ids, r.final.GetStats()
	}
	first, st := run(prompt)
	if got := st.GetCachedPromptTokens(); got != 0 {
		t.Fatalf("first request: %d cached prompt tokens, want 0", got)
	}
	again, st := run(prompt)
	if got, want := st.GetCachedPromptTokens(), uint32(len(prompt)-1); got != want {
		t.Errorf("the same prompt again: %d cached prompt tokens, want %d (all but the last)", got, want)
	}
	if !slices.Equal(again, first) {
		t.Errorf("the same prompt again generated %v, want %v", again, first)
	}
	// The first request's cache holds the prompt and every generated token but the
	// last, which was never fed.
	longer := slices.Concat(prompt, first, []int32{first[0]})
	_, st = run(longer)
	if got, want := st.GetCachedPromptTokens(), uint32(len(prompt)+n-1); got != want {
		t.Errorf("the conversation sent again with more: %d cached prompt tokens, want %d", got, want)
	}
	want := float64(len(prompt) - 1 + len(prompt) + n - 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		text := metricsText(rtel)
		cached, total := metricSum(t, text, telemetry.NamePromptCached), metricSum(t, text, telemetry.NamePromptTokens)
		if cached == want && total == float64(2*len(prompt)+len(longer)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("router metrics: %v of %v prompt tokens cached, want %v of %d", cached, total, want, 2*len(prompt)+len(longer))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Each request's prompt was one pass of what the cache did not hold, then one
	// pass per token it fed: the verifier's pass histogram counts every token once.
	text := metricsText(vtel)
	fed := float64(len(prompt) + 1 + (len(longer) - (len(prompt) + n - 1)) + 3*(n-1))
	if got := metricSum(t, text, telemetry.NamePassTokens+"_sum"); got != fed {
		t.Errorf("verifier metrics: %v tokens in passes, want %v", got, fed)
	}
}
