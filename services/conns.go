package services

import (
	"errors"
	"sync"

	"google.golang.org/grpc"
)

// Conns caches one client connection per address, dialled with Dial and opts on first
// use. A gRPC connection reconnects by itself, so one per peer is kept for the life of
// the caller. Safe for concurrent use.
type Conns struct {
	opts []grpc.DialOption

	mu     sync.Mutex
	m      map[string]*grpc.ClientConn
	closed bool
}

// ErrClosed is returned by Conns.Get after Close.
var ErrClosed = errors.New("connection cache closed")

// NewConns returns an empty cache dialling with opts.
func NewConns(opts ...grpc.DialOption) *Conns {
	return &Conns{opts: opts, m: map[string]*grpc.ClientConn{}}
}

// Get returns the connection to addr. It returns ErrClosed after Close, so a late
// caller cannot leave a connection behind.
func (c *Conns) Get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.m[addr]; ok {
		return cc, nil
	}
	cc, err := Dial(addr, c.opts...)
	if err != nil {
		return nil, err
	}
	c.m[addr] = cc
	return cc, nil
}

// Close closes every connection.
func (c *Conns) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for a, cc := range c.m {
		cc.Close()
		delete(c.m, a)
	}
}
