package serve_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/consultest"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/serve"
)

// TestDeregistersBeforeDraining: a stopping service leaves Consul first and then
// drains its streams, so that routers and verifiers stop picking it while it finishes
// the work it has (consul.Registered.Deregister: "before the gRPC server stops"). It
// used to deregister only after the server had stopped — up to serve.Grace later
// while a stream was open — and stayed listed as passing meanwhile.
func TestDeregistersBeforeDraining(t *testing.T) {
	agent := consultest.New(t, consultest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := goServe(t, &wg)
	dl := freeListener(t)
	addr := dl.Addr().String()
	ready := make(chan struct{})
	eng := services.EngineConfig{Threads: 1, KVBudget: 16 << 20, KVType: ggml.F32, MaxBlock: 16}
	run(func() error {
		return serve.Draft(ctx, serve.Worker{Load: loader(t, "specd-draft-q8_0"), Engine: eng, Log: quiet,
			Consul: &serve.Consul{Addr: agent.Addr()}, Ready: func(*model.Model) { close(ready) }}, draftsvc.Config{Depth: 1}, dl)
	})
	<-ready
	id := "specd-draft-" + addr
	if _, ok := agent.Service(id); !ok {
		t.Fatalf("%s not registered", id)
	}
	// A stream in progress, which the stopping server waits for.
	cc, err := services.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sctx, endStream := context.WithCancel(context.Background())
	defer endStream()
	st, err := speculationv1.NewDraftServiceClient(cc).Speculate(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Start{Start: &speculationv1.Start{
		ContextIds: []int32{1, 300, 400, 500}, Gamma: 2}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, ok := agent.Service(id); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still registered 3 s into its shutdown, while it drains a stream", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	endStream()
}
