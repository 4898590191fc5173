package verifiersvc_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services/verifiersvc"
	"github.com/specd-dev/specd/verifier"
)

// TestSharedPrefixesUnderLoadEqualSolo (issue 12, points 2 and 5): 32 requests sent at
// once to a verifier with the prefix cache on — and sent again, when their prompts are
// cached whole — whose prompts share a long prefix cut at different lengths: whole
// blocks, inside a block, the whole of another request's prompt, and exactly another
// request's prompt; greedy and seeded, plain and speculating with a real draft. Each
// generates exactly what it generates alone on a verifier without the cache.
func TestSharedPrefixesUnderLoadEqualSolo(t *testing.T) {
	checkLeaks(t)
	soloCtx, solo := startVerifier(t, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}})
	draft := startDraft(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
		Engine: verifiersvc.EngineConfig{Threads: 1, PrefixCache: true, Sched: verifier.Config{PrefillChunk: 48, MaxGamma: 4, Lookup: 4}}})
	text := strings.Repeat("Once upon a time there was a little fox who lived in a deep green wood beside a river. Every morning she ran to the water to drink, and every evening she told the owl what she had seen. ", 8)
	tok, err := client.Tokenize(ctx, &specdv1.TokenizeRequest{Text: text, AddBos: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.GetTokenIds()) < 320 {
		t.Fatalf("the text is %d tokens, want at least 320", len(tok.GetTokenIds()))
	}
	base := tok.GetTokenIds()[:300]
	// Cut points: whole blocks of 64 positions, inside one, the whole base.
	cuts := []int{64, 128, 100, 37, 191, 256, 300, 129}
	type job struct {
		name string
		req  *speculationv1.GenerateRequest
		want []int32
	}
	jobs := make([]*job, 32)
	for i := range jobs {
		prompt := slices.Clone(base[:cuts[i%len(cuts)]])
		if i%3 != 0 { // else the prompt is a prefix of the others, or all of one
			prompt = append(prompt, tok.GetTokenIds()[300+i%7:300+i%7+1+i%4]...)
		}
		q := &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: uint32(12 + i%5*4)}
		if i%2 == 1 {
			q.Sampling = &specdv1.SamplingParams{Temperature: 0.8, TopK: 40, Seed: ptr(uint64(i))}
		}
		switch i % 4 {
		case 0, 1:
			q.Speculation = &specdv1.SpeculationOptions{Gamma: 4, Mode: specdv1.VerificationMode_VERIFICATION_MODE_COUPLED}
		case 2:
			q.Speculation = &specdv1.SpeculationOptions{Mode: specdv1.VerificationMode_VERIFICATION_MODE_COUPLED}
		case 3:
			q.Speculation = &specdv1.SpeculationOptions{Disabled: true}
		}
		plain := &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: q.MaxTokens, Sampling: q.Sampling, Speculation: &specdv1.SpeculationOptions{Disabled: true}}
		want, _, err := generateAll(soloCtx, solo, &speculationv1.GenerateRequest{Request: plain})
		if err != nil {
			t.Fatal(err)
		}
		jobs[i] = &job{name: fmt.Sprintf("request %d (prompt of %d tokens, %v, %v)", i, len(prompt), q.Sampling, q.Speculation),
			req: &speculationv1.GenerateRequest{DraftAddress: draft, Request: q}, want: want}
	}
	var cached, drafted int
	for round := range 2 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		start := make(chan struct{})
		for _, j := range jobs {
			wg.Go(func() {
				<-start
				got, st, err := generateAll(ctx, client, j.req)
				switch {
				case err != nil:
					t.Errorf("round %d, %s: %v", round, j.name, err)
				case !slices.Equal(got, j.want):
					t.Errorf("round %d, %s under load with the prefix cache:\n got %v\nwant %v (alone, no cache)", round, j.name, got, j.want)
				}
				mu.Lock()
				cached += int(st.GetCachedPromptTokens())
				drafted += int(st.GetDraftedTokens())
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
	}
	if cached == 0 || drafted == 0 {
		t.Errorf("%d prompt tokens came from the cache and %d draft tokens were checked: want both", cached, drafted)
	}
	settled(t, ctx, client.Info, "verifier")
}
