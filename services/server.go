package services

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// MaxMessageBytes bounds every gRPC message specd sends or accepts.
const MaxMessageBytes = 16 << 20

// Server is a gRPC server with grpc.health.v1 (NOT_SERVING until SetServing), server
// reflection, keepalives and message size limits.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
	name   string
	log    *slog.Logger
}

// NewServer returns a server for the named service (the health service name).
func NewServer(name string, log *slog.Logger, opts ...grpc.ServerOption) *Server {
	base := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	s := &Server{GRPC: grpc.NewServer(append(base, opts...)...), Health: health.NewServer(), name: name, log: log}
	healthpb.RegisterHealthServer(s.GRPC, s.Health)
	reflection.Register(s.GRPC)
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.Health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	return s
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

// Dial opens a client connection to a specd service (plaintext; TLS is the mesh's job)
// with keepalives and message size limits.
func Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
	}
	return grpc.NewClient(addr, append(base, opts...)...)
}
