package serve_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/model"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// logRecords is a slog handler that keeps the messages of the records it sees.
type logRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// count returns how many records have a message starting with prefix.
func (l *logRecords) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// TestRouterRecovery follows one router through its only verifier's life:
//
//  1. while the verifier loads its model (health NOT_SERVING, Generate UNAVAILABLE)
//     the router's own health is NOT_SERVING and requests fail UNAVAILABLE — more of
//     them than open a breaker, yet the breaker stays closed: a verifier refusing
//     requests until it has loaded is not failing;
//  2. once it serves the router is SERVING and a request succeeds, with no breaker
//     cooldown to sit out;
//  3. with the verifier stopped the router is NOT_SERVING and requests fail
//     UNAVAILABLE — more of them than open a breaker, yet the breaker stays closed:
//     a refused connection is not the endpoint failing;
//  4. the verifier restarted on the same address serves the very first request sent
//     after it is up — neither the old connection's backoff nor an open breaker
//     stands in the way — and the router is SERVING again.
func TestRouterRecovery(t *testing.T) {
	vl, rl := freeListener(t), freeListener(t)
	vaddr := vl.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := goServe(t, &wg)
	eng := services.EngineConfig{Threads: 1, KVBudget: 32 << 20, KVType: ggml.F32, MaxBlock: 64}
	load := loader(t, "specd-target-q8_0")
	startVerifier := func(lis net.Listener, release <-chan struct{}) (stop func()) {
		vctx, stopV := context.WithCancel(ctx)
		done := make(chan struct{})
		run(func() error {
			defer close(done)
			return serve.Verifier(vctx, serve.Worker{Engine: eng, Log: quiet, Load: func() (*model.Model, error) {
				select {
				case <-release:
				case <-vctx.Done():
					return nil, vctx.Err()
				}
				return load()
			}}, verifiersvc.Config{}, lis)
		})
		return func() { stopV(); <-done }
	}
	release := make(chan struct{})
	stopVerifier := startVerifier(vl, release)

	logs := &logRecords{}
	const trip = 2
	run(func() error {
		return serve.Router(ctx, serve.RouterConfig{Verifiers: []string{vaddr}, Refresh: 100 * time.Millisecond, HealthInterval: 50 * time.Millisecond,
			Breakers: services.NewBreakers(trip, time.Hour), Log: slog.New(logs)}, rl)
	})
	cc, err := services.Dial(rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := specdv1.NewGenerationServiceClient(cc)
	health := healthpb.NewHealthClient(cc)
	// The wait is long because loading the model after release (and warming its
	// engine) took over 5 s on a CI machine loaded by other packages' tests; the
	// router itself flips within a health interval of it.
	waitHealth := func(what string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		var got healthpb.HealthCheckResponse_ServingStatus
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
			if got = r.GetStatus(); err == nil && got == want {
				return
			}
		}
		t.Fatalf("%s: router health %v, want %v", what, got, want)
	}
	req := func() error {
		_, err := client.Complete(context.Background(), &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 4})
		return err
	}

	// 1. Loading.
	waitHealth("verifier loading", healthpb.HealthCheckResponse_NOT_SERVING)
	for range 2 * trip {
		if err := req(); status.Code(err) != codes.Unavailable {
			t.Fatalf("verifier loading: %v, want UNAVAILABLE", err)
		}
	}
	if n := logs.count("circuit breaker open"); n != 0 {
		t.Errorf("refusals of a verifier loading its model opened the breaker (%d logs of it opening, want 0: %q)", n, logs.msgs)
	}

	// 2. Serving.
	close(release)
	waitHealth("verifier serving", healthpb.HealthCheckResponse_SERVING)
	if err := req(); err != nil {
		t.Fatalf("verifier serving: %v", err)
	}

	// 3. Stopped.
	stopVerifier()
	waitHealth("verifier stopped", healthpb.HealthCheckResponse_NOT_SERVING)
	for range 2 * trip {
		if err := req(); status.Code(err) != codes.Unavailable {
			t.Fatalf("verifier stopped: %v, want UNAVAILABLE", err)
		}
	}
	// Long enough for gRPC's own reconnect backoff to grow past a second.
	time.Sleep(1500 * time.Millisecond)
	if n := logs.count("circuit breaker open"); n != 0 {
		t.Errorf("refused connections opened the breaker (%d logs of it opening, want 0)", n)
	}

	// 4. Restarted on the same address.
	vl2, err := net.Listen("tcp", vaddr)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	close(ready)
	startVerifier(vl2, ready)
	vcc, err := services.Dial(vaddr)
	if err != nil {
		t.Fatal(err)
	}
	defer vcc.Close()
	// The restarted verifier loads and warms its model first: seconds alone, more on a
	// machine busy with other tests. What this step checks is the router's first
	// request after it serves, not how soon it serves.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r, err := healthpb.NewHealthClient(vcc).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted verifier never served: %v", err)
		}
	}
	if err := req(); err != nil {
		t.Errorf("first request after the verifier restarted: %v", err)
	}
	waitHealth("verifier restarted", healthpb.HealthCheckResponse_SERVING)
}
