package serve_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/specd-dev/specd/internal/consultest"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/consul"
	"github.com/specd-dev/specd/services/serve"
)

// TestBreakersFollowDiscovery: a router on Consul keeps a circuit breaker only for the
// endpoints in its view. An instance that leaves Consul takes its breaker with it — so
// breakers do not pile up as instances come and go — and one registered again under
// the same ID starts with a closed breaker instead of the open one it left with. An
// instance still in the view keeps its breaker's state.
func TestBreakersFollowDiscovery(t *testing.T) {
	agent := consultest.New(t, consultest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	register := func(id, port string) *consul.Registered {
		t.Helper()
		reg, err := consul.Register(ctx, consul.Registration{Addr: agent.Addr(), ID: id, Service: "specd-verifier", Role: router.Verifier,
			Advertise: "127.0.0.1:" + port, CheckInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := agent.SetStatus(id, consultest.Passing); err != nil {
			t.Fatal(err)
		}
		return reg
	}
	gone := register("v-gone", "7101")
	register("v-stays", "7102")
	br := services.NewBreakers(1, time.Hour)
	// Both breakers open: each endpoint failed once (Trip 1).
	for _, id := range []string{"v-gone", "v-stays"} {
		done, ok := br.Begin(router.Endpoint{ID: id})
		if !ok {
			t.Fatalf("Begin(%s) refused on a new breaker", id)
		}
		done(router.ErrEndpointDown)
	}
	goServe(t, &wg)(func() error {
		return serve.Router(ctx, serve.RouterConfig{Log: quiet, Breakers: br, Consul: &consul.WatchConfig{Addr: agent.Addr(), Wait: time.Second,
			MinInterval: 10 * time.Millisecond, Services: map[router.Role]string{router.Verifier: "specd-verifier", router.Draft: "specd-draft"}}}, freeListener(t))
	})
	if err := gone.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the breaker of the deregistered instance to be forgotten", func() bool {
		_, kept := br.States()["v-gone"]
		return !kept
	})
	if got := br.States()["v-stays"]; got != 2 {
		t.Errorf("breaker of the instance still registered: state %d, want 2 (open)", got)
	}
	// Registered again under the same ID, it starts afresh.
	register("v-gone", "7101")
	if !br.Ready(router.Endpoint{ID: "v-gone"}) {
		t.Errorf("the instance registered again inherits an open breaker: states %v", br.States())
	}
	if _, ok := br.Begin(router.Endpoint{ID: "v-gone"}); !ok {
		t.Errorf("Begin on the instance registered again: refused, want a call let through")
	}
}

// waitFor polls cond every 10 ms until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, limit)
		}
	}
}

// TestBreakerChangesAreLogged: the router logs every change of a breaker's state —
// open (a warning), half-open once its cooldown has passed, closed after a success.
func TestBreakerChangesAreLogged(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	logs := &logRecords{}
	br := services.NewBreakers(1, 50*time.Millisecond)
	up := make(chan struct{})
	goServe(t, &wg)(func() error {
		return serve.Router(ctx, serve.RouterConfig{Verifiers: []string{"127.0.0.1:1"}, Breakers: br, Log: slog.New(logs),
			Ready: func() { close(up) }}, freeListener(t))
	})
	<-up
	v := router.Endpoint{ID: "127.0.0.1:1"}
	done, ok := br.Begin(v)
	if !ok {
		t.Fatal("Begin refused on a new breaker")
	}
	done(router.ErrEndpointDown)
	waitFor(t, 10*time.Second, "the breaker's opening to be logged", func() bool { return logs.count("circuit breaker open") == 1 })
	waitFor(t, 10*time.Second, "the breaker's half-opening to be logged", func() bool {
		br.Ready(v) // the breaker turns half-open when asked after its cooldown
		return logs.count("circuit breaker half-open") == 1
	})
	if done, ok = br.Begin(v); !ok {
		t.Fatalf("Begin refused on a half-open breaker: %v", br.States())
	}
	done(nil)
	waitFor(t, 10*time.Second, "the breaker's closing to be logged", func() bool { return logs.count("circuit breaker closed") == 1 })
}
