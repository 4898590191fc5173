package serve_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// fullVerifier is a verifier at capacity: it describes itself as the real verifier
// it fronts does (same model, same load), answers health SERVING, and refuses every
// Generate as a full verifier does — RESOURCE_EXHAUSTED with a retry hint.
type fullVerifier struct {
	speculationv1.UnimplementedVerifierServiceServer
	real  speculationv1.VerifierServiceClient
	calls atomic.Int32
}

func (f *fullVerifier) Info(ctx context.Context, req *speculationv1.InfoRequest) (*speculationv1.InfoResponse, error) {
	return f.real.Info(ctx, req)
}

func (f *fullVerifier) Generate(*speculationv1.GenerateRequest, speculationv1.VerifierService_GenerateServer) error {
	f.calls.Add(1)
	return services.Status(&services.BusyError{Err: fmt.Errorf("%w: admission queue full", services.ErrBusy), RetryAfter: 3 * time.Second})
}

// serveFull serves a fullVerifier fronting the verifier at real until the test ends.
func serveFull(t *testing.T, ctx context.Context, run func(func() error), real string) (*fullVerifier, string) {
	t.Helper()
	cc, err := services.Dial(real)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	f := &fullVerifier{real: speculationv1.NewVerifierServiceClient(cc)}
	return f, serveVerifierService(t, ctx, run, f)
}

// serveVerifierService serves impl as a verifier, SERVING, until ctx ends, and returns
// its address.
func serveVerifierService(t *testing.T, ctx context.Context, run func(func() error), impl speculationv1.VerifierServiceServer) string {
	t.Helper()
	srv := services.NewServer("specd.speculation.v1.VerifierService", quiet, services.Limits{})
	speculationv1.RegisterVerifierServiceServer(srv.GRPC, impl)
	srv.SetServing()
	lis := freeListener(t)
	run(func() error { return srv.Serve(ctx, lis, time.Second) })
	return lis.Addr().String()
}

// startVerifierOf serves a verifier of the model name on loopback until ctx ends and
// returns its address once it is ready.
func startVerifierOf(t *testing.T, ctx context.Context, run func(func() error), name string) string {
	t.Helper()
	l := freeListener(t)
	ready := make(chan struct{})
	eng := services.EngineConfig{Threads: 1, KVBudget: 16 << 20, KVType: ggml.F32, MaxBlock: 16}
	run(func() error {
		return serve.Verifier(ctx, serve.Worker{Load: loader(t, name), Engine: eng, Log: quiet,
			Ready: func(*model.Model) { close(ready) }},
			verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}, Drafts: router.NewStatic()}, l)
	})
	<-ready
	return l.Addr().String()
}

// routerOver serves a router over the verifiers at addrs until ctx ends and returns
// its client once it knows their models.
func routerOver(t *testing.T, ctx context.Context, run func(func() error), addrs ...string) specdv1.GenerationServiceClient {
	t.Helper()
	rl := freeListener(t)
	ready := make(chan struct{})
	run(func() error {
		return serve.Router(ctx, serve.RouterConfig{Verifiers: addrs, Refresh: 100 * time.Millisecond, HealthInterval: 100 * time.Millisecond,
			Log: quiet, Ready: func() { close(ready) }}, rl)
	})
	<-ready
	cc, err := services.Dial(rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := specdv1.NewGenerationServiceClient(cc)
	waitModels(t, c, 1)
	return c
}

// TestFullVerifierPassesToAnother: a request whose affinity picks a verifier at
// capacity runs on another verifier that has room — the proto promises
// RESOURCE_EXHAUSTED only when every verifier is at capacity — and when every one is,
// the client gets RESOURCE_EXHAUSTED with the verifiers' retry hint.
func TestFullVerifierPassesToAnother(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })
	real := startVerifierOf(t, ctx, run, "specd-target-q8_0")
	full, fullAddr := serveFull(t, ctx, run, real)
	client := routerOver(t, ctx, run, fullAddr, real)
	// Give the router time to learn both verifiers' metadata and health.
	time.Sleep(300 * time.Millisecond)

	var text string
	for i := 0; text == ""; i++ {
		p := fmt.Sprintf("Prompt %d: once upon a time", i)
		v, _, _ := router.Pick(router.NewStatic(
			router.Endpoint{ID: fullAddr, Address: fullAddr, Role: router.Verifier},
			router.Endpoint{ID: real, Address: real, Role: router.Verifier}), p, nil, nil)
		if v.ID == fullAddr {
			text = p
		}
	}
	res, err := client.Complete(context.Background(), &specdv1.GenerateRequest{Prompt: text, MaxTokens: 4})
	if err != nil {
		t.Fatalf("Complete with the affine verifier full and another free: %v", err)
	}
	if full.calls.Load() == 0 || res.GetStats().GetVerifier().GetAddress() != real {
		t.Errorf("served by %q after %d calls to the full verifier; want the free verifier after the full one refused",
			res.GetStats().GetVerifier().GetAddress(), full.calls.Load())
	}

	_, fullAddr2 := serveFull(t, ctx, run, real)
	allFull := routerOver(t, ctx, run, fullAddr, fullAddr2)
	time.Sleep(300 * time.Millisecond)
	_, err = allFull.Complete(context.Background(), &specdv1.GenerateRequest{Prompt: text, MaxTokens: 4})
	st := status.Convert(err)
	var hint time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			hint = ri.GetRetryDelay().AsDuration()
		}
	}
	if st.Code() != codes.ResourceExhausted || hint != 3*time.Second {
		t.Errorf("every verifier full: %v (retry hint %v), want RESOURCE_EXHAUSTED with the verifiers' hint of 3s", err, hint)
	}
}

// TestTokenizeAvoidsDownVerifier: with one of two verifiers stopped (and the router's
// health probe knowing it), Tokenize is answered by the other for every text — it
// used to go by the text's affinity alone and fail UNAVAILABLE for the stopped one's
// share of texts.
func TestTokenizeAvoidsDownVerifier(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })
	actx, stopA := context.WithCancel(ctx)
	a := startVerifierOf(t, actx, run, "specd-target-q8_0")
	b := startVerifierOf(t, ctx, run, "specd-target-q8_0")
	client := routerOver(t, ctx, run, a, b)
	stopA()
	time.Sleep(500 * time.Millisecond) // a few health probes
	for i := range 12 {
		text := fmt.Sprintf("Text %d to tokenize", i)
		if _, err := client.Tokenize(context.Background(), &specdv1.TokenizeRequest{Text: text}); err != nil {
			t.Errorf("Tokenize(%q) with one verifier of two down: %v", text, err)
		}
	}
}
