package services

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
)

// ConnLimits bound a Conns. Zero fields take the defaults.
type ConnLimits struct {
	// Idle is how long a connection may go without an RPC before gRPC closes its
	// transport (the channel's idle mode); Get drops such a connection from the cache.
	// 0: 5 minutes.
	Idle time.Duration
	// Max is the most connections cached at once; Get refuses a new address beyond it
	// (ErrTooManyConns) unless an idle one can be dropped. 0: 256.
	Max int
	// ConnectTimeout bounds one connection attempt, so that an RPC on a fresh
	// connection to an address that does not answer fails after it. 0: 3 seconds.
	ConnectTimeout time.Duration
}

// Conns caches one client connection per address, dialled on first use. A gRPC
// connection reconnects by itself, but with a backoff that grows to minutes; Conns
// keeps it short and replaces a connection in TRANSIENT_FAILURE with a fresh one on
// the next Get, so that a peer restarted on the same address is used at once rather
// than after the old connection's backoff. A replaced connection still carrying RPCs
// is closed only when the last of them ends: a peer draining (GracefulStop) leaves its
// channel in TRANSIENT_FAILURE — its listener is closed — while the streams it took
// still run on the old transport, and closing the connection under them would cut
// them (CANCELED, "the client connection is closing") instead of letting them finish.
// Safe for concurrent use.
//
// Conns dials whatever address it is given: callers must only pass addresses of
// their own configuration or discovery, never one named in a request.
type Conns struct {
	opts   []grpc.DialOption
	limits ConnLimits

	mu      sync.Mutex
	m       map[string]*cached
	retired []*cached // replaced while carrying RPCs; each closes when its last one ends
	swept   time.Time // last sweep
	closed  bool
}

// cached is one connection of a Conns. Its interceptors count the RPCs in flight on
// it. (Not a stats handler: grpc-go can report a transparent retry's attempt begun that
// it never ends, so Begin and End events need not pair; its OnFinish call option runs
// once per call, as grpc-go's own count of calls for idleness relies on.)
type cached struct {
	cc      *grpc.ClientConn
	used    time.Time    // last Get
	active  atomic.Int64 // RPCs begun and not finished
	retired atomic.Bool  // no longer in the cache: close once active is 0
	once    sync.Once
}

// begin counts an RPC and returns its call options with one that uncounts it when it
// finishes, and closes a retired connection when the last one does (in a goroutine:
// not from within its own RPC's bookkeeping).
func (e *cached) begin(opts []grpc.CallOption) []grpc.CallOption {
	e.active.Add(1)
	var done sync.Once
	return append(opts, grpc.OnFinish(func(error) {
		done.Do(func() {
			if e.active.Add(-1) == 0 && e.retired.Load() {
				go e.close()
			}
		})
	}))
}

func (e *cached) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(ctx, method, req, reply, cc, e.begin(opts)...)
}

func (e *cached) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(ctx, desc, cc, method, e.begin(opts)...)
}

func (e *cached) close() { e.once.Do(func() { e.cc.Close() }) }

// retire takes e out of use: closed now if it carries no RPC, else when its last one
// ends (or at Close). Called with c.mu held.
func (c *Conns) retire(e *cached) {
	e.retired.Store(true)
	if e.active.Load() == 0 {
		e.close()
		return
	}
	c.retired = append(c.retired, e)
}

// Errors of Conns.Get.
var (
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("connection cache closed")
	// ErrTooManyConns: the cache holds ConnLimits.Max connections, none of them idle.
	ErrTooManyConns = errors.New("too many peer connections")
)

// NewConns returns an empty cache bounded by limits, dialling with opts.
func NewConns(limits ConnLimits, opts ...grpc.DialOption) *Conns {
	if limits.Idle <= 0 {
		limits.Idle = 5 * time.Minute
	}
	if limits.Max <= 0 {
		limits.Max = 256
	}
	if limits.ConnectTimeout <= 0 {
		limits.ConnectTimeout = 3 * time.Second
	}
	base := []grpc.DialOption{
		grpc.WithIdleTimeout(limits.Idle),
		// gRPC's default backoff grows to two minutes: a peer back after an outage would
		// wait that long for its callers to notice.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: limits.ConnectTimeout,
		}),
	}
	return &Conns{opts: append(base, opts...), limits: limits, m: map[string]*cached{}}
}

// Get returns the connection to addr, dialling it if none is cached or if the cached
// one is in TRANSIENT_FAILURE (the fresh one's first RPC waits for one new connection
// attempt, not for the old one's backoff). It fails with ErrClosed after Close, so a
// late caller cannot leave a connection behind, and with ErrTooManyConns when the
// cache is full of connections in use.
func (c *Conns) Get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	now := time.Now()
	if now.Sub(c.swept) >= c.limits.Idle/4 {
		c.sweep(now)
	}
	if e, ok := c.m[addr]; ok {
		if e.cc.GetState() != connectivity.TransientFailure {
			e.used = now
			return e.cc, nil
		}
		delete(c.m, addr)
		c.retire(e)
	}
	if len(c.m) >= c.limits.Max {
		c.sweep(now)
	}
	if len(c.m) >= c.limits.Max {
		return nil, fmt.Errorf("%w: %d connections open, none idle; not dialling %s", ErrTooManyConns, len(c.m), addr)
	}
	e := &cached{used: now}
	cc, err := Dial(addr, append([]grpc.DialOption{grpc.WithChainUnaryInterceptor(e.unary), grpc.WithChainStreamInterceptor(e.stream)}, c.opts...)...)
	if err != nil {
		return nil, err
	}
	e.cc = cc
	c.m[addr] = e
	return cc, nil
}

// sweep drops the connections not got for longer than the idle timeout whose channel
// is idle or failing: gRPC has closed (or lost) their transport (one failing still
// carrying a stream is closed when that ends). It also forgets the retired
// connections closed since. Called with c.mu held.
func (c *Conns) sweep(now time.Time) {
	c.swept = now
	for a, e := range c.m {
		if now.Sub(e.used) < c.limits.Idle {
			continue
		}
		switch e.cc.GetState() {
		case connectivity.Idle, connectivity.TransientFailure, connectivity.Shutdown:
			delete(c.m, a)
			c.retire(e)
		}
	}
	c.retired = slices.DeleteFunc(c.retired, func(e *cached) bool { return e.cc.GetState() == connectivity.Shutdown })
}

// Len reports the connections cached.
func (c *Conns) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Close closes every connection, those retired with RPCs still in flight too.
func (c *Conns) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for a, e := range c.m {
		e.close()
		delete(c.m, a)
	}
	for _, e := range c.retired {
		e.close()
	}
	c.retired = nil
}
