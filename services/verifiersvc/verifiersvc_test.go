package verifiersvc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/internal/testnet"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
	"github.com/specd-dev/specd/verifier"
)

// TestAdmission: with room for one running request and one waiting, a third request
// is refused at once with RESOURCE_EXHAUSTED and a retry hint, a waiting request whose
// admission takes longer than --queue-wait is refused likewise, and everything
// admitted finishes; the engine's goroutines stop with the server.
func TestAdmission(t *testing.T) {
	checkLeaks(t)
	ctx, client := startVerifier(t, verifiersvc.Config{QueueWait: 100 * time.Millisecond, Engine: verifiersvc.EngineConfig{Threads: 1,
		Sched: verifier.Config{MaxRunning: 1, MaxQueue: 1}}})
	generate := func(n uint32) error { return generatePlain(ctx, client, "Once upon a time", n) }
	// One long request runs (500 tokens: at least 250 ms even at 2000 tokens/s; greedy
	// from this prompt it never ends early); once its first tokens have come, two more
	// arrive: one waits past the queue wait, the other finds the queue full (whichever
	// comes first). Waiting for the tokens, not for a fixed time, keeps a loaded machine
	// from starting the short requests before the long one.
	long, err := client.Generate(ctx, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
		Prompt: "Once upon a time", MaxTokens: 500, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := long.Recv()
		if err != nil {
			t.Fatalf("running request: %v", err)
		}
		if len(msg.GetChunk().GetTokenIds()) > 0 {
			break
		}
		if msg.GetFinal() != nil {
			t.Fatal("the long request ended before the others came")
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := 1; i < 3; i++ {
		wg.Go(func() { errs[i] = generate(8) })
	}
	wg.Wait()
	for {
		msg, err := long.Recv()
		if err != nil {
			errs[0] = err
			break
		}
		if msg.GetFinal() != nil {
			break
		}
	}
	if errs[0] != nil {
		t.Errorf("running request: %v", errs[0])
	}
	for i, err := range errs[1:] {
		s := status.Convert(err)
		if s.Code() != codes.ResourceExhausted {
			t.Errorf("request %d: %v, want RESOURCE_EXHAUSTED", i+1, err)
			continue
		}
		var hint bool
		for _, d := range s.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
				hint = true
			}
		}
		if !hint {
			t.Errorf("request %d: %v has no RetryInfo detail", i+1, err)
		}
	}
	// With the queue empty again a request is served.
	if err := generate(8); err != nil {
		t.Errorf("after the refusals: %v", err)
	}
}

// checkLeaks checks, after the test and its cleanups, that the goroutines it started
// have ended.
func checkLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// startService loads the model file (KV budget kvBytes) and runs serve on a loopback
// listener until the test ends; it returns a context that ends then and the address.
func startService(t *testing.T, file string, kvBytes int64, run func(context.Context, serve.Worker, net.Listener) error) (context.Context, string) {
	t.Helper()
	return startServiceLimited(t, file, kvBytes, services.Limits{}, run)
}

// startServiceLimited is startService with the server's limits.
func startServiceLimited(t *testing.T, file string, kvBytes int64, lim services.Limits, run func(context.Context, serve.Worker, net.Listener) error) (context.Context, string) {
	t.Helper()
	return startServiceWith(t, file, kvBytes, func(w *serve.Worker) { w.Limits = lim }, run)
}

// startServiceWith is startService with the worker as set (if not nil) changes it.
func startServiceWith(t *testing.T, file string, kvBytes int64, set func(*serve.Worker), run func(context.Context, serve.Worker, net.Listener) error) (context.Context, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	path := testmodels.ForTest(t, file)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	w := serve.Worker{
		Load:   func() (*model.Model, error) { return model.Load(path, model.LoadOptions{}) },
		Engine: services.EngineConfig{Threads: 1, KVBudget: kvBytes, KVType: ggml.F32, MaxBlock: 64},
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:  func(*model.Model) { close(ready) },
	}
	if set != nil {
		set(&w)
	}
	go func() { done <- run(ctx, w, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", file, err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("%s: %v", file, err)
	}
	return ctx, lis.Addr().String()
}

// startVerifier serves the Q8_0 target with cfg on loopback until the test ends, and
// returns a context ending then and a client.
func startVerifier(t *testing.T, cfg verifiersvc.Config) (context.Context, speculationv1.VerifierServiceClient) {
	t.Helper()
	return startVerifierWith(t, 32<<20, nil, cfg)
}

// startVerifierWith is startVerifier with a KV budget of kvBytes and the worker as set
// (if not nil) changes it.
func startVerifierWith(t *testing.T, kvBytes int64, set func(*serve.Worker), cfg verifiersvc.Config) (context.Context, speculationv1.VerifierServiceClient) {
	t.Helper()
	ctx, addr := startServiceWith(t, "specd-target-q8_0.gguf", kvBytes, set, func(ctx context.Context, w serve.Worker, lis net.Listener) error {
		return serve.Verifier(ctx, w, cfg, lis)
	})
	cc, err := services.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return ctx, speculationv1.NewVerifierServiceClient(cc)
}

// generatePlain runs a plain request for n tokens of prompt to its final message.
func generatePlain(ctx context.Context, client speculationv1.VerifierServiceClient, prompt string, n uint32) error {
	st, err := client.Generate(ctx, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
		Prompt: prompt, MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
	if err != nil {
		return err
	}
	for {
		msg, err := st.Recv()
		if err != nil {
			return err
		}
		if msg.GetFinal() != nil {
			return nil
		}
	}
}

// TestStreamInterval: committed tokens held back by the stream interval go out
// together — the first tokens at once, the rest with the last when the interval is
// longer than the request — while interval 0 sends a message per pass (one token each,
// decoding plainly); the tokens are the same either way.
func TestStreamInterval(t *testing.T) {
	checkLeaks(t)
	const n = 24
	var want []int32
	for _, tc := range []struct {
		interval time.Duration
		chunks   int
	}{{0, n}, {time.Hour, 2}} {
		ctx, client := startVerifier(t, verifiersvc.Config{StreamInterval: tc.interval, Engine: verifiersvc.EngineConfig{Threads: 1}})
		st, err := client.Generate(ctx, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int32
		chunks := 0
		for {
			msg, err := st.Recv()
			if err != nil {
				t.Fatalf("interval %v: %v", tc.interval, err)
			}
			if c := msg.GetChunk(); c != nil {
				chunks++
				ids = append(ids, c.GetTokenIds()...)
				continue
			}
			break
		}
		if chunks != tc.chunks || len(ids) != n {
			t.Errorf("interval %v: %d tokens in %d chunks, want %d in %d", tc.interval, len(ids), chunks, n, tc.chunks)
		}
		if want == nil {
			want = ids
		} else if !slices.Equal(ids, want) {
			t.Errorf("interval %v: tokens %v, want %v", tc.interval, ids, want)
		}
	}
}

// TestDraftAddressOutsideView: a request's draft_address is only a preference among
// the drafts of the verifier's own view. The draft in the view is used; 300 requests
// naming 300 other addresses — each a listener that records connections — decode
// plainly without a single connection attempt, and leave no goroutine behind.
func TestDraftAddressOutsideView(t *testing.T) {
	checkLeaks(t)
	draft := startDraft(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
		Engine: verifiersvc.EngineConfig{Threads: 1}})
	var accepts atomic.Int64
	bogus := make([]string, 300)
	for i := range bogus {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lis.Close() })
		go func() {
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				accepts.Add(1)
				c.Close()
			}
		}()
		bogus[i] = lis.Addr().String()
	}
	generate := func(addr string) *specdv1.Stats {
		t.Helper()
		st, err := client.Generate(ctx, &speculationv1.GenerateRequest{DraftAddress: addr, Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: 4, Speculation: &specdv1.SpeculationOptions{Gamma: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		var stats *specdv1.Stats
		for {
			msg, err := st.Recv()
			if errors.Is(err, io.EOF) && stats != nil {
				return stats
			}
			if err != nil {
				t.Fatalf("draft %s: %v", addr, err)
			}
			if f := msg.GetFinal(); f != nil {
				stats = f.GetStats()
			}
		}
	}
	// A just-started draft on a busy machine may first propose after a 4-token
	// request has ended, so try a few times; the address must be right every time.
	for try := 1; ; try++ {
		st := generate(draft)
		if st.GetDraft().GetAddress() != draft {
			t.Fatalf("the draft in the view: stats name draft %q, want %s", st.GetDraft().GetAddress(), draft)
		}
		if st.GetDraftedTokens() > 0 {
			break
		}
		if try == 20 {
			t.Fatalf("the draft in the view drafted no token in %d requests", try)
		}
	}
	before := runtime.NumGoroutine()
	for _, addr := range bogus {
		if st := generate(addr); st.GetDraft().GetAddress() != "" || st.GetFallbacks() != 0 {
			t.Fatalf("draft %s outside the view: stats name draft %q, %d fallbacks; want none", addr, st.GetDraft().GetAddress(), st.GetFallbacks())
		}
	}
	if n := accepts.Load(); n != 0 {
		t.Errorf("the verifier connected %d times to addresses outside its view", n)
	}
	// Handlers end just after their final message; allow them a moment.
	after := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); after > before+4 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		after = runtime.NumGoroutine()
	}
	if after > before+4 {
		t.Errorf("%d goroutines after 300 requests naming unknown drafts, %d before", after, before)
	}
}

// startDraft serves the Q8_0 draft on loopback until the test ends and returns its
// address.
func startDraft(t *testing.T) string {
	t.Helper()
	_, addr := startService(t, "specd-draft-q8_0.gguf", 16<<20, func(ctx context.Context, w serve.Worker, lis net.Listener) error {
		return serve.Draft(ctx, w, draftsvc.Config{Depth: 2, PrefixCache: true}, lis)
	})
	return addr
}

// TestMaxPromptTokens: a prompt longer than --max-prompt-tokens is INVALID_ARGUMENT
// naming the prompt; one within it is served.
func TestMaxPromptTokens(t *testing.T) {
	checkLeaks(t)
	ctx, client := startVerifier(t, verifiersvc.Config{MaxPromptTokens: 6, Engine: verifiersvc.EngineConfig{Threads: 1}})
	run := func(prompt string) error { return generatePlain(ctx, client, prompt, 4) }
	if err := run("Once upon a time"); err != nil {
		t.Errorf("a short prompt: %v", err)
	}
	err := run("Once upon a time, there was a little girl named Lily who loved to play")
	if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "prompt") {
		t.Errorf("a prompt over the limit: %v, want INVALID_ARGUMENT naming the prompt", err)
	}
}

// TestStreamsPerPeer: a verifier with --max-streams-per-peer 2 refuses one peer's third
// Generate stream at once (RESOURCE_EXHAUSTED with a retry hint), while it has room
// to run more, and serves another peer meanwhile.
func TestStreamsPerPeer(t *testing.T) {
	checkLeaks(t)
	cfg := verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1, Sched: verifier.Config{MaxRunning: 4, MaxQueue: 4}}}
	ctx, addr := startServiceLimited(t, "specd-target-q8_0.gguf", 32<<20, services.Limits{MaxStreamsPerPeer: 2}, func(ctx context.Context, w serve.Worker, lis net.Listener) error {
		return serve.Verifier(ctx, w, cfg, lis)
	})
	client := func(src string) speculationv1.VerifierServiceClient {
		cc, err := services.Dial(addr, testnet.From(src))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return speculationv1.NewVerifierServiceClient(cc)
	}
	hog, other := client("127.0.0.2"), client("127.0.0.1")
	hold, stop := context.WithCancel(ctx)
	defer stop()
	// 500 greedy tokens from this prompt (see TestAdmission): both still run while the
	// third request is made.
	for i := range 2 {
		st, err := hog.Generate(hold, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: 500, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
		if err == nil {
			_, err = st.Recv()
		}
		if err != nil {
			t.Fatalf("the hog's stream %d: %v", i, err)
		}
	}
	err := generatePlain(ctx, hog, "Hello", 4)
	if s := status.Convert(err); s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), "streams per peer") || len(s.Details()) == 0 {
		t.Errorf("the hog's third stream: %v, want RESOURCE_EXHAUSTED for the per-peer limit with a RetryInfo", err)
	}
	if err := generatePlain(ctx, other, "Hello", 4); err != nil {
		t.Errorf("another peer beside the hog: %v", err)
	}
	stop()
}
