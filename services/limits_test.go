package services_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/services"
)

// TestLimits: a message over MaxMessageBytes is RESOURCE_EXHAUSTED; past MaxStreams
// open streams on one connection a new call waits for one of them to end (here its
// deadline ends it first), and goes through once one has.
func TestLimits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := services.NewServer("test", slog.New(slog.NewTextHandler(io.Discard, nil)), services.Limits{MaxMessageBytes: 1 << 10, MaxStreams: 1})
	srv.SetServing()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, time.Second) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	cc, err := services.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)

	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 2<<10)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 2 KiB request against a 1 KiB limit: %v, want RESOURCE_EXHAUSTED", err)
	}

	watchCtx, endWatch := context.WithCancel(ctx)
	w, err := hc.Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil { // the stream is open on the server
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = hc.Check(short, &healthpb.HealthCheckRequest{})
	cancelShort()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a second stream while one is open, limit 1: %v, want it to wait until its deadline", err)
	}
	endWatch()
	if _, err := w.Recv(); status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
		t.Fatalf("the watch after its cancel: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		short, cancelShort := context.WithTimeout(ctx, time.Second)
		_, err := hc.Check(short, &healthpb.HealthCheckRequest{})
		cancelShort()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("once the first stream ended, a call still fails: %v", err)
		}
	}
}
