package serve_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// cuttingVerifier relays Generate to a real verifier and remembers the progress of
// the last message it passed on. With cutAfter > 0 it breaks the stream
// (UNAVAILABLE, as a verifier's crash looks to the router) once it has passed on
// that many chunks.
type cuttingVerifier struct {
	speculationv1.UnimplementedVerifierServiceServer
	real     speculationv1.VerifierServiceClient
	cutAfter int

	mu   sync.Mutex
	last *speculationv1.Progress // of the last Generate call
}

func (c *cuttingVerifier) Info(ctx context.Context, req *speculationv1.InfoRequest) (*speculationv1.InfoResponse, error) {
	return c.real.Info(ctx, req)
}

func (c *cuttingVerifier) Generate(req *speculationv1.GenerateRequest, out speculationv1.VerifierService_GenerateServer) error {
	ctx, cancel := context.WithCancel(out.Context())
	defer cancel()
	in, err := c.real.Generate(ctx, req)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.last = nil
	c.mu.Unlock()
	chunks := 0
	for {
		msg, err := in.Recv()
		if err != nil {
			return err // io.EOF after the final message: the stream ends well
		}
		if msg.GetChunk() != nil {
			if chunks++; c.cutAfter > 0 && chunks > c.cutAfter {
				return status.Error(codes.Unavailable, "connection cut by the test")
			}
		}
		if p := msg.GetProgress(); p != nil {
			c.mu.Lock()
			c.last = p
			c.mu.Unlock()
		}
		if err := out.Send(msg); err != nil {
			return err
		}
	}
}

func (c *cuttingVerifier) progress() *speculationv1.Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// TestFailoverStatsCountEveryAttempt: a request whose verifier breaks mid-stream ends
// on another verifier with final stats that count both attempts' speculation — the
// rounds and tokens the broken one had verified (its last progress) plus the
// finishing one's — not the last attempt's alone; its output is plain decoding's, and
// its log-probabilities, one per token across the failover, those of the request run
// on the whole verifier alone, bit for bit.
func TestFailoverStatsCountEveryAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(name string, serveIt func(serve.Worker, net.Listener) error) string {
		t.Helper()
		l := freeListener(t)
		ready := make(chan struct{})
		w := serve.Worker{Load: loader(t, name), Engine: services.EngineConfig{Threads: 1, KVBudget: 32 << 20, KVType: ggml.F32, MaxBlock: 16}, Log: quiet,
			Ready: func(*model.Model) { close(ready) }}
		run(func() error { return serveIt(w, l) })
		<-ready
		return l.Addr().String()
	}
	draft := start("specd-draft-q8_0", func(w serve.Worker, l net.Listener) error {
		return serve.Draft(ctx, w, draftsvc.Config{Depth: 2}, l)
	})
	front := func(cutAfter int) (*cuttingVerifier, string) {
		real := start("specd-target-q8_0", func(w serve.Worker, l net.Listener) error {
			return serve.Verifier(ctx, w, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1},
				Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft})}, l)
		})
		cc, err := services.Dial(real)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		c := &cuttingVerifier{real: speculationv1.NewVerifierServiceClient(cc), cutAfter: cutAfter}
		return c, serveVerifierService(t, ctx, run, c)
	}
	// The router's breakers open on no failure here (a high threshold), so the
	// broken verifier is tried again for every request whose affinity picks it.
	cut, cutAddr := front(6)
	whole, wholeAddr := front(0)
	client := startRouter(t, serve.RouterConfig{Verifiers: []string{cutAddr, wholeAddr}, Drafts: []string{draft},
		Refresh: 100 * time.Millisecond, Breakers: services.NewBreakers(100, time.Second)})
	s := &stack{client: client, target: loadTarget(t)}
	waitModels(t, client, 1)

	// A just-started draft on a busy machine may first propose late: try prompts until
	// the broken attempt had verified rounds before the cut.
	for try := range 10 {
		var text string
		for i := 0; text == ""; i++ {
			p := fmt.Sprintf("Try %d, prompt %d: once upon a time there was a little fox who", try, i)
			v, _, _ := router.Pick(router.NewStatic(
				router.Endpoint{ID: cutAddr, Address: cutAddr, Role: router.Verifier},
				router.Endpoint{ID: wholeAddr, Address: wholeAddr, Role: router.Verifier}), p, nil, nil)
			if v.ID == cutAddr {
				text = p
			}
		}
		req := request(text, 96, 0, 0, 4)
		req.Logprobs, req.TopLogprobs = true, 3
		r, err := s.generate(ctx, req)
		if err != nil {
			t.Fatalf("request across the failover: %v", err)
		}
		if len(r.logprobs) != len(r.ids) || len(r.ids) != 96 {
			t.Fatalf("%d tokens with %d logprobs, want 96 of each", len(r.ids), len(r.logprobs))
		}
		alone, err := completeOn(ctx, whole.real, req)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&specdv1.CompleteResponse{TokenIds: r.ids, Logprobs: r.logprobs}, &specdv1.CompleteResponse{TokenIds: alone.ids, Logprobs: alone.logprobs}) {
			t.Fatalf("tokens and logprobs across the failover (%d, %d) differ from the request's on one verifier (%d, %d)",
				len(r.ids), len(r.logprobs), len(alone.ids), len(alone.logprobs))
		}
		if want := s.plain(t, text, 96, sample.Params{}); !slices.Equal(r.ids, want) {
			t.Fatalf("output across the failover differs from plain:\n got %v\nwant %v", r.ids, want)
		}
		st := r.final.GetStats()
		if st.GetFailovers() != 1 {
			t.Fatalf("%d failovers, want 1", st.GetFailovers())
		}
		a, b := cut.progress(), whole.progress()
		if b == nil {
			t.Fatal("the finishing verifier sent no progress with its final message")
		}
		got := [...]uint32{st.GetRounds(), st.GetDraftedTokens(), st.GetAcceptedTokens(), st.GetLookupTokens(), st.GetLookupAcceptedTokens(), st.GetFallbacks()}
		want := [...]uint32{a.GetRounds() + b.GetRounds(), a.GetDraftedTokens() + b.GetDraftedTokens(), a.GetAcceptedTokens() + b.GetAcceptedTokens(),
			a.GetLookupTokens() + b.GetLookupTokens(), a.GetLookupAcceptedTokens() + b.GetLookupAcceptedTokens(), a.GetFallbacks() + b.GetFallbacks()}
		if got != want {
			t.Fatalf("final stats count (rounds, drafted, accepted, lookup, lookup kept, fallbacks) %v; the two attempts' sum is %v (broken %v, finishing %v)", got, want, a, b)
		}
		if a.GetRounds() == 0 {
			continue
		}
		// Complete, through the same failover, returns them too.
		res, err := client.Complete(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&specdv1.CompleteResponse{TokenIds: res.GetTokenIds(), Logprobs: res.GetLogprobs()}, &specdv1.CompleteResponse{TokenIds: alone.ids, Logprobs: alone.logprobs}) {
			t.Errorf("Complete's tokens and logprobs (%d, %d) differ from the request's on one verifier", len(res.GetTokenIds()), len(res.GetLogprobs()))
		}
		return
	}
	t.Fatal("in 10 requests the broken verifier never verified a round before the cut")
}

// completeOn runs req on the verifier behind client directly and returns its tokens and
// log-probabilities.
func completeOn(ctx context.Context, client speculationv1.VerifierServiceClient, req *specdv1.GenerateRequest) (result, error) {
	var r result
	st, err := client.Generate(ctx, &speculationv1.GenerateRequest{Request: req})
	if err != nil {
		return r, err
	}
	for {
		msg, err := st.Recv()
		if err != nil {
			return r, err
		}
		r.ids = append(r.ids, msg.GetChunk().GetTokenIds()...)
		r.logprobs = append(r.logprobs, msg.GetChunk().GetLogprobs()...)
		if msg.GetFinal() != nil {
			return r, nil
		}
	}
}
