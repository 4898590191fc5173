package verifiersvc_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/verifiersvc"
	"github.com/specd-dev/specd/verifier"
)

// infoFunc asks a service's Info: a verifier's or a draft's.
type infoFunc func(ctx context.Context, in *speculationv1.InfoRequest, opts ...grpc.CallOption) (*speculationv1.InfoResponse, error)

// settled waits until the service behind info holds no KV block for a request — every
// block free or held only by the prefix cache, which gives them up on demand — and
// runs and queues nothing, as before any request came; it fails t after 10 s with what
// it saw.
func settled(t *testing.T, ctx context.Context, info infoFunc, what string) {
	t.Helper()
	var last *speculationv1.InfoResponse
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r, err := info(ctx, &speculationv1.InfoRequest{})
		if err != nil {
			t.Fatalf("%s Info: %v", what, err)
		}
		if last = r; r.GetKvBlocksFree() == r.GetKvBlocksTotal() && r.GetQueueDepth() == 0 {
			return
		}
	}
	t.Fatalf("%s: %d of %d KV blocks free, %d requests running or queued 10 s after the last request ended; want all free, none",
		what, last.GetKvBlocksFree(), last.GetKvBlocksTotal(), last.GetQueueDepth())
}

// longPrompt is a prompt of about n tokens of the target's vocabulary, distinct by
// seed: a prefill of many chunks.
func longPrompt(seed, n int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(3 + (seed*7919+i*31)%4000)
	}
	return p
}

// drain reads st to its end and returns the tokens it streamed and its error (nil
// after the final message).
func drain(st speculationv1.VerifierService_GenerateClient) ([]int32, error) {
	var ids []int32
	for {
		msg, err := st.Recv()
		if err != nil {
			return ids, err
		}
		ids = append(ids, msg.GetChunk().GetTokenIds()...)
		if msg.GetFinal() != nil {
			return ids, nil
		}
	}
}

// computed is how many of ids' positions the verifier's prefix cache holds: what
// requests before computed of them. It asks with a plain request for one token.
func computed(t *testing.T, ctx context.Context, client speculationv1.VerifierServiceClient, ids []int32) int {
	t.Helper()
	_, st, err := generateAll(ctx, client, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
		PromptIds: ids, MaxTokens: 1, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
	if err != nil {
		t.Fatalf("asking the cache: %v", err)
	}
	return int(st.GetCachedPromptTokens())
}

// soloGreedy is the plain greedy continuation of n tokens of prompt, from a verifier
// of its own without a prefix cache.
func soloGreedy(t *testing.T, prompt []int32, n uint32) []int32 {
	t.Helper()
	ctx, client := startVerifier(t, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}})
	ids, _, err := generateAll(ctx, client, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
		PromptIds: prompt, MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != int(n) {
		t.Fatalf("the solo run generated %d tokens, want %d", len(ids), n)
	}
	return ids
}

// TestFailurePathsFreePages (issue 12, point 4): however a request ends — its client
// cancels while its prompt is prefilled or while a draft's block is verified, its
// deadline passes while it waits for admission, its draft's stream dies, its client
// goes while it resumes a failed-over generation, its draft sends what it must not
// after admission, or it is one of n generations of one prompt sharing cached blocks —
// the verifier's KV blocks and its admitted and queued counts return to what they were
// before (Info's kv_blocks_free and queue_depth), and so do the real draft's, with the
// prefix cache on (blocks it keeps are counted free: they are given up on demand), and
// no goroutine is left behind. The blocks must come back at once, not when the request
// would have ended anyway: what a request computed stays in the prefix cache when it
// ends, and a request asking afterwards for the whole sequence the ended one would
// have computed finds only what it computed before it was stopped.
func TestFailurePathsFreePages(t *testing.T) {
	checkLeaks(t)
	plain := &specdv1.SpeculationOptions{Disabled: true}
	// start serves a verifier with the prefix cache, small prefill chunks (a long
	// prompt takes many passes) and room for maxRunning requests, beside a real draft;
	// it returns the verifier's client and the draft's address and Info.
	start := func(t *testing.T, maxRunning int, draftAddr string) (context.Context, speculationv1.VerifierServiceClient) {
		cfg := verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1, PrefixCache: true,
			Sched: verifier.Config{PrefillChunk: 4, MaxRunning: maxRunning}}}
		if draftAddr != "" {
			cfg.Drafts = router.NewStatic(router.Endpoint{Address: draftAddr, Role: router.Draft})
		}
		return startVerifier(t, cfg)
	}
	realDraft := func(t *testing.T) (string, infoFunc) {
		addr := startDraft(t)
		cc, err := services.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return addr, speculationv1.NewDraftServiceClient(cc).Info
	}

	t.Run("cancel during prefill", func(t *testing.T) {
		ctx, client := start(t, 4, "")
		settled(t, ctx, client.Info, "verifier before")
		// try cancels a request once its prefill holds blocks (120 passes of 4 tokens
		// are to come), and reports whether the cancellation came during the prefill:
		// on a machine busy enough the prefill may end first, and the run is tried
		// again with another prompt.
		try := func(attempt int) bool {
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			prompt := longPrompt(attempt, 480)
			st, err := client.Generate(rctx, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{PromptIds: prompt,
				MaxTokens: 16, Speculation: plain}})
			if err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Microsecond) {
				r, err := client.Info(ctx, &speculationv1.InfoRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if r.GetKvBlocksFree() < r.GetKvBlocksTotal() {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the request held no KV block within 10 s")
				}
			}
			cancel()
			ids, err := drain(st)
			settled(t, ctx, client.Info, "verifier")
			if len(ids) > 0 || status.Code(err) != codes.Canceled {
				return false // the prefill was over before the cancellation
			}
			if n := computed(t, ctx, client, prompt); n >= len(prompt)-1 {
				t.Errorf("the cancelled prefill went on: %d of the prompt's %d positions were computed", n, len(prompt))
			}
			return true
		}
		for attempt := 1; !try(attempt); attempt++ {
			if attempt == 3 {
				t.Fatal("in 3 tries the prefill of 480 tokens always ended before its cancellation took effect")
			}
		}
	})

	t.Run("cancel during verification", func(t *testing.T) {
		const n = 200
		prompts, wants := make([][]int32, 4), make([][]int32, 4)
		for i := range prompts {
			prompts[i] = longPrompt(20+i, 30)
			wants[i] = soloGreedy(t, prompts[i], n)
		}
		draft, draftInfo := realDraft(t)
		ctx, client := start(t, 4, draft)
		settled(t, ctx, client.Info, "verifier before")
		settled(t, ctx, draftInfo, "draft before")
		for i := range 4 {
			rctx, cancel := context.WithCancel(ctx)
			st, err := client.Generate(rctx, &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
				PromptIds: prompts[i], MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Gamma: 4}}})
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			// Cancel once tokens flow: blocks of 4 drafted tokens are being verified.
			// The requests cancel after 1 to 4 chunks, at different points of a round.
			chunks := 0
			for chunks <= i {
				msg, err := st.Recv()
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if msg.GetFinal() != nil {
					t.Fatalf("request %d ended before it was cancelled", i)
				}
				if len(msg.GetChunk().GetTokenIds()) > 0 {
					chunks++
				}
			}
			cancel()
			if _, err := drain(st); status.Code(err) != codes.Canceled {
				t.Fatalf("request %d: %v, want CANCELED", i, err)
			}
		}
		settled(t, ctx, client.Info, "verifier")
		settled(t, ctx, draftInfo, "draft")
		for i := range prompts {
			whole := slices.Concat(prompts[i], wants[i][:n-1])
			// Cancelled after at most 4 chunks, it must stop well before its end (on a
			// loaded machine the client may read its chunks late, while the engine
			// runs on: the bound leaves room for that).
			if got := computed(t, ctx, client, whole); got >= len(prompts[i])+n-10 {
				t.Errorf("request %d went on after its cancellation: %d of the %d positions it would have computed are cached", i, got, len(whole))
			}
		}
	})

	t.Run("deadline while queued", func(t *testing.T) {
		ctx, client := start(t, 1, "")
		settled(t, ctx, client.Info, "verifier before")
		// try queues three requests behind a running one until their deadlines pass,
		// and reports whether the running one was still running after them (on a
		// machine busy enough, it may finish first and let them in: then the run
		// proves nothing and is tried again with other prompts).
		try := func(attempt int) bool {
			lctx, cancelLong := context.WithCancel(ctx)
			defer cancelLong()
			long, err := client.Generate(lctx, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
				Prompt: "Once upon a time", MaxTokens: 400, Speculation: plain}})
			if err != nil {
				t.Fatal(err)
			}
			if msg, err := long.Recv(); err != nil || msg.GetFinal() != nil {
				t.Fatalf("running request: %v, %v", msg, err)
			}
			var wg sync.WaitGroup
			for i := range 3 {
				wg.Go(func() {
					dctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
					defer cancel()
					st, err := client.Generate(dctx, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{PromptIds: longPrompt(10*attempt+i, 200),
						MaxTokens: 8, Speculation: plain}})
					if err == nil {
						_, err = drain(st)
					}
					if status.Code(err) != codes.DeadlineExceeded {
						t.Errorf("queued request %d: %v, want DEADLINE_EXCEEDED", i, err)
					}
				})
			}
			wg.Wait()
			// At most the running request remains.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
				r, err := client.Info(ctx, &speculationv1.InfoRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if r.GetQueueDepth() <= 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d requests running or queued after the queued ones' deadlines, want 1", r.GetQueueDepth())
				}
			}
			cancelLong()
			_, err = drain(long)
			settled(t, ctx, client.Info, "verifier")
			if status.Code(err) != codes.Canceled {
				return false // it ended by itself: the others may have run after it
			}
			for i := range 3 {
				if got := computed(t, ctx, client, longPrompt(10*attempt+i, 200)); got != 0 {
					t.Errorf("queued request %d was computed after its deadline: %d positions of its prompt are cached", i, got)
				}
			}
			return true
		}
		for attempt := 1; !try(attempt); attempt++ {
			if attempt == 3 {
				t.Fatal("in 3 tries the running request always ended while requests were queued behind it: it ended before their deadlines of 30 ms, or the engine kept them queued after their deadlines until it ended")
			}
		}
	})

	t.Run("draft stream dies", func(t *testing.T) {
		fake := &fakeDraft{}
		draft := startFakeDraft(t, fake)
		ctx, client := start(t, 4, draft)
		req := func(so *specdv1.SpeculationOptions) *speculationv1.GenerateRequest {
			return &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
				Prompt: "The quick brown fox", MaxTokens: 80, Speculation: so}}
		}
		want, _, err := generateAll(ctx, client, req(plain))
		if err != nil {
			t.Fatal(err)
		}
		settled(t, ctx, client.Info, "verifier before")
		// The draft proposes the right tokens for a while, then its stream fails.
		propose := proposeAhead(want, nil, nil)
		fake.speculate = func(start *speculationv1.Start, stream speculationv1.DraftService_SpeculateServer) error {
			sctx, cancel := context.WithTimeout(stream.Context(), 20*time.Millisecond)
			defer cancel()
			done := make(chan struct{})
			go func() { defer close(done); propose(start, stream) }()
			select {
			case <-done:
			case <-sctx.Done():
			}
			return status.Error(codes.Internal, "the draft died")
		}
		got, stats, err := generateAll(ctx, client, req(&specdv1.SpeculationOptions{Gamma: 4}))
		if err != nil {
			t.Fatalf("with a dying draft: %v", err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("with a dying draft: %v\nwant %v", got, want)
		}
		if stats.GetFallbacks() == 0 {
			t.Errorf("stats: no fallback after the draft's stream died")
		}
		settled(t, ctx, client.Info, "verifier")
	})

	t.Run("client gone while resuming", func(t *testing.T) {
		const n = 200
		prompt := longPrompt(40, 30)
		want := soloGreedy(t, prompt, n)
		draft, draftInfo := realDraft(t)
		ctx, client := start(t, 4, draft)
		req := &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Gamma: 4}}
		settled(t, ctx, client.Info, "verifier before")
		// The router resumes a failed-over request here with the tokens streamed
		// before; its client goes at once, after the first new token, and later.
		for i, after := range []int{0, 1, 3} {
			rctx, cancel := context.WithCancel(ctx)
			st, err := client.Generate(rctx, &speculationv1.GenerateRequest{DraftAddress: draft, ResumeIds: want[:20+i], Request: req})
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			for n := 0; n < after; {
				msg, err := st.Recv()
				if err != nil || msg.GetFinal() != nil {
					t.Fatalf("resumed request %d: %v, %v", i, msg, err)
				}
				n += len(msg.GetChunk().GetTokenIds())
			}
			cancel()
			if _, err := drain(st); status.Code(err) != codes.Canceled {
				t.Fatalf("resumed request %d: %v, want CANCELED", i, err)
			}
		}
		settled(t, ctx, client.Info, "verifier")
		settled(t, ctx, draftInfo, "draft")
		if got := computed(t, ctx, client, slices.Concat(prompt, want[:n-1])); got >= len(prompt)+n-10 {
			t.Errorf("a resumed request went on after its client went: %d of the %d positions it would have computed are cached", got, len(prompt)+n-1)
		}
	})

	t.Run("bad proposal after admission", func(t *testing.T) {
		fake := &fakeDraft{}
		draft := startFakeDraft(t, fake)
		ctx, client := start(t, 4, draft)
		sampled := &specdv1.SamplingParams{Temperature: 0.8, Seed: ptr(uint64(7))}
		rejection := specdv1.VerificationMode_VERIFICATION_MODE_REJECTION
		req := func(so *specdv1.SpeculationOptions) *speculationv1.GenerateRequest {
			return &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
				Prompt: "The quick brown fox", MaxTokens: 60, Sampling: sampled, Speculation: so}}
		}
		want, _, err := generateAll(ctx, client, req(&specdv1.SpeculationOptions{Disabled: true, Mode: rejection}))
		if err != nil {
			t.Fatal(err)
		}
		settled(t, ctx, client.Info, "verifier before")
		// Rejection-mode proposals without their distributions.
		fake.speculate = proposeAhead(want, []int32{100}, nil)
		got, _, err := generateAll(ctx, client, req(&specdv1.SpeculationOptions{Gamma: 4, Mode: rejection}))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("with proposals lacking distributions: %v, %v; want %v", got, err, want)
		}
		settled(t, ctx, client.Info, "verifier")
	})

	t.Run("n generations of one prompt", func(t *testing.T) {
		draft, draftInfo := realDraft(t)
		ctx, client := start(t, 8, draft)
		settled(t, ctx, client.Info, "verifier before")
		prompt := longPrompt(3, 150) // two whole blocks and part of a third, shared
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				rctx, cancel := context.WithCancel(ctx)
				defer cancel()
				so := &specdv1.SpeculationOptions{Gamma: 4}
				if i%2 == 1 {
					so = plain
				}
				st, err := client.Generate(rctx, &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{PromptIds: prompt,
					MaxTokens: 40, Sampling: &specdv1.SamplingParams{Temperature: 1, Seed: ptr(uint64(i))}, Speculation: so}})
				if err != nil {
					t.Errorf("generation %d: %v", i, err)
					return
				}
				if i >= 4 { // two of them go after their first tokens
					if _, err := st.Recv(); err != nil {
						t.Errorf("generation %d: %v", i, err)
						return
					}
					cancel()
				}
				if _, err := drain(st); err != nil && !(i >= 4 && status.Code(err) == codes.Canceled) {
					t.Errorf("generation %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		settled(t, ctx, client.Info, "verifier")
		settled(t, ctx, draftInfo, "draft")
	})
}
