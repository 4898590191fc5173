package serve_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// TestDraftRefusalIsNoBreakerFailure: a draft that refuses a session because it is
// full (RESOURCE_EXHAUSTED: its KV budget cannot hold the session) is busy, not
// broken. The request decodes plainly, with the output of plain decoding, and the
// router's breaker of that draft stays closed: with a breaker that opens on the first
// failure, every request is still offered the draft, and each is refused again. The
// final stats count the refusal apart from fallbacks (a failed draft).
func TestDraftRefusalIsNoBreakerFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(name string, kv int64, serveIt func(serve.Worker, net.Listener) error) string {
		t.Helper()
		l := freeListener(t)
		ready := make(chan struct{})
		w := serve.Worker{Load: loader(t, name), Engine: services.EngineConfig{Threads: 1, KVBudget: kv, KVType: ggml.F32, MaxBlock: 64}, Log: quiet,
			Ready: func(*model.Model) { close(ready) }}
		run(func() error { return serveIt(w, l) })
		<-ready
		return l.Addr().String()
	}
	draft := start("specd-draft-q8_0", 1<<20, func(w serve.Worker, l net.Listener) error {
		return serve.Draft(ctx, w, draftsvc.Config{Depth: 2}, l)
	})
	verifier := start("specd-target-q8_0", 32<<20, func(w serve.Worker, l net.Listener) error {
		return serve.Verifier(ctx, w, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1},
			Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft})}, l)
	})
	br := services.NewBreakers(1, time.Hour)
	client := startRouter(t, serve.RouterConfig{Verifiers: []string{verifier}, Drafts: []string{draft}, Refresh: 100 * time.Millisecond, Breakers: br})
	s := &stack{client: client, target: loadTarget(t)}
	text := "Once upon a time" + strings.Repeat(", and then the little fox ran on", 20)
	// 48 tokens: the refusal comes back over the draft's stream while the verifier
	// decodes; a short output under a loaded machine can end before it arrives.
	const n = 48
	want := s.plain(t, text, n, sample.Params{})
	for i := range 3 {
		r, err := s.generate(ctx, request(text, n, 0, 0, 4))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if st := r.final.GetStats(); st.GetDraftRefusals() != 1 || st.GetFallbacks() != 0 {
			t.Errorf("request %d: %d draft refusals, %d fallbacks; want the draft's one refusal, no fallback", i, st.GetDraftRefusals(), st.GetFallbacks())
		}
		if !slices.Equal(r.ids, want) {
			t.Errorf("request %d: %v, want plain decoding's %v", i, r.ids, want)
		}
		if st := br.States()[draft]; st != 0 {
			t.Fatalf("after request %d refused by the full draft: the draft's breaker is in state %d, want 0 (closed)", i, st)
		}
	}
}
