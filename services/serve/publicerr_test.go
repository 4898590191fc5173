package serve_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
)

// TestPublicErrorsNameNoInternalAddress: what a public client sees when the router
// fails a request for its verifiers' sake — every verifier at capacity, none reachable
// (Generate, Complete and Tokenize) — names no verifier's address, nor any address of
// the cluster the verifiers reported (the router's, in a per-peer refusal), and keeps
// its code and retry hint. The addresses used to reach the client in the status
// message (`verifier at capacity: 10.0.0.7:7071: … ip:10.0.0.3 …`).
func TestPublicErrorsNameNoInternalAddress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })
	real := startVerifierOf(t, ctx, run, "specd-target-q8_0")
	_, fullAddr := serveFull(t, ctx, run, real)
	full := routerOver(t, ctx, run, fullAddr)

	// A router whose one verifier has stopped: its address answers no more.
	stopped := freeListener(t)
	stoppedAddr := stopped.Addr().String()
	stopped.Close()
	rl := freeListener(t)
	ready := make(chan struct{})
	run(func() error {
		return serve.Router(ctx, serve.RouterConfig{Verifiers: []string{stoppedAddr}, Refresh: 100 * time.Millisecond,
			HealthInterval: 100 * time.Millisecond, Log: quiet, Ready: func() { close(ready) }}, rl)
	})
	<-ready
	cc, err := services.Dial(rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	none := specdv1.NewGenerationServiceClient(cc)

	internal := []string{fullAddr, real, stoppedAddr, "127.0.0.1", "ip:"}
	req := &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 4}
	generate := func(c specdv1.GenerationServiceClient) error {
		st, err := c.Generate(ctx, req)
		if err != nil {
			return err
		}
		for {
			if _, err := st.Recv(); err != nil {
				return err
			}
		}
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		hint time.Duration
	}{
		{"Complete, every verifier full", func() error { _, err := full.Complete(ctx, req); return err }, codes.ResourceExhausted, 3 * time.Second},
		{"Generate, every verifier full", func() error { return generate(full) }, codes.ResourceExhausted, 3 * time.Second},
		{"Complete, no verifier reachable", func() error { _, err := none.Complete(ctx, req); return err }, codes.Unavailable, 0},
		{"Generate, no verifier reachable", func() error { return generate(none) }, codes.Unavailable, 0},
		{"Tokenize, no verifier reachable", func() error {
			_, err := none.Tokenize(ctx, &specdv1.TokenizeRequest{Text: "Once"})
			return err
		}, codes.Unavailable, 0},
	} {
		err := tc.call()
		st := status.Convert(err)
		var hint time.Duration
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				hint = ri.GetRetryDelay().AsDuration()
			}
		}
		if st.Code() != tc.code || hint != tc.hint {
			t.Errorf("%s: %v (retry hint %v), want %v (hint %v)", tc.name, err, hint, tc.code, tc.hint)
		}
		for _, a := range internal {
			if strings.Contains(st.Message(), a) {
				t.Errorf("%s: the client sees %q, which names %q", tc.name, st.Message(), a)
			}
		}
	}
}
