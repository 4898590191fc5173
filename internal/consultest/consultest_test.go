package consultest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specd-dev/specd/internal/consultest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client returns the real Consul client pointed at s, closing its idle connections when
// the test ends.
func client(t *testing.T, s *consultest.Server, token string) *api.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: s.Addr(), Scheme: "http", Token: token, HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func register(t *testing.T, c *api.Client, reg *api.AgentServiceRegistration) {
	t.Helper()
	if err := c.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{ReplaceExistingChecks: true}); err != nil {
		t.Fatalf("register %s: %v", reg.ID, err)
	}
}

func grpcReg(id, name, addr string, tags ...string) *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{
		ID: id, Name: name, Tags: tags, Address: "127.0.0.1", Port: 7001,
		Meta:  map[string]string{"model": "m"},
		Check: &api.AgentServiceCheck{GRPC: addr, Interval: "1s", DeregisterCriticalServiceAfter: "1m"},
	}
}

func ids(entries []*api.ServiceEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Service.ID)
	}
	return out
}

func TestRegisterAndHealth(t *testing.T) {
	s := consultest.New(t, consultest.Options{})
	c := client(t, s, "")
	register(t, c, grpcReg("v1", "specd-verifier", "127.0.0.1:7001", "verifier", "Zone-A"))
	register(t, c, grpcReg("v2", "specd-verifier", "127.0.0.1:7002", "verifier"))
	register(t, c, grpcReg("d1", "specd-draft", "127.0.0.1:7003", "draft"))

	got, ok := s.Service("v1")
	if !ok {
		t.Fatal("Service(v1) not found")
	}
	want := consultest.Check{
		ID: "service:v1", Name: "Service 'specd-verifier' check", Status: consultest.Critical,
		GRPC: "127.0.0.1:7001", Interval: time.Second, DeregisterCriticalServiceAfter: time.Minute,
	}
	if len(got.Checks) != 1 || got.Checks[0] != want {
		t.Errorf("Service(v1).Checks = %+v, want [%+v]", got.Checks, want)
	}

	h := c.Health()
	tests := []struct {
		name    string
		tag     string
		passing bool
		setup   func()
		want    []string
	}{
		{name: "all", want: []string{"v1", "v2"}},
		{name: "passing, all critical", passing: true, want: nil},
		{name: "passing", passing: true, setup: func() { mustSet(t, s, "v2", consultest.Passing) }, want: []string{"v2"}},
		{name: "warning is not passing", passing: true, setup: func() { mustSet(t, s, "v1", consultest.Warning) }, want: []string{"v2"}},
		{name: "tag ignores case", tag: "zone-a", want: []string{"v1"}},
		{name: "unknown tag", tag: "nope", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			entries, meta, err := h.Service("specd-verifier", tt.tag, tt.passing, nil)
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(entries); !slices.Equal(g, tt.want) {
				t.Errorf("Health.Service(tag %q, passing %v) = %v, want %v", tt.tag, tt.passing, g, tt.want)
			}
			if meta.LastIndex == 0 || !meta.KnownLeader {
				t.Errorf("QueryMeta = %+v, want a non-zero index and a known leader", meta)
			}
		})
	}

	entries, _, err := h.Service("specd-verifier", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := entries[0]
	if e.Node.Node != "consultest" || e.Node.Address != s.NodeAddress() || e.Service.Meta["model"] != "m" || e.Service.Port != 7001 {
		t.Errorf("entry = node %+v service %+v", e.Node, e.Service)
	}
	if len(e.Checks) != 2 || e.Checks[0].CheckID != "serfHealth" || e.Checks[1].Definition.GRPC != "127.0.0.1:7001" ||
		e.Checks[1].Definition.IntervalDuration != time.Second {
		t.Errorf("checks = %+v", e.Checks)
	}
}

func mustSet(t *testing.T, s *consultest.Server, id, status string) {
	t.Helper()
	if err := s.SetStatus(id, status); err != nil {
		t.Fatal(err)
	}
}

func TestReRegisterKeepsStatusAndIndex(t *testing.T) {
	s := consultest.New(t, consultest.Options{})
	c := client(t, s, "")
	reg := grpcReg("v1", "svc", "127.0.0.1:7001", "verifier")
	register(t, c, reg)
	mustSet(t, s, "v1", consultest.Passing)
	_, m1, err := c.Health().Service("svc", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}

	register(t, c, reg) // identical: no index move
	entries, m2, err := c.Health().Service("svc", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m2.LastIndex != m1.LastIndex || len(entries) != 1 {
		t.Errorf("after an identical re-registration: index %d → %d, %d passing; want unchanged, 1", m1.LastIndex, m2.LastIndex, len(entries))
	}

	reg.Meta = map[string]string{"model": "m", "load": "3"}
	register(t, c, reg) // changed meta: index moves, check stays passing
	entries, m3, err := c.Health().Service("svc", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m3.LastIndex <= m2.LastIndex || len(entries) != 1 || entries[0].Service.Meta["load"] != "3" {
		t.Errorf("after a meta change: index %d → %d, entries %v; want a larger index and the passing instance with load 3", m2.LastIndex, m3.LastIndex, ids(entries))
	}
}

func TestReplaceExistingChecks(t *testing.T) {
	s := consultest.New(t, consultest.Options{})
	c := client(t, s, "")
	two := &api.AgentServiceRegistration{ID: "v1", Name: "svc", Checks: api.AgentServiceChecks{
		{TTL: "10s"}, {GRPC: "127.0.0.1:1", Interval: "5s"},
	}}
	if err := c.Agent().ServiceRegister(two); err != nil {
		t.Fatal(err)
	}
	one := &api.AgentServiceRegistration{ID: "v1", Name: "svc", Check: &api.AgentServiceCheck{CheckID: "mine", TTL: "10s"}}
	checkIDs := func() []string {
		svc, _ := s.Service("v1")
		var out []string
		for _, c := range svc.Checks {
			out = append(out, c.ID)
		}
		slices.Sort(out)
		return out
	}
	if got, want := checkIDs(), []string{"service:v1:1", "service:v1:2"}; !slices.Equal(got, want) {
		t.Errorf("checks = %v, want %v", got, want)
	}
	if err := c.Agent().ServiceRegister(one); err != nil {
		t.Fatal(err)
	}
	if got, want := checkIDs(), []string{"mine", "service:v1:1", "service:v1:2"}; !slices.Equal(got, want) {
		t.Errorf("after re-registering without replace-existing-checks: checks = %v, want %v", got, want)
	}
	register(t, c, one)
	if got, want := checkIDs(), []string{"mine"}; !slices.Equal(got, want) {
		t.Errorf("after re-registering with replace-existing-checks: checks = %v, want %v", got, want)
	}
}

func TestBlockingQuery(t *testing.T) {
	s := consultest.New(t, consultest.Options{})
	c := client(t, s, "")
	register(t, c, grpcReg("v1", "svc", "127.0.0.1:7001"))
	_, meta, err := c.Health().Service("svc", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Without a change the query is held for the wait and returns the same index.
	_, m, err := c.Health().Service("svc", "", false, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if m.LastIndex != meta.LastIndex {
		t.Errorf("timed-out blocking query index = %d, want %d", m.LastIndex, meta.LastIndex)
	}

	// A change releases a held query.
	type result struct {
		entries []*api.ServiceEntry
		meta    *api.QueryMeta
		err     error
	}
	done := make(chan result, 1)
	go func() {
		e, m, err := c.Health().Service("svc", "", false, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- result{e, m, err}
	}()
	register(t, c, grpcReg("v2", "svc", "127.0.0.1:7002"))
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.meta.LastIndex <= meta.LastIndex || !slices.Equal(ids(r.entries), []string{"v1", "v2"}) {
		t.Errorf("released query = index %d, %v; want > %d, [v1 v2]", r.meta.LastIndex, ids(r.entries), meta.LastIndex)
	}

	// Changes to another service do not release it.
	_, m, err = c.Health().Service("svc", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		e, m, err := c.Health().Service("svc", "", false, &api.QueryOptions{WaitIndex: m.LastIndex, WaitTime: 300 * time.Millisecond})
		done <- result{e, m, err}
	}()
	register(t, c, grpcReg("x1", "other", "127.0.0.1:7009"))
	if r := <-done; r.err != nil || r.meta.LastIndex != m.LastIndex {
		t.Errorf("query on svc after a change to other = index %v, err %v; want %d", r.meta, r.err, m.LastIndex)
	}
}

func TestRawHeaders(t *testing.T) {
	s := consultest.New(t, consultest.Options{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + s.Addr() + "/v1/health/service/none?passing")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, h := range []string{"X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}
	if got := strings.TrimSpace(string(body)); got != "[]" {
		t.Errorf("body for an unknown service = %s, want []", got)
	}
}

func TestErrors(t *testing.T) {
	s := consultest.New(t, consultest.Options{Token: "secret"})
	good := client(t, s, "secret")
	register(t, good, grpcReg("v1", "svc", "127.0.0.1:7001"))

	tests := []struct {
		name string
		call func(c *api.Client) error
		c    *api.Client
		code int
		body string
	}{
		{"missing name", func(c *api.Client) error {
			return c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "x"})
		}, good, 400, "Missing service name"},
		{"any address", func(c *api.Client) error {
			return c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "x", Address: "0.0.0.0"})
		}, good, 400, "Invalid service address"},
		{"meta key with a dot", func(c *api.Client) error {
			return c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "x", Meta: map[string]string{"tokenizer.hash": "1"}})
		}, good, 400, "Invalid Service Meta"},
		{"reserved meta prefix", func(c *api.Client) error {
			return c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "x", Meta: map[string]string{"consul-x": "1"}})
		}, good, 400, "reserved for internal use"},
		{"grpc check without interval", func(c *api.Client) error {
			return c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "x", Check: &api.AgentServiceCheck{GRPC: "127.0.0.1:1"}})
		}, good, 400, "Interval must be > 0"},
		{"bad interval", func(c *api.Client) error {
			return c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "x", Check: &api.AgentServiceCheck{GRPC: "127.0.0.1:1", Interval: "soon"}})
		}, good, 400, "Request decode failed"},
		{"unknown service ID", func(c *api.Client) error { return c.Agent().ServiceDeregister("svc") }, good, 404, "Unknown service ID"},
		{"other datacenter", func(c *api.Client) error {
			_, _, err := c.Health().Service("svc", "", false, &api.QueryOptions{Datacenter: "dc9"})
			return err
		}, good, 500, "No path to datacenter"},
		{"no token", func(c *api.Client) error {
			_, _, err := c.Health().Service("svc", "", false, nil)
			return err
		}, client(t, s, ""), 403, "Permission denied"},
		{"wrong token", func(c *api.Client) error { return c.Agent().ServiceDeregister("v1") }, client(t, s, "guess"), 403, "ACL not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(tt.c)
			var se api.StatusError
			if !errors.As(err, &se) || se.Code != tt.code || !strings.Contains(se.Body, tt.body) {
				t.Errorf("error = %v, want status %d with %q", err, tt.code, tt.body)
			}
		})
	}
	if _, ok := s.Service("v1"); !ok {
		t.Error("v1 was deregistered with a wrong token")
	}
}

func TestStopStart(t *testing.T) {
	s := consultest.New(t, consultest.Options{})
	c := client(t, s, "")
	register(t, c, grpcReg("v1", "svc", "127.0.0.1:7001"))
	_, meta, err := c.Health().Service("svc", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}

	held := make(chan error, 1)
	go func() {
		_, _, err := c.Health().Service("svc", "", false, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		held <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the query reach the server
	s.Stop()
	if err := <-held; err == nil {
		t.Error("a blocking query held across Stop succeeded, want an error")
	}
	if _, _, err := c.Health().Service("svc", "", false, nil); err == nil {
		t.Error("query while stopped succeeded, want an error")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	entries, _, err := c.Health().Service("svc", "", false, nil)
	if err != nil || !slices.Equal(ids(entries), []string{"v1"}) {
		t.Errorf("after Start: %v, %v; want [v1]", ids(entries), err)
	}
}

// TestDialChecks runs a real grpc.health.v1 server and lets the fake probe it.
func TestDialChecks(t *testing.T) {
	s := consultest.New(t, consultest.Options{DialChecks: true})
	c := client(t, s, "")

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("specd.v1.Generation", healthpb.HealthCheckResponse_SERVING)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	stopGRPC := func() { gs.Stop(); <-served }
	defer func() {
		select {
		case <-served:
		default:
			stopGRPC()
		}
	}()

	addr := lis.Addr().String()
	register(t, c, grpcReg("whole", "svc", addr))
	register(t, c, grpcReg("named", "svc", addr+"/specd.v1.Generation"))

	waitStatus(t, s, "named", consultest.Passing)
	waitStatus(t, s, "whole", consultest.Critical)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	waitStatus(t, s, "whole", consultest.Passing)
	stopGRPC()
	waitStatus(t, s, "whole", consultest.Critical)
}

func waitStatus(t *testing.T, s *consultest.Server, id, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		svc, _ := s.Service(id)
		if len(svc.Checks) == 1 && svc.Checks[0].Status == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("check of %s = %+v, want %s", id, svc.Checks, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
