package verifiersvc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
	"github.com/specd-dev/specd/verifier"
)

// TestAdmission: with room for one running request and one waiting, a third request
// is refused at once with RESOURCE_EXHAUSTED and a retry hint, a waiting request whose
// admission takes longer than --queue-wait is refused likewise, and everything
// admitted finishes; the engine's goroutines stop with the server.
func TestAdmission(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	path := testmodels.ForTest(t, "specd-target-q8_0.gguf")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- serve.Verifier(ctx, serve.Worker{
			Load:   func() (*model.Model, error) { return model.Load(path, model.LoadOptions{}) },
			Engine: services.EngineConfig{Threads: 1, KVBudget: 32 << 20, KVType: ggml.F32, MaxBlock: 64},
			Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:  func(*model.Model) { close(ready) },
		}, verifiersvc.Config{QueueWait: 100 * time.Millisecond, Engine: verifiersvc.EngineConfig{Threads: 1,
			Sched: verifier.Config{MaxRunning: 1, MaxQueue: 1}}}, lis)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("server: %v", err)
		}
	}()
	<-ready
	cc, err := services.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := speculationv1.NewVerifierServiceClient(cc)
	generate := func(n uint32) error {
		st, err := client.Generate(ctx, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
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
	// One long request runs (500 tokens: at least 250 ms even at 2000 tokens/s; greedy
	// from this prompt it never ends early), a second waits past the queue wait, a
	// third finds the queue full.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, n := range []uint32{500, 8, 8} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = generate(n) }()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
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
