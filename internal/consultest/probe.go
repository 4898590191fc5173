package consultest

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Consul's floor for a check's interval, and its gRPC check timeout when none is given.
const (
	minCheckInterval   = time.Second
	defaultGRPCTimeout = 10 * time.Second
)

// startProbeLocked runs a gRPC check until its stop function is called (by
// deregistration, a re-registration that changes the check, or Close).
func (s *Server) startProbeLocked(serviceID string, c *check) {
	if s.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	target, healthService, _ := strings.Cut(c.GRPC, "/") // "host:port[/service]", as Consul parses it
	interval := max(c.Interval, minCheckInterval)
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = defaultGRPCTimeout
	}
	creds := insecure.NewCredentials()
	if c.GRPCUseTLS {
		cfg := &tls.Config{}
		if s.opts.TLS != nil {
			cfg = s.opts.TLS.Clone()
		}
		cfg.InsecureSkipVerify, cfg.ServerName = c.TLSSkipVerify, c.TLSServerName
		creds = credentials.NewTLS(cfg)
	}
	checkID := c.ID
	s.probes.Add(1)
	go func() {
		defer s.probes.Done()
		t := time.NewTimer(0) // the fake probes at once; Consul staggers the first run
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			status, output := probeGRPC(ctx, target, healthService, creds, timeout)
			if !s.record(ctx, serviceID, checkID, status, output) {
				return
			}
			t.Reset(interval)
		}
	}()
}

// record stores a probe result unless the probe was stopped meanwhile.
func (s *Server) record(ctx context.Context, serviceID, checkID, status, output string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil { // stop functions are called with s.mu held
		return false
	}
	svc := s.services[serviceID]
	if svc == nil {
		return false
	}
	for _, c := range svc.checks {
		if c.ID == checkID {
			s.setCheckLocked(svc, c, status, output)
			return true
		}
	}
	return false
}

// probeGRPC calls grpc.health.v1.Health/Check once, on a fresh connection as Consul does.
func probeGRPC(ctx context.Context, target, service string, creds credentials.TransportCredentials, timeout time.Duration) (status, output string) {
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return Critical, fmt.Sprintf("gRPC check %s: failed: %v", target, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return Critical, fmt.Sprintf("gRPC check %s: failed: %v", target, err)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return Critical, fmt.Sprintf("gRPC check %s: failed with status %s", target, st)
	}
	return Passing, fmt.Sprintf("gRPC check %s: success", target)
}
