package verifiersvc

import (
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
)

// TestQueueWaitOneOutcome: a request whose admission wait runs out just as the engine
// admits it ends one way only — refused with RESOURCE_EXHAUSTED and never admitted, or
// admitted and served — never refused after the engine admitted it and prefilled its
// prompt for nobody. A wait of one nanosecond makes every request race the engine's
// next pass. With the prefix cache on, a request that was admitted leaves its prompt's
// full KV blocks cached when it ends; so after a refusal the cache must hold no more
// blocks than before it.
func TestQueueWaitOneOutcome(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0.gguf"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	eng, err := services.NewEngine(m, services.EngineConfig{Threads: 1, KVBudget: 32 << 20, KVType: ggml.F32, MaxBlock: 64})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{QueueWait: time.Nanosecond, Engine: EngineConfig{Threads: 1, PrefixCache: true}}, nil)
	if err := s.SetEngine(eng); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	speculationv1.RegisterVerifierServiceServer(srv, s)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	cc, err := services.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := speculationv1.NewVerifierServiceClient(cc)
	_, en, err := s.engines()
	if err != nil {
		t.Fatal(err)
	}
	idle := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			if running, queued := en.load(); running == 0 && queued == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the engine did not go idle within 5 s")
			}
		}
	}
	// More than one KV block (64 positions) of prompt, different in each request.
	const text = " Tell the story plainly, in short sentences, for a child of five who is falling asleep, and never use a word a child would not know. Keep it kind, and say goodnight at the end, softly, as a parent would, with the lights already low."
	refused, served := 0, 0
	for i := range 12 {
		before := eng.KV.Stats().Cached
		prompt := fmt.Sprintf("Story %d.", i) + text
		st, err := client.Generate(t.Context(), &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
			Prompt: prompt, MaxTokens: 2, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
		if err == nil {
			for {
				var msg *speculationv1.GenerateResponse
				if msg, err = st.Recv(); err != nil || msg.GetFinal() != nil {
					break
				}
			}
		}
		idle()
		switch s := status.Convert(err); s.Code() {
		case codes.OK:
			served++
		case codes.ResourceExhausted:
			refused++
			hint := false
			for _, d := range s.Details() {
				if _, ok := d.(*errdetails.RetryInfo); ok {
					hint = true
				}
			}
			if !hint {
				t.Errorf("request %d: %v has no RetryInfo", i, err)
			}
			if after := eng.KV.Stats().Cached; after > before {
				t.Fatalf("request %d was refused (%v), yet it had been admitted: its prompt left %d KV blocks in the prefix cache", i, err, after-before)
			}
		default:
			t.Fatalf("request %d: %v, want it served or RESOURCE_EXHAUSTED", i, err)
		}
	}
	t.Logf("%d served, %d refused", served, refused)
}
