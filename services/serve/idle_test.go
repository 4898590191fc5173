package serve_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
)

// waitIdle waits until the verifier reports no session and every KV block free.
func waitIdle(t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	c := speculationv1.NewVerifierServiceClient(cc)
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := c.Info(context.Background(), &speculationv1.InfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if info.GetKvBlocksFree() == info.GetKvBlocksTotal() && info.GetQueueDepth() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("verifier still busy: %d of %d KV blocks free, queue %d", info.GetKvBlocksFree(), info.GetKvBlocksTotal(), info.GetQueueDepth())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
