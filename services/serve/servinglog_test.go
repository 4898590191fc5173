package serve_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/specd-dev/specd/internal/consultest"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services/consul"
	"github.com/specd-dev/specd/services/serve"
)

// TestRouterServingLogNamesConsul: a router that discovers its endpoints in Consul
// says so when it starts serving. specd router passes its --verifiers and --drafts
// defaults along whatever the discovery, and the log named them
// (verifiers=[127.0.0.1:7071]), addresses the router never dials.
func TestRouterServingLogNamesConsul(t *testing.T) {
	agent := consultest.New(t, consultest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	logs := &traceLog{}
	ready := make(chan struct{})
	goServe(t, &wg)(func() error {
		return serve.Router(ctx, serve.RouterConfig{
			Log:       slog.New(slog.NewTextHandler(logs, nil)),
			Verifiers: []string{"127.0.0.1:7071"}, Drafts: []string{"127.0.0.1:7072"},
			Consul: &consul.WatchConfig{Addr: agent.Addr(), Wait: time.Second,
				Services: map[router.Role]string{router.Verifier: "specd-verifier", router.Draft: "specd-draft"}},
			Ready: func() { close(ready) },
		}, freeListener(t))
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start serving")
	}
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, `msg="router serving"`) {
			line = l
		}
	}
	if !strings.Contains(line, "discovery=consul") || !strings.Contains(line, "consul="+agent.Addr()) {
		t.Errorf("router serving log = %q, want discovery=consul consul=%s", line, agent.Addr())
	}
	if strings.Contains(line, "7071") || strings.Contains(line, "7072") {
		t.Errorf("router serving log = %q names static addresses it does not use", line)
	}
}
