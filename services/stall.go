package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// DefaultSendStallTimeout is how long a server waits for a client to accept one
// message of a stream (Limits.SendStallTimeout), as nginx's send_timeout does.
const DefaultSendStallTimeout = 30 * time.Second

// ErrSendStalled: a client accepted no message of its stream for the server's
// send-stall timeout (it stopped reading, and HTTP/2 flow control held the server's
// send), so the server ended the stream. Status maps it to DEADLINE_EXCEEDED.
var ErrSendStalled = errors.New("stream cancelled: the client accepted no message")

// stallGuard ends a server stream whose client has not accepted a message for timeout.
// A gRPC server's SendMsg waits while the client's flow-control window is full, and
// only the end of the stream — the handler returning — releases it; so each guarded
// stream sends from a goroutine of its own, and on a stall SendMsg returns
// ErrSendStalled to the handler, which ends the stream and with it every call the
// stream holds open upstream (a router's stream to its verifier, and so the
// verifier's KV pages and its per-peer stream count).
type stallGuard struct {
	timeout time.Duration
	log     *slog.Logger
	stalled func(ctx context.Context, method string) // nil: not counted
	sample  LogSampler
}

// intercept guards streams whose server sends (health and reflection, open to all,
// keep gRPC's own behaviour).
func (g *stallGuard) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !info.IsServerStream || OpenMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	s := &stallStream{ServerStream: ss, g: g, method: info.FullMethod}
	defer s.close()
	return handler(srv, s)
}

// stallStream is a server stream whose SendMsg gives up after the guard's timeout.
// Only the handler's goroutine calls SendMsg (gRPC allows one sender); the sending
// goroutine, started by the first SendMsg, does the sends it is handed one at a time.
type stallStream struct {
	grpc.ServerStream
	g      *stallGuard
	method string

	msgs  chan any   // to the sending goroutine; nil until the first SendMsg
	sent  chan error // its result of each
	timer *time.Timer
	err   error // set once the stream stalled: every later SendMsg fails with it
}

func (s *stallStream) SendMsg(m any) error {
	if s.err != nil {
		return s.err
	}
	if s.msgs == nil {
		s.msgs, s.sent = make(chan any), make(chan error, 1)
		s.timer = time.NewTimer(s.g.timeout)
		go func() {
			for m := range s.msgs {
				s.sent <- s.ServerStream.SendMsg(m)
			}
		}()
	} else {
		s.timer.Reset(s.g.timeout)
	}
	s.msgs <- m // the sender is idle: it has answered the previous message
	select {
	case err := <-s.sent:
		s.timer.Stop()
		return err
	case <-s.timer.C:
	}
	// The send goes on in the sending goroutine until the handler returns and gRPC
	// ends the stream, which cancels its context and so releases the send.
	ctx := s.Context()
	s.err = Status(fmt.Errorf("%w for %v (--send-stall-timeout)", ErrSendStalled, s.g.timeout))
	if s.g.stalled != nil {
		s.g.stalled(ctx, s.method)
	}
	if ok, held := s.g.sample.Allow(s.method, time.Now()); ok && s.g.log != nil {
		s.g.log.WarnContext(ctx, "client stopped reading its stream; cancelled", "method", s.method, "peer", PeerID(ctx),
			"send_stall_timeout", s.g.timeout, "stalls_unlogged", held)
	}
	return s.err
}

// close lets the sending goroutine end: at once when it is idle, else when the
// stalled send it is in returns as the stream ends.
func (s *stallStream) close() {
	if s.msgs != nil {
		s.timer.Stop()
		close(s.msgs)
	}
}
