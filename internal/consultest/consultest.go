// Package consultest is test support: an in-process fake of the small part of Consul's
// HTTP API that specd uses, good enough for the real github.com/hashicorp/consul/api
// client to run against it on loopback. It is imported only by tests; no binary links
// it. It exists because no Consul agent can be installed where specd's tests run.
//
// It models one agent that is also its own catalog (a single node, "consultest" at
// 127.0.0.1, datacenter "dc1" unless Options say otherwise) and serves:
//
//	PUT /v1/agent/service/register           JSON service definition: ID, Name, Tags, Meta,
//	                                         Address, Port, Check, Checks; ?replace-existing-checks
//	PUT /v1/agent/service/deregister/:id     404 for an unknown ID
//	GET /v1/health/service/:name             ?passing, ?tag (repeatable), ?dc, ?stale,
//	                                         blocking via ?index and ?wait
//
// Every response carries X-Consul-Index, X-Consul-KnownLeader and X-Consul-LastContact
// (the client refuses a response without LastContact). Errors are plain-text bodies with
// Consul's status codes and, where specd could meet them, Consul's wording: 400 for a
// missing name, an any-address, invalid Meta or an invalid check; 404 for an unknown
// service ID; 403 for a wrong or missing token (Options.Token); 500 "No path to
// datacenter" for another dc.
//
// What it keeps from the real agent: the default service ID is the name; a check
// registered with a service is "service:<id>" (with ":N" suffixes when there are
// several), named "Service '<name>' check", and starts critical unless it gives a
// Status; re-registering a service keeps the status of a check with the same ID, so
// periodic re-registration does not make it flap; ?passing drops an instance if any of
// its checks (the node's serfHealth included) is not passing; tag filtering is
// case-insensitive and needs every tag given; a write that changes nothing does not move
// the index; the index reported for a name is the last one that touched an instance of
// that name (the catalog's index when there is none); a blocking query returns once that
// index exceeds ?index, or after ?wait (default 5m, capped at 10m) plus up to wait/16 of
// jitter.
//
// Health: by default nothing is probed and tests set a service's check status with
// SetStatus. With Options.DialChecks each gRPC check is run for real: the fake dials the
// registered address and calls grpc.health.v1.Health/Check at the check's interval
// (Consul's one-second floor applies), passing on SERVING and critical otherwise.
//
// Not modelled: ACL policies (a single shared token or none), namespaces, partitions,
// peering, Connect and sidecars, multiple nodes, anti-entropy delays (a registration is
// visible at once), hash-based blocking, the agent endpoints other than the two above
// (GET /v1/agent/self is not served: the client does not need it for these calls),
// snake_case aliases in the registration body, HTTP/TCP/UDP/script/TTL checks (accepted
// and validated, never run), SuccessBeforePassing/FailuresBeforeCritical, maintenance
// mode, the random stagger before a check's first run (the fake probes at once), and
// DeregisterCriticalServiceAfter (stored, never enforced).
package consultest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// Options configure a Server. The zero value is a plain agent with no ACLs.
type Options struct {
	Datacenter  string // "dc1" when empty
	NodeName    string // "consultest" when empty
	NodeAddress string // "127.0.0.1" when empty; returned as the node's address
	// Token, when set, must accompany every request (X-Consul-Token header, a Bearer
	// Authorization header, or ?token=); anything else gets 403.
	Token string
	// DialChecks runs registered gRPC checks against their target instead of waiting for
	// SetStatus.
	DialChecks bool
	// TLS is the agent's own TLS configuration (Consul's tls stanza: its CA and
	// certificate), used by a gRPC check with GRPCUseTLS, whose TLSServerName and
	// TLSSkipVerify apply on top. nil: the system's roots and no client certificate.
	TLS *tls.Config
}

// Check statuses.
const (
	Passing  = "passing"
	Warning  = "warning"
	Critical = "critical"
)

// Service is a registered service as the fake holds it (a copy; changing it changes
// nothing).
type Service struct {
	ID, Name, Address string
	Port              int
	Tags              []string
	Meta              map[string]string
	Checks            []Check
}

// Check is one check of a registered service.
type Check struct {
	ID, Name, Status, Output string
	GRPC                     string // host:port[/service]; "" for other check types
	GRPCUseTLS               bool
	TLSServerName            string
	TLSSkipVerify            bool
	Interval, Timeout, TTL   time.Duration
	// DeregisterCriticalServiceAfter is recorded as registered; the fake never reaps.
	DeregisterCriticalServiceAfter time.Duration
}

// Server is a fake Consul agent. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	addr string // host:port, kept across Stop and Start

	mu        sync.Mutex
	index     uint64            // the catalog's raft-like index; never 0
	nameIndex map[string]uint64 // last index that touched an instance of a name
	services  map[string]*service
	changed   chan struct{} // closed and replaced whenever index moves
	closed    bool

	run *run // the HTTP server while started; nil while stopped

	probes sync.WaitGroup // DialChecks runners
}

// run is one start-to-stop life of the HTTP server.
type run struct {
	http     *http.Server
	stopping chan struct{} // closed by Stop to abort held requests
	stopped  bool          // guarded by Server.mu; no request is admitted once set
	inflight sync.WaitGroup
	served   chan struct{} // closed when Serve returns
}

type service struct {
	Service
	checks      []*check
	createIndex uint64
	modifyIndex uint64
}

type check struct {
	Check
	typ         string
	createIndex uint64
	modifyIndex uint64
	stop        context.CancelFunc // DialChecks runner; nil when none
}

// New starts a fake agent on a loopback port and closes it when the test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := NewServer(opts)
	if err != nil {
		tb.Fatalf("consultest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// NewServer starts a fake agent on a loopback port. Close it when done.
func NewServer(opts Options) (*Server, error) {
	if opts.Datacenter == "" {
		opts.Datacenter = "dc1"
	}
	if opts.NodeName == "" {
		opts.NodeName = "consultest"
	}
	if opts.NodeAddress == "" {
		opts.NodeAddress = "127.0.0.1"
	}
	s := &Server{
		opts:      opts,
		index:     1,
		nameIndex: map[string]uint64{},
		services:  map[string]*service{},
		changed:   make(chan struct{}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s, nil
}

// Addr is the agent's HTTP address (host:port), the same across Stop and Start.
func (s *Server) Addr() string { return s.addr }

// Datacenter is the agent's datacenter.
func (s *Server) Datacenter() string { return s.opts.Datacenter }

// NodeAddress is the address of the fake's one node.
func (s *Server) NodeAddress() string { return s.opts.NodeAddress }

// Stop simulates the agent going away: the listener closes, open connections are cut,
// and held blocking queries are aborted without a response. State is kept. Stop on a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	r := s.run
	s.run = nil
	if r != nil {
		r.stopped = true
	}
	s.mu.Unlock()
	if r == nil {
		return
	}
	close(r.stopping)
	r.http.Close()
	<-r.served
	r.inflight.Wait()
}

// Start brings a stopped agent back on the same address with the state it had. It fails
// if the port was taken meanwhile; on a running server it does nothing.
func (s *Server) Start() error {
	s.mu.Lock()
	running, closed := s.run != nil, s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("consultest: server closed")
	}
	if running {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("consultest: listen again on %s: %w", s.addr, err)
	}
	s.serve(ln)
	return nil
}

// Close stops the agent and its check runners for good.
func (s *Server) Close() {
	s.Stop()
	s.mu.Lock()
	s.closed = true
	for _, svc := range s.services {
		stopProbes(svc)
	}
	s.mu.Unlock()
	s.probes.Wait()
}

func (s *Server) serve(ln net.Listener) {
	r := &run{stopping: make(chan struct{}), served: make(chan struct{})}
	r.http = &http.Server{Handler: s.handler(r), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.run = r
	s.mu.Unlock()
	go func() {
		defer close(r.served)
		_ = r.http.Serve(ln) // ErrServerClosed after Stop
	}()
}

// admit registers a request with its run, or reports that the run is stopping.
func (s *Server) admit(r *run) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.stopped {
		return false
	}
	r.inflight.Add(1)
	return true
}

// SetStatus sets the status of every check of a service ("passing", "warning" or
// "critical"), as a check run would. With DialChecks the next probe overrides it.
func (s *Server) SetStatus(serviceID, status string) error {
	if !validStatus(status) {
		return fmt.Errorf("consultest: invalid status %q", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.services[serviceID]
	if svc == nil {
		return fmt.Errorf("consultest: unknown service ID %q", serviceID)
	}
	for _, c := range svc.checks {
		s.setCheckLocked(svc, c, status, "set by test")
	}
	return nil
}

// Service returns a copy of a registered service.
func (s *Server) Service(id string) (Service, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.services[id]
	if svc == nil {
		return Service{}, false
	}
	out := svc.Service
	out.Tags = slices.Clone(svc.Tags)
	out.Meta = maps.Clone(svc.Meta)
	out.Checks = nil
	for _, c := range svc.checks {
		out.Checks = append(out.Checks, c.Check)
	}
	return out, true
}

// setCheckLocked records a check result, moving the index only on a change of status.
func (s *Server) setCheckLocked(svc *service, c *check, status, output string) {
	c.Output = output
	if c.Status == status {
		return
	}
	c.Status = status
	idx := s.bumpLocked(svc.Name)
	c.modifyIndex = idx
}

// bumpLocked advances the index for a write that touched an instance of name and wakes
// every held query.
func (s *Server) bumpLocked(name string) uint64 {
	s.index++
	s.nameIndex[name] = s.index
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

// queryIndexLocked is the X-Consul-Index of a health query for name.
func (s *Server) queryIndexLocked(name string) uint64 {
	for _, svc := range s.services {
		if svc.Name == name {
			return s.nameIndex[name]
		}
	}
	return s.index
}

func stopProbes(svc *service) {
	for _, c := range svc.checks {
		if c.stop != nil {
			c.stop()
			c.stop = nil
		}
	}
}

func validStatus(s string) bool { return s == Passing || s == Warning || s == Critical }
