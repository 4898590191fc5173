package consul

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/specd-dev/specd/router"
)

// ErrAlreadyRunning is returned by Run when the Watcher has already been run.
var ErrAlreadyRunning = errors.New("consul: watcher already running")

// Watcher defaults.
const (
	defaultMaxBackoff  = 10 * time.Second
	firstBackoff       = 250 * time.Millisecond
	defaultMinInterval = time.Second
	// requestSlack is added to a blocking query's wait (and Consul's jitter, wait/16)
	// to bound a request to an agent that stopped answering.
	requestSlack = 10 * time.Second
)

// WatchConfig configures a Watcher.
type WatchConfig struct {
	Addr       string // agent HTTP address: host:port, or with an http:// or https:// prefix
	Token      string // ACL token; "" for none (see the package doc for the fallback)
	Datacenter string // "" for the agent's own

	// Services maps each watched role to its Consul service name; instances must also
	// carry the role as a tag (Register does this). At least one role.
	Services map[router.Role]string
	// Wait is a blocking query's longest wait; 0 means Consul's default (5m), at most 10m.
	Wait time.Duration
	// MaxBackoff caps the delay between retries while Consul is unreachable; 0 means 10s.
	MaxBackoff time.Duration
	// MinInterval rate-limits each role's query loop: after a burst of two, at most one
	// query per MinInterval, so a churning service degrades to polling. 0 means 1s.
	MinInterval time.Duration
	// TLS, when set, says whether this side dials with TLS: an instance whose meta
	// "tls" says otherwise is skipped (and logged) rather than dialled to fail. nil:
	// every instance is kept.
	TLS *bool
}

// Watcher follows the passing instances of each role in Consul and serves them as a
// router.Discovery. Endpoints never blocks: it returns the view of the last successful
// query, which is kept when Consul becomes unreachable (Stale then reports true).
type Watcher struct {
	// OnChange, if set, is called after the endpoints of a role change or Stale flips.
	// Set it before Run. It is called from the watch goroutines, possibly concurrently,
	// and must return quickly.
	OnChange func()

	cfg    WatchConfig
	log    *slog.Logger
	client *api.Client
	tr     *http.Transport

	running atomic.Bool

	mu          sync.RWMutex
	roles       map[router.Role]*roleView // fixed at NewWatcher; values guarded by mu
	outage      bool                      // some role's last query failed
	outageSince time.Time
}

type roleView struct {
	eps     []router.Endpoint // nil until the first successful query
	failing bool
	lastOK  time.Time
}

var _ router.Discovery = (*Watcher)(nil)

// NewWatcher returns a watcher of the agent at cfg.Addr; Run starts it. A nil log
// discards. It fails with ErrInvalidConfig for a bad configuration.
func NewWatcher(cfg WatchConfig, log *slog.Logger) (*Watcher, error) {
	switch {
	case cfg.Addr == "":
		return nil, invalid("Addr", "the agent address is empty")
	case len(cfg.Services) == 0:
		return nil, invalid("Services", "no role to watch")
	case cfg.Wait < 0 || cfg.Wait > maxWait:
		return nil, invalid("Wait", "%v is not in 0-%v", cfg.Wait, maxWait)
	case cfg.MaxBackoff < 0:
		return nil, invalid("MaxBackoff", "%v is negative", cfg.MaxBackoff)
	case cfg.MinInterval < 0:
		return nil, invalid("MinInterval", "%v is negative", cfg.MinInterval)
	}
	roles := map[router.Role]*roleView{}
	for role, name := range cfg.Services {
		if role != router.Verifier && role != router.Draft {
			return nil, invalid("Services", "role %q is neither %q nor %q", role, router.Verifier, router.Draft)
		}
		if name == "" {
			return nil, invalid("Services", "role %q has an empty service name", role)
		}
		roles[role] = &roleView{}
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = defaultMinInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client, tr, err := newClient(cfg.Addr, cfg.Token, cfg.Datacenter)
	if err != nil {
		return nil, err
	}
	return &Watcher{cfg: cfg, log: log, client: client, tr: tr, roles: roles}, nil
}

// Endpoints implements router.Discovery: the passing instances of role as last seen,
// sorted by ID (nil before the first successful query, or for a role not watched).
func (w *Watcher) Endpoints(role router.Role) []router.Endpoint {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if v := w.roles[role]; v != nil {
		return slices.Clone(v.eps)
	}
	return nil
}

// Stale reports whether the last query of some role failed, so that its view may be
// out of date. It is false before the first query ends.
func (w *Watcher) Stale() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.outage
}

// LastUpdate is when the whole view was last confirmed by Consul: the oldest of the
// roles' last successful queries (zero until every role has had one). A blocking query
// that ends without a change still confirms the view.
func (w *Watcher) LastUpdate() time.Time {
	w.mu.RLock()
	defer w.mu.RUnlock()
	var oldest time.Time
	for _, v := range w.roles {
		if v.lastOK.IsZero() {
			return time.Time{}
		}
		if oldest.IsZero() || v.lastOK.Before(oldest) {
			oldest = v.lastOK
		}
	}
	return oldest
}

// Run watches every role, one goroutine each, until ctx ends, then returns nil. It
// returns ErrAlreadyRunning if called again.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer w.tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for role, name := range w.cfg.Services {
		wg.Go(func() { w.watch(ctx, role, name) })
	}
	wg.Wait()
	return nil
}

// watch is one role's blocking-query loop.
func (w *Watcher) watch(ctx context.Context, role router.Role, name string) {
	var index uint64
	skipped := map[string]string{} // instance ID → why, as last logged
	limit := bucket{every: w.cfg.MinInterval, burst: 2}
	retry := backoff{first: firstBackoff, max: w.cfg.MaxBackoff}
	for {
		if !sleep(ctx, limit.take(time.Now())) {
			return
		}
		entries, meta, err := w.query(ctx, role, name, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.failed(role, name, err)
			// Start over after an outage: the first query then answers at once and
			// confirms (or replaces) the view instead of blocking on an old index.
			index = 0
			if !sleep(ctx, retry.next()) {
				return
			}
			continue
		}
		retry.reset()
		if index != 0 && meta.LastIndex == index {
			w.succeeded(role, nil, false) // the wait ended without a change
		} else {
			eps, bad := view(role, entries, w.cfg.TLS)
			now := make(map[string]string, len(bad))
			for _, b := range bad {
				now[b.ID] = b.Err.Error()
				if skipped[b.ID] != now[b.ID] { // once per instance and reason, not per update
					w.log.Warn("consul: skipping instance", "role", role, "service", name, "id", b.ID, "err", b.Err)
				}
			}
			skipped = now
			w.succeeded(role, eps, true)
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

func (w *Watcher) query(ctx context.Context, role router.Role, name string, index uint64) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	wait := w.cfg.Wait
	if wait == 0 {
		wait = defaultWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait+wait/16+requestSlack)
	defer cancel()
	q := (&api.QueryOptions{
		Datacenter: w.cfg.Datacenter,
		Token:      w.cfg.Token,
		AllowStale: true, // any server may answer, so the view survives a lost leader
		WaitIndex:  index,
		WaitTime:   w.cfg.Wait,
	}).WithContext(ctx)
	return w.client.Health().Service(name, string(role), true, q)
}

// failed marks role failing; the first failure of an outage is logged.
func (w *Watcher) failed(role router.Role, name string, err error) {
	w.mu.Lock()
	w.roles[role].failing = true
	first := !w.outage
	if first {
		w.outage, w.outageSince = true, time.Now()
	}
	w.mu.Unlock()
	if !first {
		w.log.Debug("consul: watch still failing", "role", role, "service", name, "err", err)
		return
	}
	w.log.Warn("consul: watch failing; keeping the last good endpoints", "role", role, "service", name, "err", err)
	w.changed()
}

// succeeded records a successful query; eps replaces the view when replace is set.
func (w *Watcher) succeeded(role router.Role, eps []router.Endpoint, replace bool) {
	w.mu.Lock()
	v := w.roles[role]
	v.lastOK = time.Now()
	v.failing = false
	changed := replace && (v.eps == nil || !slices.Equal(v.eps, eps))
	if changed {
		if eps == nil {
			eps = []router.Endpoint{} // seen, and empty
		}
		v.eps = eps
	}
	recovered := false
	var down time.Duration
	if w.outage && !w.anyFailingLocked() {
		w.outage, recovered, down = false, true, time.Since(w.outageSince)
	}
	w.mu.Unlock()
	if recovered {
		w.log.Info("consul: watch recovered", "after", down.Round(time.Millisecond))
	}
	if changed || recovered {
		w.changed()
	}
}

func (w *Watcher) anyFailingLocked() bool {
	for _, v := range w.roles {
		if v.failing {
			return true
		}
	}
	return false
}

func (w *Watcher) changed() {
	if w.OnChange != nil {
		w.OnChange()
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
