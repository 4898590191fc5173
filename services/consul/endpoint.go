package consul

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/specd-dev/specd/router"
)

// This file is the watcher's deterministic core: no goroutines, clocks or logging.

// endpoint turns one health entry into an Endpoint of role. The address is the
// service's, or the node's when the service has none. Missing numeric metadata reads as
// 0 (unknown); present but malformed metadata is an error, and the caller skips the
// instance.
func endpoint(role router.Role, e *api.ServiceEntry) (router.Endpoint, error) {
	if e == nil || e.Service == nil {
		return router.Endpoint{}, errors.New("entry has no service")
	}
	s := e.Service
	if s.ID == "" {
		return router.Endpoint{}, errors.New("service has no ID")
	}
	host := s.Address
	if host == "" && e.Node != nil {
		host = e.Node.Address
	}
	if host == "" {
		return router.Endpoint{}, errors.New("neither the service nor its node has an address")
	}
	port := s.DefaultPort()
	if port < 1 || port > 65535 {
		return router.Endpoint{}, fmt.Errorf("port %d is not in 1-65535", port)
	}
	ctxLen, err := metaUint(s.Meta, MetaContext, 1<<31-1)
	if err != nil {
		return router.Endpoint{}, err
	}
	kvFree, err := metaUint(s.Meta, MetaKVFree, 1<<64-1)
	if err != nil {
		return router.Endpoint{}, err
	}
	load, err := metaUint(s.Meta, MetaLoad, 1<<31-1)
	if err != nil {
		return router.Endpoint{}, err
	}
	vocab, err := metaUint(s.Meta, MetaVocab, 1<<31-1)
	if err != nil {
		return router.Endpoint{}, err
	}
	params, err := metaUint(s.Meta, MetaParameters, 1<<64-1)
	if err != nil {
		return router.Endpoint{}, err
	}
	return router.Endpoint{
		ID:            s.ID,
		Address:       net.JoinHostPort(host, strconv.Itoa(port)),
		Role:          role,
		Model:         s.Meta[MetaModel],
		TokenizerHash: s.Meta[MetaTokenizerHash],
		Quant:         s.Meta[MetaQuant],
		Arch:          s.Meta[MetaArch],
		Context:       int(ctxLen),
		Vocab:         int(vocab),
		Parameters:    params,
		KVFree:        kvFree,
		Load:          int(load),
	}, nil
}

// checkTransport refuses an instance whose meta "tls" disagrees with how this side
// dials; one without the meta (registered by an agent's own definition) is kept.
func checkTransport(meta map[string]string, tls bool) error {
	v, ok := meta[MetaTLS]
	if !ok {
		return nil
	}
	serves, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("meta %s=%q is not true or false", MetaTLS, v)
	}
	if serves != tls {
		return fmt.Errorf("meta %s=%v, but this service dials with TLS %v: it could not connect", MetaTLS, serves, tls)
	}
	return nil
}

// metaUint reads a base-10 unsigned number of at most limit; a missing key is 0.
func metaUint(meta map[string]string, key string, limit uint64) (uint64, error) {
	v, ok := meta[key]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > limit {
		return 0, fmt.Errorf("meta %s=%q is not a number in 0-%d", key, v, limit)
	}
	return n, nil
}

// badEntry is an instance left out of a view, and why.
type badEntry struct {
	ID  string
	Err error
}

// view turns a health response into the endpoints of role, sorted by ID, and the
// entries it skipped. A service ID is unique per node only; when two nodes carry the
// same one, those endpoints are named "node/id" so that IDs stay unique (an entry whose
// ID is taken even so is skipped). With tls set,
// an instance whose meta "tls" says the other transport is skipped.
func view(role router.Role, entries []*api.ServiceEntry, tls *bool) ([]router.Endpoint, []badEntry) {
	type found struct {
		ep   router.Endpoint
		node string
	}
	var eps []found
	var bad []badEntry
	for _, e := range entries {
		ep, err := endpoint(role, e)
		if err == nil && tls != nil {
			err = checkTransport(e.Service.Meta, *tls)
		}
		if err != nil {
			id := ""
			if e != nil && e.Service != nil {
				id = e.Service.ID
			}
			bad = append(bad, badEntry{ID: id, Err: err})
			continue
		}
		node := ""
		if e.Node != nil {
			node = e.Node.Node
		}
		eps = append(eps, found{ep, node})
	}
	count := map[string]int{}
	for _, f := range eps {
		count[f.ep.ID]++
	}
	out := make([]router.Endpoint, 0, len(eps))
	taken := map[string]bool{}
	for _, f := range eps {
		id := f.ep.ID
		if count[id] > 1 {
			f.ep.ID = f.node + "/" + id
		}
		// Still taken: the same node twice, or another service's ID spelled "node/id".
		// The router keys breakers and affinity by ID, so only the first keeps it.
		if taken[f.ep.ID] {
			bad = append(bad, badEntry{ID: id, Err: fmt.Errorf("endpoint ID %q is not unique", f.ep.ID)})
			continue
		}
		taken[f.ep.ID] = true
		out = append(out, f.ep)
	}
	slices.SortFunc(out, func(a, b router.Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	return out, bad
}

// nextIndex is the WaitIndex for the query after one that returned got, following
// Consul's rules for blocking queries: reset to 0 if the index went backwards (a
// restored snapshot, a restarted agent), and never block on 0.
func nextIndex(prev, got uint64) uint64 {
	if got < prev {
		return 0
	}
	return max(got, 1)
}

// bucket is a token bucket: burst queries at once, then one per every. Consul asks
// blocking-query loops to rate limit like this rather than sleep on every turn.
type bucket struct {
	every  time.Duration
	burst  float64
	tokens float64
	last   time.Time
}

// take spends a token at now and returns how long to wait before using it.
func (b *bucket) take(now time.Time) time.Duration {
	if b.every <= 0 {
		return 0
	}
	if b.last.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+float64(now.Sub(b.last))/float64(b.every))
	}
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens * float64(b.every))
}

// backoff is a capped exponential retry delay with jitter in [d/2, d).
type backoff struct {
	first, max time.Duration
	cur        time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = min(b.first, b.max)
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	if b.cur-half <= 0 {
		return b.cur
	}
	return half + rand.N(b.cur-half)
}

func (b *backoff) reset() { b.cur = 0 }
