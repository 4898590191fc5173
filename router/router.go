// Package router is the routing core of specd: it knows the verifier and draft
// endpoints (through a Discovery), picks a verifier for each request — by session
// affinity, then load — and a draft compatible with it, and relays a generation,
// resuming it on another verifier when one fails mid-stream.
//
// It declares the small interfaces it needs (Discovery, Backend) and knows nothing of
// gRPC or Consul; services/ adapts both.
package router

import (
	"errors"
	"hash/fnv"
	"slices"
	"sort"
	"sync"
)

// Role is what an endpoint serves.
type Role string

// Roles.
const (
	Verifier Role = "verifier"
	Draft    Role = "draft"
	Front    Role = "router" // the router itself, registered so that clients in a mesh find it
)

// Endpoint is one service instance.
type Endpoint struct {
	ID            string // unique per instance (Consul service ID, or the address)
	Address       string // host:port of its gRPC server
	Role          Role
	Model         string
	TokenizerHash string // a draft pairs only with verifiers of the same hash
	Quant         string // ggml's name of the dominant weight type: "q8_0", "f16"…
	Arch          string // model architecture, e.g. "llama"
	Context       int
	Vocab         int    // tokens in the vocabulary
	Parameters    uint64 // weights of the model
	KVFree        uint64 // KV blocks free when last reported
	Load          int    // sessions running or queued when last reported
}

// Discovery reports the endpoints of a role as currently known. Implementations must
// be safe for concurrent use and must not block on the network: a watcher refreshes its
// view in the background and keeps the last good one while its source is unreachable.
type Discovery interface {
	Endpoints(role Role) []Endpoint
}

// Static is a fixed Discovery (the single-machine default and the flag-configured mode).
type Static struct {
	mu  sync.RWMutex
	eps map[Role][]Endpoint
}

var _ Discovery = (*Static)(nil)

// NewStatic returns a static discovery over eps.
func NewStatic(eps ...Endpoint) *Static {
	s := &Static{eps: map[Role][]Endpoint{}}
	s.Set(eps...)
	return s
}

// Set replaces the endpoints (used when static endpoints report their metadata).
func (s *Static) Set(eps ...Endpoint) {
	m := map[Role][]Endpoint{}
	for _, e := range eps {
		if e.ID == "" {
			e.ID = e.Address
		}
		m[e.Role] = append(m[e.Role], e)
	}
	s.mu.Lock()
	s.eps = m
	s.mu.Unlock()
}

// Endpoints implements Discovery.
func (s *Static) Endpoints(role Role) []Endpoint {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.eps[role])
}

// ErrNoVerifier is returned by Pick when no verifier endpoint is usable.
var ErrNoVerifier = errors.New("no verifier available")

// Health says whether an endpoint may be used now (for example, its circuit breaker is
// not open). A nil Health allows every endpoint.
type Health func(Endpoint) bool

// Pick chooses a verifier for a request and a draft compatible with it (nil when none
// is). key is the affinity key (a client session key, or the head of the prompt): the
// same key maps to the same verifier while it is available — rendezvous hashing, so
// endpoints joining or leaving move only their share of keys — unless that verifier is
// much busier than the least loaded one. Endpoints in exclude are skipped.
func Pick(d Discovery, key string, exclude map[string]bool, ok Health) (Endpoint, *Endpoint, error) {
	var vs []Endpoint
	for _, e := range d.Endpoints(Verifier) {
		if !exclude[e.ID] && (ok == nil || ok(e)) {
			vs = append(vs, e)
		}
	}
	if len(vs) == 0 {
		return Endpoint{}, nil, ErrNoVerifier
	}
	sort.Slice(vs, func(i, j int) bool { return score(key, vs[i].ID) > score(key, vs[j].ID) })
	minLoad := vs[0].Load
	for _, e := range vs {
		minLoad = min(minLoad, e.Load)
	}
	v := vs[0]
	const slack = 2 // tolerated extra sessions on the affine verifier
	if v.Load > minLoad+slack {
		for _, e := range vs {
			if e.Load == minLoad {
				v = e
				break
			}
		}
	}
	var best *Endpoint
	for _, e := range d.Endpoints(Draft) {
		if exclude[e.ID] || (ok != nil && !ok(e)) {
			continue
		}
		if v.TokenizerHash == "" || e.TokenizerHash != v.TokenizerHash {
			continue // never silently combine incompatible models
		}
		if best == nil || e.Load < best.Load || (e.Load == best.Load && score(key, e.ID) > score(key, best.ID)) {
			c := e
			best = &c
		}
	}
	return v, best, nil
}

// score is the rendezvous hash of (key, endpoint).
func score(key, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return h.Sum64()
}
