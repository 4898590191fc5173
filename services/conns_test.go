package services_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/services"
)

// healthServer serves grpc.health.v1 (SERVING) on addr ("127.0.0.1:0" for a free
// port) until the returned stop is called; it returns the address.
func healthServer(t *testing.T, addr string) (string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := services.NewServer("test", slog.New(slog.NewTextHandler(io.Discard, nil)), services.Limits{})
	srv.SetServing()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, time.Second) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

func check(c *services.Conns, addr string) error {
	cc, err := c.Get(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// TestConnsIdle: a connection without RPCs for the idle timeout closes its transport
// (the channel goes IDLE) and is dropped from the cache; the next Get dials afresh.
func TestConnsIdle(t *testing.T) {
	checkLeaks(t)
	addr, _ := healthServer(t, "127.0.0.1:0")
	c := services.NewConns(services.ConnLimits{Idle: 200 * time.Millisecond})
	defer c.Close()
	if err := check(c, addr); err != nil {
		t.Fatal(err)
	}
	cc, _ := c.Get(addr)
	if st := cc.GetState(); st != connectivity.Ready {
		t.Fatalf("after an RPC the connection is %v, want READY", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for st := cc.GetState(); st != connectivity.Idle; st = cc.GetState() {
		if !cc.WaitForStateChange(ctx, st) {
			t.Fatalf("connection still %v long after the idle timeout", st)
		}
	}
	time.Sleep(250 * time.Millisecond)
	again, err := c.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	if again == cc || cc.GetState() != connectivity.Shutdown {
		t.Errorf("Get after the idle timeout: same connection %v, old one %v; want a new one and the old SHUTDOWN", again == cc, cc.GetState())
	}
	if n := c.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}

// TestConnsBound: a full cache refuses a new address with ErrTooManyConns
// (RESOURCE_EXHAUSTED) while its connections are recent, and drops idle ones to make
// room.
func TestConnsBound(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		idle    time.Duration
		wantErr bool
	}{{time.Hour, true}, {50 * time.Millisecond, false}} {
		c := services.NewConns(services.ConnLimits{Max: 2, Idle: tc.idle})
		for _, a := range []string{"127.0.0.1:1", "127.0.0.1:2"} {
			if _, err := c.Get(a); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
		_, err := c.Get("127.0.0.1:3")
		if got := err != nil; got != tc.wantErr {
			t.Errorf("idle %v: third Get: %v, want error %v", tc.idle, err, tc.wantErr)
		}
		if err != nil && (!errors.Is(err, services.ErrTooManyConns) || status.Code(services.Status(err)) != codes.ResourceExhausted) {
			t.Errorf("idle %v: third Get: %v (%v), want ErrTooManyConns as RESOURCE_EXHAUSTED", tc.idle, err, status.Code(services.Status(err)))
		}
		if n := c.Len(); n > 2 {
			t.Errorf("idle %v: Len = %d, want at most 2", tc.idle, n)
		}
		c.Close()
	}
}

// TestConnsRedialsFailed: after its peer restarts on the same address, a connection
// left in TRANSIENT_FAILURE (in backoff) is replaced on the next Get, whose first RPC
// succeeds at once instead of failing with the old attempt's "connection refused".
func TestConnsRedialsFailed(t *testing.T) {
	checkLeaks(t)
	addr, stop := healthServer(t, "127.0.0.1:0")
	c := services.NewConns(services.ConnLimits{})
	defer c.Close()
	if err := check(c, addr); err != nil {
		t.Fatal(err)
	}
	stop()
	cc, _ := c.Get(addr)
	// RPCs while the peer is down put the connection in backoff.
	for deadline := time.Now().Add(5 * time.Second); cc.GetState() != connectivity.TransientFailure; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("connection %v, want TRANSIENT_FAILURE with its peer down", cc.GetState())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
	}
	healthServer(t, addr)
	if err := check(c, addr); err != nil {
		t.Errorf("first RPC after the peer restarted: %v", err)
	}
}

// checkLeaks checks, after the test and its cleanups, that the goroutines it started
// have ended.
func checkLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// TestConnsReplacedKeepsStreams: a peer draining (GracefulStop) closes its listener,
// so its connection falls into TRANSIENT_FAILURE while the streams it took still run;
// the next Get replaces the connection, and the streams in flight on the old one go on
// to their end instead of being cut with it (CANCELED, "the client connection is
// closing": what a verifier's graceful stop did to the router's streams).
func TestConnsReplacedKeepsStreams(t *testing.T) {
	checkLeaks(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	defer gs.Stop()
	addr := lis.Addr().String()

	c := services.NewConns(services.ConnLimits{})
	defer c.Close()
	old, err := c.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := healthpb.NewHealthClient(old).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watch message: %v, %v; want SERVING", r, err)
	}

	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }() // waits for the watch stream
	// RPCs while the listener is gone put the connection in backoff; then Get
	// replaces it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		cc, err := c.Get(addr)
		if err != nil {
			t.Fatal(err)
		}
		if cc != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection %v, still cached with its peer's listener closed", old.GetState())
		}
		rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		healthpb.NewHealthClient(old).Check(rctx, &healthpb.HealthCheckRequest{})
		rcancel()
	}

	// The draining server still serves the stream it took.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch after the connection was replaced: %v, %v; want NOT_SERVING", r, err)
	}
	cancel() // the last stream ends: the old connection closes, the server stops
	<-stopped
	for deadline := time.Now().Add(10 * time.Second); old.GetState() != connectivity.Shutdown; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("replaced connection %v after its last stream ended, want SHUTDOWN", old.GetState())
		}
	}
}
