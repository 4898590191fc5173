package services

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
)

// TestEnginesQueueFailsFast: with every slot busy and the queue full, Acquire fails at
// once with ErrBusy (RESOURCE_EXHAUSTED), a waiter honours its context, and releasing a
// slot frees its KV blocks.
func TestEnginesQueueFailsFast(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "stories260K.bin"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e, err := NewEngines(m, EngineConfig{Threads: 1, Slots: 1, Queue: 1, KVBudget: 4 << 20, KVType: ggml.F32, MaxBlock: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st, release, err := e.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Forward([]int32{1, 403, 407}, false); err != nil {
		t.Fatal(err)
	}
	if e.KV.Stats().Used == 0 {
		t.Fatal("a forward pass used no KV block")
	}
	waitCtx, cancelWait := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { _, _, err := e.Acquire(waitCtx); waited <- err }()
	for _, w := e.Load(); w == 0; _, w = e.Load() {
	}
	if _, _, err := e.Acquire(context.Background()); !errors.Is(err, ErrBusy) || status.Code(Status(err)) != codes.ResourceExhausted {
		t.Fatalf("Acquire with the queue full = %v (%v), want ErrBusy / ResourceExhausted", err, status.Code(Status(err)))
	}
	cancelWait()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled waiter got %v", err)
	}
	release()
	if used := e.KV.Stats().Used; used != 0 {
		t.Fatalf("release left %d KV blocks in use", used)
	}
}

func TestStatusCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{BadField("max_tokens", "too many"), codes.InvalidArgument},
		{context.Canceled, codes.Canceled},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{ErrBusy, codes.ResourceExhausted},
		{ErrUnavailable, codes.Unavailable},
		{ErrIncompatible, codes.FailedPrecondition},
		{model.ErrContextFull, codes.InvalidArgument},
		{errors.New("a bug"), codes.Internal},
	} {
		if got := status.Code(Status(c.err)); got != c.want {
			t.Errorf("Status(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestEnginesWarmUp: NewEngines warms every slot
// and leaves no KV block in use; a budget too small for the warm-up block still starts.
func TestEnginesWarmUp(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "stories260K.bin"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e, err := NewEngines(m, EngineConfig{Threads: 1, Slots: 2, Queue: 1, KVBudget: 4 << 20, KVType: ggml.F32, MaxBlock: 8})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.KV.Stats(); st.Used != 0 {
		t.Errorf("after warm-up %d KV blocks are in use", st.Used)
	}
	e.Close()
	// One block of the default size: the warm-up block and the timed passes after it
	// need more positions than that.
	bytes := int64(m.Layers * 2 * kvcache.DefaultBlockTokens * m.KVDim() * 4)
	small, err := NewEngines(m, EngineConfig{Threads: 1, Slots: 1, Queue: 1, KVBudget: bytes, KVType: ggml.F32, MaxBlock: kvcache.DefaultBlockTokens})
	if err != nil {
		t.Fatalf("a one-block budget: %v", err)
	}
	small.Close()
}
