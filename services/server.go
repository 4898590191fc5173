package services

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
)

// Defaults of Limits.
const (
	MaxMessageBytes     = 16 << 20 // largest gRPC message a server sends or accepts
	DefaultMaxStreams   = 1024     // concurrent streams per client connection
	DefaultKeepaliveMin = 10 * time.Second
)

// Limits bound what one client connection may ask of a server. Past them a client gets:
// RESOURCE_EXHAUSTED for a message over MaxMessageBytes; for a stream past MaxStreams on
// one connection, a wait until one of its streams ends (HTTP/2 MAX_CONCURRENT_STREAMS: the
// client queues it; its deadline still applies); for keepalive pings more often than
// KeepaliveMin, its connection closed with GOAWAY "too_many_pings".
//
// MaxStreamsPerPeer bounds the streaming RPCs one peer (PeerID: its verified TLS
// identity at its IP address, else its IP address) may have open at once over all its connections; past
// it a new stream is RESOURCE_EXHAUSTED at once, with a retry hint. Health and
// reflection are not counted (health Watch streams have a bound of their own,
// MaxWatchesPerPeer).
//
// SendStallTimeout bounds how long a stream's client may leave one message unaccepted
// (its flow-control window full because it stopped reading); past it the stream ends
// DEADLINE_EXCEEDED (ErrSendStalled), freeing what it held. Health and reflection are
// not guarded.
type Limits struct {
	MaxMessageBytes int           // 0: MaxMessageBytes
	MaxStreams      uint32        // 0: DefaultMaxStreams
	KeepaliveMin    time.Duration // 0: DefaultKeepaliveMin

	MaxStreamsPerPeer int // 0: no per-peer limit

	SendStallTimeout time.Duration // 0: DefaultSendStallTimeout
	// SendStalled, if set, is told of each stream ended by SendStallTimeout (metrics).
	SendStalled func(ctx context.Context, method string)
}

// ServerOptions are the gRPC options that enforce l. The per-peer limit is an
// interceptor: NewServer chains it after the caller's, so that a caller the transport's
// own authorization refuses is never counted.
func (l Limits) ServerOptions() []grpc.ServerOption {
	msg := cmp.Or(l.MaxMessageBytes, MaxMessageBytes)
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(msg),
		grpc.MaxSendMsgSize(msg),
		grpc.MaxConcurrentStreams(cmp.Or(l.MaxStreams, DefaultMaxStreams)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cmp.Or(l.KeepaliveMin, DefaultKeepaliveMin), PermitWithoutStream: true}),
	}
}

// Server is a gRPC server with grpc.health.v1 (NOT_SERVING until SetServing), server
// reflection, keepalives and message size limits.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
	name   string
	log    *slog.Logger
}

// NewServer returns a server for the named service (the health service name) that
// enforces lim. Interceptors run in the order of opts (put authorization first), then
// the per-peer stream limit, then the send-stall guard.
func NewServer(name string, log *slog.Logger, lim Limits, opts ...grpc.ServerOption) *Server {
	all := append(lim.ServerOptions(),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.ForceServerCodecV2(serverCodec{encoding.GetCodecV2(gproto.Name)}),
	)
	all = append(all, opts...)
	if lim.MaxStreamsPerPeer > 0 {
		all = append(all, grpc.ChainStreamInterceptor(newPeerStreams(lim.MaxStreamsPerPeer).intercept))
	}
	stall := &stallGuard{timeout: cmp.Or(lim.SendStallTimeout, DefaultSendStallTimeout), log: log, stalled: lim.SendStalled,
		sample: LogSampler{Every: RefusalLogEvery}}
	all = append(all, grpc.ChainStreamInterceptor(stall.intercept, newWatches().intercept))
	s := &Server{GRPC: grpc.NewServer(all...), Health: health.NewServer(), name: name, log: log}
	healthpb.RegisterHealthServer(s.GRPC, s.Health)
	reflection.Register(s.GRPC)
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.Health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

// Register registers a service implementation like the generated Register functions,
// except that a request whose string fields are not valid UTF-8 fails as a bad request
// (Status: INVALID_ARGUMENT naming the field, or "request" when it cannot be found)
// rather than as gRPC's INTERNAL: the client sent it, the server did not fail. (Protobuf refuses such a string when it
// decodes, and gRPC answers any decoding failure INTERNAL before the handler runs, so
// the server's codec lets the message through empty and marked, and the handlers
// registered here refuse it.)
func (s *Server) Register(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i, m := range d.Methods {
		h := m.Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(m any) error { return checkDecoded(m, dec(m)) }, in)
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i, st := range d.Streams {
		h := st.Handler
		d.Streams[i].Handler = func(srv any, stream grpc.ServerStream) error { return h(srv, &checkedStream{stream}) }
	}
	s.GRPC.RegisterService(&d, impl)
}

// checkedStream is a server stream whose received messages are checked by checkDecoded.
type checkedStream struct{ grpc.ServerStream }

func (s *checkedStream) RecvMsg(m any) error { return checkDecoded(m, s.ServerStream.RecvMsg(m)) }

// badUTF8 holds the messages serverCodec decoded empty because a string field was not
// valid UTF-8, with that field's name, until checkDecoded takes them.
var badUTF8 sync.Map // proto.Message → string: the field, "" if not found

// checkDecoded returns err, or a bad request if m was marked by serverCodec.
func checkDecoded(m any, err error) error {
	if field, bad := badUTF8.LoadAndDelete(m); bad && err == nil {
		if f, _ := field.(string); f != "" {
			return Status(BadField(f, "not valid UTF-8"))
		}
		return Status(BadField("request", "a string field is not valid UTF-8"))
	}
	return err
}

// serverCodec is gRPC's protobuf codec, except that a specd request with a string
// field that is not valid UTF-8 decodes as an empty message marked in badUTF8.
type serverCodec struct{ encoding.CodecV2 }

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok || !strings.Contains(err.Error(), "invalid UTF-8") || !strings.HasPrefix(string(proto.MessageName(m)), "specd.") {
		return err
	}
	field := invalidUTF8Field(data.Materialize(), m.ProtoReflect().Descriptor())
	proto.Reset(m)
	badUTF8.Store(m, field)
	return nil
}

// SetServing marks the server (and its named service) SERVING.
func (s *Server) SetServing() { s.SetServingStatus(true) }

// SetServingStatus marks the server (and its named service) SERVING or NOT_SERVING.
func (s *Server) SetServingStatus(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.Health.SetServingStatus("", st)
	s.Health.SetServingStatus(s.name, st)
}

// Serve serves on lis until ctx ends, then stops gracefully (waiting up to grace for
// streams to finish before cutting them).
func (s *Server) Serve(ctx context.Context, lis net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.GRPC.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.Health.Shutdown()
	done := make(chan struct{})
	go func() { s.GRPC.GracefulStop(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.GRPC.Stop()
		<-done
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Dial opens a client connection to a specd service with keepalives and message size
// limits: plaintext unless opts carry grpc.WithTransportCredentials (later options
// win), e.g. tlsconf's client credentials.
func Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
	}
	return grpc.NewClient(addr, append(base, opts...)...)
}
