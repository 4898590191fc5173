package serve_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
)

// TestPublicErrorsNameNoInternalAddress: what a public client sees when the router
// fails a request for its verifiers' sake — every verifier at capacity, none reachable
// (Generate, Complete and Tokenize), one refusing the router's identity — names no verifier's address, nor any address of
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
	none := specdv1.NewGenerationServiceClient(dialT(t, rl.Addr().String()))

	// A verifier that refuses the router's identity, as a misconfigured mesh does
	// (tlsconf's words).
	deniedAddr := serveVerifierService(t, ctx, run, &deniedVerifier{fullVerifier{real: speculationv1.NewVerifierServiceClient(dialT(t, real))}})
	denied := routerOver(t, ctx, run, deniedAddr)

	internal := []string{fullAddr, real, stoppedAddr, deniedAddr, "127.0.0.1", "ip:", "spiffe:"}
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
		{"Complete, the verifier refuses the router", func() error { _, err := denied.Complete(ctx, req); return err }, codes.PermissionDenied, 0},
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

// deniedVerifier is a verifier that refuses the router's certificate identity, as
// tlsconf does for one outside --tls-peers.
type deniedVerifier struct{ fullVerifier }

func (d *deniedVerifier) Generate(*speculationv1.GenerateRequest, speculationv1.VerifierService_GenerateServer) error {
	return services.Status(fmt.Errorf("%w: /specd.speculation.v1.VerifierService/Generate: peer identity not allowed: spiffe://specd.internal/router@ip:10.0.0.3 is not one of [spiffe://specd.internal/gateway]", services.ErrPermissionDenied))
}

// dialT dials addr until the test ends.
func dialT(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := services.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
