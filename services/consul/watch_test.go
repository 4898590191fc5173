package consul

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specd-dev/specd/internal/consultest"
	"github.com/specd-dev/specd/router"
)

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// watch starts a watcher of both roles on fake and stops it when the test ends.
func watch(t *testing.T, fake *consultest.Server, mutate func(*WatchConfig)) (*Watcher, *logBuffer) {
	t.Helper()
	cfg := WatchConfig{
		Addr:        fake.Addr(),
		Services:    map[router.Role]string{router.Verifier: "specd-verifier", router.Draft: "specd-draft"},
		Wait:        3 * time.Second,
		MaxBackoff:  100 * time.Millisecond,
		MinInterval: 10 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &logBuffer{}
	w, err := NewWatcher(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	})
	return w, logs
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func idsOf(eps []router.Endpoint) []string {
	out := []string{}
	for _, e := range eps {
		out = append(out, e.ID)
	}
	return out
}

func hasIDs(w *Watcher, role router.Role, ids ...string) func() bool {
	return func() bool { return slices.Equal(idsOf(w.Endpoints(role)), ids) }
}

func mustRegister(t *testing.T, r Registration) *Registered {
	t.Helper()
	reg, err := Register(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func mustPass(t *testing.T, fake *consultest.Server, id string) {
	t.Helper()
	if err := fake.SetStatus(id, consultest.Passing); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherFollowsRegistrations checks that a change reaches the view through the
// blocking query (its index moving), well before the query's wait runs out.
func TestWatcherFollowsRegistrations(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	w, _ := watch(t, fake, nil)
	waitUntil(t, "the first view", func() bool { return !w.LastUpdate().IsZero() })
	time.Sleep(50 * time.Millisecond) // the watcher is now holding a blocking query

	r := verifierReg(fake.Addr(), "127.0.0.1:7001")
	r.ID = "v1"
	reg := mustRegister(t, r)
	start := time.Now()
	mustPass(t, fake, "v1")
	waitUntil(t, "v1 appears", hasIDs(w, router.Verifier, "v1"))
	if d := time.Since(start); d >= w.cfg.Wait {
		t.Errorf("registration seen after %v, want within one blocking query (wait %v)", d, w.cfg.Wait)
	} else {
		t.Logf("registration seen after %v", d)
	}

	start = time.Now()
	if err := reg.Deregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "v1 leaves", hasIDs(w, router.Verifier))
	if d := time.Since(start); d >= w.cfg.Wait {
		t.Errorf("deregistration seen after %v, want within one blocking query (wait %v)", d, w.cfg.Wait)
	} else {
		t.Logf("deregistration seen after %v", d)
	}
	if w.Stale() {
		t.Error("Stale() = true with the agent up")
	}
}

func TestWatcherPassingOnly(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	w, _ := watch(t, fake, nil)
	for _, id := range []string{"v1", "v2"} {
		r := verifierReg(fake.Addr(), "127.0.0.1:7001")
		r.ID = id
		mustRegister(t, r)
	}
	mustPass(t, fake, "v1")
	waitUntil(t, "only passing v1", hasIDs(w, router.Verifier, "v1"))
	mustPass(t, fake, "v2")
	waitUntil(t, "v1 and v2", hasIDs(w, router.Verifier, "v1", "v2"))
	if err := fake.SetStatus("v1", consultest.Critical); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "only v2", hasIDs(w, router.Verifier, "v2"))
	if err := fake.SetStatus("v2", consultest.Warning); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "none (warning is not passing)", hasIDs(w, router.Verifier))
}

func TestWatcherMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		services map[router.Role]string // watched; both roles registered under these names
	}{
		{"a service per role", map[router.Role]string{router.Verifier: "specd-verifier", router.Draft: "specd-draft"}},
		{"one service, roles by tag", map[router.Role]string{router.Verifier: "specd", router.Draft: "specd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := consultest.New(t, consultest.Options{})
			w, _ := watch(t, fake, func(c *WatchConfig) { c.Services = tt.services })

			vr := verifierReg(fake.Addr(), "127.0.0.1:7001")
			vr.Service = tt.services[router.Verifier]
			v := mustRegister(t, vr)
			d := mustRegister(t, Registration{
				Addr: fake.Addr(), Service: tt.services[router.Draft], Role: router.Draft, Advertise: "localhost:7002",
				Model: "tiny", TokenizerHash: "9f86d081", Quant: "q4_0", Context: 2048, KVFree: 64,
				CheckInterval: time.Second,
			})
			mustPass(t, fake, v.ID())
			mustPass(t, fake, d.ID())

			wantV := router.Endpoint{
				ID: v.ID(), Address: "127.0.0.1:7001", Role: router.Verifier, Model: "llama-2-7b",
				TokenizerHash: "9f86d081", Quant: "q8_0", Arch: "llama", Context: 4096, Vocab: 32000, Parameters: 6738415616, KVFree: 512, Load: 1,
			}
			wantD := router.Endpoint{
				ID: d.ID(), Address: "localhost:7002", Role: router.Draft, Model: "tiny",
				TokenizerHash: "9f86d081", Quant: "q4_0", Context: 2048, KVFree: 64,
			}
			waitUntil(t, "both endpoints", func() bool {
				return slices.Equal(w.Endpoints(router.Verifier), []router.Endpoint{wantV}) &&
					slices.Equal(w.Endpoints(router.Draft), []router.Endpoint{wantD})
			})

			if err := v.Update(t.Context(), 99, 5); err != nil {
				t.Fatal(err)
			}
			wantV.KVFree, wantV.Load = 99, 5
			waitUntil(t, "fresh headroom", func() bool {
				return slices.Equal(w.Endpoints(router.Verifier), []router.Endpoint{wantV})
			})
			if got := w.Endpoints(router.Draft); !slices.Equal(got, []router.Endpoint{wantD}) {
				t.Errorf("Endpoints(draft) = %+v, want [%+v]", got, wantD)
			}
		})
	}
}

// rawClient registers services the way another (misbehaving) program might.
func rawClient(t *testing.T, fake *consultest.Server) *api.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: fake.Addr(), Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWatcherSkipsBadMeta(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	w, logs := watch(t, fake, nil)
	c := rawClient(t, fake)
	for id, ctxLen := range map[string]string{"good": "4096", "bad": "lots"} {
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: "specd-verifier", Tags: []string{"verifier"}, Address: "127.0.0.1", Port: 7001,
			Meta:  map[string]string{MetaContext: ctxLen},
			Check: &api.AgentServiceCheck{TTL: "30s", Status: api.HealthPassing},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the good instance", hasIDs(w, router.Verifier, "good"))
	waitUntil(t, "a log line for the bad one", func() bool { return logs.count("id=bad") > 0 })

	// Another update of the service rebuilds the view; the bad instance is not logged again.
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "good2", Name: "specd-verifier", Tags: []string{"verifier"}, Address: "127.0.0.1", Port: 7002,
		Check: &api.AgentServiceCheck{TTL: "30s", Status: api.HealthPassing},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the second good instance", hasIDs(w, router.Verifier, "good", "good2"))
	if n := logs.count("skipping instance"); n != 1 {
		t.Errorf("%d log lines for the bad instance, want 1", n)
	}
}

func TestWatcherKeepsLastGoodView(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	w, logs := watch(t, fake, nil)
	v := verifierReg(fake.Addr(), "127.0.0.1:7001")
	v.ID = "v1"
	reg := mustRegister(t, v)
	mustRegister(t, Registration{Addr: fake.Addr(), ID: "d1", Service: "specd-draft", Role: router.Draft, Advertise: "127.0.0.1:7002", CheckInterval: time.Second})
	mustPass(t, fake, "v1")
	mustPass(t, fake, "d1")
	waitUntil(t, "both roles", func() bool {
		return hasIDs(w, router.Verifier, "v1")() && hasIDs(w, router.Draft, "d1")()
	})

	fake.Stop()
	waitUntil(t, "stale", w.Stale)
	seen := w.LastUpdate()
	time.Sleep(500 * time.Millisecond) // several retries of both roles (backoff ≤ 100ms)
	if !hasIDs(w, router.Verifier, "v1")() || !hasIDs(w, router.Draft, "d1")() {
		t.Errorf("during the outage Endpoints = %v, %v; want the last good [v1], [d1]",
			idsOf(w.Endpoints(router.Verifier)), idsOf(w.Endpoints(router.Draft)))
	}
	if !w.LastUpdate().Equal(seen) {
		t.Errorf("LastUpdate moved from %v to %v while Consul was down", seen, w.LastUpdate())
	}
	if n := logs.count("watch failing"); n != 1 {
		t.Errorf("%d outage log lines, want 1", n)
	}

	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "fresh again", func() bool { return !w.Stale() })
	if !w.LastUpdate().After(seen) {
		t.Errorf("LastUpdate = %v after recovery, want after %v", w.LastUpdate(), seen)
	}
	// The line is written just after Stale clears.
	waitUntil(t, "the recovery log line", func() bool { return logs.count("watch recovered") > 0 })
	if n := logs.count("watch recovered"); n != 1 {
		t.Errorf("%d recovery log lines, want 1", n)
	}
	if err := reg.Deregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a change after recovery", hasIDs(w, router.Verifier))
}

func TestWatcherConsulDownAtStart(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	fake.Stop()
	w, _ := watch(t, fake, nil)
	waitUntil(t, "stale", w.Stale)
	if eps := w.Endpoints(router.Verifier); eps != nil {
		t.Errorf("Endpoints before any answer = %v, want nil", eps)
	}
	if !w.LastUpdate().IsZero() {
		t.Errorf("LastUpdate before any answer = %v, want zero", w.LastUpdate())
	}
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a first answer", func() bool { return !w.Stale() && !w.LastUpdate().IsZero() })
	if eps := w.Endpoints(router.Verifier); eps == nil || len(eps) != 0 {
		t.Errorf("Endpoints after an empty answer = %#v, want empty, not nil", eps)
	}
}

func TestWatcherOnChange(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	var mu sync.Mutex
	calls := 0
	cfg := WatchConfig{Addr: fake.Addr(), Services: map[router.Role]string{router.Verifier: "specd-verifier"},
		Wait: time.Second, MaxBackoff: 50 * time.Millisecond, MinInterval: 10 * time.Millisecond}
	w, err := NewWatcher(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.OnChange = func() { mu.Lock(); calls++; mu.Unlock() } // set before Run
	count := func() int { mu.Lock(); defer mu.Unlock(); return calls }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitUntil(t, "the first view", func() bool { return count() == 1 }) // empty, but seen
	r := verifierReg(fake.Addr(), "127.0.0.1:7001")
	r.ID = "v1"
	mustRegister(t, r)
	mustPass(t, fake, "v1")
	waitUntil(t, "a change for v1", func() bool { return count() == 2 })
	fake.Stop()
	waitUntil(t, "a change for staleness", func() bool { return count() == 3 })
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a change for recovery", func() bool { return count() == 4 })
	time.Sleep(100 * time.Millisecond)
	if n := count(); n != 4 {
		t.Errorf("OnChange called %d times, want 4 (first view, v1, stale, recovered)", n)
	}
}

func TestWatcherRun(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	w, err := NewWatcher(WatchConfig{Addr: fake.Addr(), Services: map[router.Role]string{router.Draft: "d"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitUntil(t, "running", func() bool { return !w.LastUpdate().IsZero() })
	if err := w.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run() = %v, want ErrAlreadyRunning", err)
	}
	cancel() // while a blocking query (default 5m wait) is held
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if eps := w.Endpoints(router.Verifier); eps != nil {
		t.Errorf("Endpoints(unwatched role) = %v, want nil", eps)
	}
}

func TestNewWatcherInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  WatchConfig
	}{
		{"no address", WatchConfig{Services: map[router.Role]string{router.Draft: "d"}}},
		{"no services", WatchConfig{Addr: "127.0.0.1:8500"}},
		{"unknown role", WatchConfig{Addr: "127.0.0.1:8500", Services: map[router.Role]string{"cache": "c"}}},
		{"empty name", WatchConfig{Addr: "127.0.0.1:8500", Services: map[router.Role]string{router.Draft: ""}}},
		{"wait above 10m", WatchConfig{Addr: "127.0.0.1:8500", Services: map[router.Role]string{router.Draft: "d"}, Wait: 11 * time.Minute}},
		{"negative backoff", WatchConfig{Addr: "127.0.0.1:8500", Services: map[router.Role]string{router.Draft: "d"}, MaxBackoff: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewWatcher(tt.cfg, nil); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewWatcher() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestWatcherGRPCCheck runs the whole loop for real: a grpc.health.v1 server, an
// instance registered with its gRPC check, the fake agent probing it, and the watcher.
func TestWatcherGRPCCheck(t *testing.T) {
	fake := consultest.New(t, consultest.Options{DialChecks: true})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	defer func() { gs.Stop(); <-served }()

	w, _ := watch(t, fake, nil)
	r := verifierReg(fake.Addr(), lis.Addr().String())
	r.CheckInterval = time.Second
	reg := mustRegister(t, r)
	waitUntil(t, "the probe to see NOT_SERVING", func() bool {
		s, _ := fake.Service(reg.ID())
		return len(s.Checks) == 1 && strings.Contains(s.Checks[0].Output, "NOT_SERVING")
	})
	if eps := w.Endpoints(router.Verifier); len(eps) != 0 {
		t.Errorf("Endpoints while NOT_SERVING = %v, want none", idsOf(eps))
	}

	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	waitUntil(t, "the instance to appear once SERVING", hasIDs(w, router.Verifier, reg.ID()))
	if got := w.Endpoints(router.Verifier)[0].Address; got != lis.Addr().String() {
		t.Errorf("endpoint address = %s, want %s", got, lis.Addr())
	}

	hs.Shutdown() // every service NOT_SERVING, as on graceful stop
	waitUntil(t, "the instance to leave", hasIDs(w, router.Verifier))
	if err := reg.Deregister(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherIndexRules checks the watch against Consul's rules for blocking queries
// (https://developer.hashicorp.com/consul/api-docs/features/blocking, "Implementation
// Details"), on an agent that answers as scripted: the index of the last answer is the
// next query's; an index that went backwards resets the watch to a query that does not
// block; and an answer without X-Consul-Index (a proxy that drops it) never makes the
// next query block on index 0. Each answer replaces the view.
func TestWatcherIndexRules(t *testing.T) {
	// script[i] is the X-Consul-Index of answer i ("" leaves the header out) and the
	// port of the one instance it lists; want[i] is the index query i must carry
	// ("": none, a query that answers at once).
	script := []struct {
		index string
		port  int
	}{{"10", 1}, {"12", 2}, {"5", 3}, {"7", 4}, {"", 5}, {"", 6}, {"20", 7}}
	want := []string{"", "10", "12", "", "7", "", "1", "20"}
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/health/service/specd-draft" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		n := len(got)
		got = append(got, r.URL.Query().Get("index"))
		mu.Unlock()
		if n >= len(script) {
			<-r.Context().Done() // block, as Consul does with nothing new
			return
		}
		if s := script[n].index; s != "" {
			w.Header().Set("X-Consul-Index", s)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `[{"Node":{"Node":"n","Address":"127.0.0.1"},"Service":{"ID":"d%d","Service":"specd-draft","Port":%d,"Tags":["draft"]}}]`,
			script[n].port, script[n].port)
	}))
	defer srv.Close()
	w, err := NewWatcher(WatchConfig{Addr: srv.URL, Services: map[router.Role]string{router.Draft: "specd-draft"}, Wait: time.Second, MinInterval: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		srv.CloseClientConnections()
	}()
	waitUntil(t, "every scripted answer", hasIDs(w, router.Draft, fmt.Sprintf("d%d", len(script))))
	waitUntil(t, "the query after the last answer", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) > len(script) })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got[:len(want)], want) {
		t.Errorf("index of each query = %q, want %q", got[:len(want)], want)
	}
}
