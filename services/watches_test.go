package services_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/services"
)

// TestHealthWatchesBounded: health is open to anyone who can connect, and a Watch
// lasts until its client ends it, each holding a goroutine and its request (whose
// service name may be as long as a message: 16 MiB). One peer may hold
// MaxWatchesPerPeer of them, over all its connections; the next is
// RESOURCE_EXHAUSTED at once, while another peer still watches and the peer still
// gets its Check and its real streams, which the watches do not count against. A
// service name over MaxHealthServiceBytes is INVALID_ARGUMENT.
func TestHealthWatchesBounded(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	addr := serveHold(t, services.Limits{MaxStreamsPerPeer: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a1, a2, b := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.2", addr)

	watch := func(ctx context.Context, c healthpb.HealthClient, service string) error {
		st, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return err
		}
		_, err = st.Recv() // the first status, once the server runs the stream
		return err
	}
	wctx, endWatches := context.WithCancel(ctx)
	defer endWatches()
	for i := range services.MaxWatchesPerPeer {
		cc := a1
		if i%2 == 1 {
			cc = a2 // the same peer on its second connection
		}
		if err := watch(wctx, healthpb.NewHealthClient(cc), ""); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	err := watch(wctx, healthpb.NewHealthClient(a1), "")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "health watches per peer") {
		t.Errorf("watch %d of one peer: %v, want RESOURCE_EXHAUSTED naming the bound", services.MaxWatchesPerPeer+1, err)
	}
	if err := watch(wctx, healthpb.NewHealthClient(b), "test"); err != nil {
		t.Errorf("another peer's watch: %v", err)
	}
	if r, err := healthpb.NewHealthClient(a1).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check with the peer's watches at their bound: %v, %v, want SERVING", r, err)
	}
	hctx, endHold := context.WithCancel(ctx)
	defer endHold()
	if _, err := hold(hctx, a1); err != nil {
		t.Errorf("a real stream (1 per peer) with the peer's watches at their bound: %v", err)
	}

	err = watch(ctx, healthpb.NewHealthClient(b), strings.Repeat("s", services.MaxHealthServiceBytes+1))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "service") {
		t.Errorf("watch of a %d-byte service name: %v, want INVALID_ARGUMENT on the service", services.MaxHealthServiceBytes+1, err)
	}
	endHold()
	endWatches()
}
