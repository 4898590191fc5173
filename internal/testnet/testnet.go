// Package testnet helps tests play several network peers on one machine.
package testnet

import (
	"context"
	"net"

	"google.golang.org/grpc"
)

// From is a dial option whose connections leave from the loopback address src
// (127.0.0.2, say: all of 127.0.0.0/8 is the loopback interface), so that a server
// sees them as another peer than 127.0.0.1.
func From(src string) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return d.DialContext(ctx, "tcp", addr)
	})
}
