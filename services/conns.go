package services

import (
	"sync"

	"google.golang.org/grpc"
)

// Conns caches one client connection per address, dialled with Dial and opts on first
// use. A gRPC connection reconnects by itself, so one per peer is kept for the life of
// the caller. Safe for concurrent use.
type Conns struct {
	opts []grpc.DialOption

	mu sync.Mutex
	m  map[string]*grpc.ClientConn
}

// NewConns returns an empty cache dialling with opts.
func NewConns(opts ...grpc.DialOption) *Conns {
	return &Conns{opts: opts, m: map[string]*grpc.ClientConn{}}
}

// Get returns the connection to addr.
func (c *Conns) Get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	for a, cc := range c.m {
		cc.Close()
		delete(c.m, a)
	}
}
