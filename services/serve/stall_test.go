package serve_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// stallTimeout is the router's and verifier's --send-stall-timeout in
// TestStalledClientIsCancelled.
const stallTimeout = time.Second

// TestStalledClientIsCancelled: clients that open Generate streams and never read
// them (their flow-control windows full) must not hold the servers' capacity. One
// stalls on the router, another on the verifier itself, whose per-peer limit gives the
// one address of both (and of the router) three streams (--max-streams-per-peer 3). Each
// stalled stream held one of the three for as long as its client stayed connected
// (the router's, its relay's stream to the verifier while the generation lasted, and
// its own handler and buffers after), so that of three requests at once one was
// refused RESOURCE_EXHAUSTED. With the send-stall timeout each stalled stream ends
// DEADLINE_EXCEEDED after it, freeing what it held: while they stall others are
// served, and after the timeout three at once are.
func TestStalledClientIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })

	vl, rl := freeListener(t), freeListener(t)
	stalls := &stallCount{n: map[string]int{}}
	ready := make(chan struct{})
	eng := services.EngineConfig{Threads: 1, KVBudget: 16 << 20, KVType: ggml.F32, MaxBlock: 16}
	run(func() error {
		return serve.Verifier(ctx, serve.Worker{Load: loader(t, "specd-target-q8_0"), Engine: eng, Log: quiet,
			Limits: services.Limits{MaxStreamsPerPeer: 3, SendStallTimeout: stallTimeout, SendStalled: stalls.add("verifier")},
			Ready:  func(*model.Model) { close(ready) }},
			verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}, Drafts: router.NewStatic()}, vl)
	})
	<-ready
	routerReady := make(chan struct{})
	run(func() error {
		return serve.Router(ctx, serve.RouterConfig{Verifiers: []string{vl.Addr().String()}, Refresh: 100 * time.Millisecond,
			Limits: services.Limits{SendStallTimeout: stallTimeout, SendStalled: stalls.add("router")}, Log: quiet, Ready: func() { close(routerReady) }}, rl)
	})
	<-routerReady
	client := specdv1.NewGenerationServiceClient(dialT(t, rl.Addr().String()))
	waitModels(t, client, 1)

	// The stalled clients: the smallest windows gRPC allows (64 KiB, which also turns
	// off their growth), and never a Recv. Every token carries 20 alternatives, so a
	// generation fills the windows and the server's send buffer (64 KiB) over again.
	stallingConn := func(addr string) *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	long := &specdv1.GenerateRequest{Prompt: "Once upon a time", Sampling: &specdv1.SamplingParams{Temperature: 1, Seed: proto.Uint64(3)},
		Logprobs: true, TopLogprobs: 20, Speculation: &specdv1.SpeculationOptions{Disabled: true}}
	stalled, err := specdv1.NewGenerationServiceClient(stallingConn(rl.Addr().String())).Generate(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	stalledV, err := speculationv1.NewVerifierServiceClient(stallingConn(vl.Addr().String())).Generate(ctx, &speculationv1.GenerateRequest{Request: long})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// Meanwhile a client that reads is served.
	short := &specdv1.GenerateRequest{Prompt: "The cat", MaxTokens: 8, Speculation: &specdv1.SpeculationOptions{Disabled: true}}
	time.Sleep(200 * time.Millisecond)
	if _, err := client.Complete(ctx, short); err != nil {
		t.Errorf("Complete while a client stalls: %v", err)
	}

	// Once each generation has filled its client's windows (170 KB of tokens and
	// alternatives) and the timeout has passed, each server ends its stalled stream.
	// (Under the race detector a generation takes seconds; while it runs it rightly
	// holds its stream.)
	waitFor(t, 30*time.Second, "both stalled streams cut", func() bool {
		return stalls.get("router/specd.v1.GenerationService/Generate") == 1 &&
			stalls.get("verifier/specd.speculation.v1.VerifierService/Generate") == 1
	})
	if d := time.Since(start); d < stallTimeout {
		t.Errorf("stalled streams cut %v after they started, before the timeout of %v", d, stallTimeout)
	}
	// So three requests at once fit the verifier's three streams for the address.
	for deadline := time.Now().Add(5 * time.Second); ; {
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := client.Complete(ctx, short)
				errs <- err
			}()
		}
		var failed error
		for range 3 {
			if err := <-errs; err != nil {
				failed = err
			}
		}
		if failed == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Complete after the stalled streams were cut: %v, want served", failed)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The stalled clients, reading at last, get what was buffered, then the status
	// that ended their streams.
	for err == nil {
		_, err = stalled.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "send-stall-timeout") {
		t.Errorf("the router's stalled stream ended with %v, want DEADLINE_EXCEEDED naming --send-stall-timeout", err)
	}
	for err = nil; err == nil; {
		_, err = stalledV.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "send-stall-timeout") {
		t.Errorf("the verifier's stalled stream ended with %v, want DEADLINE_EXCEEDED naming --send-stall-timeout", err)
	}
}

// stallCount counts the streams each server ended for a stall, by server and method.
type stallCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *stallCount) add(server string) func(context.Context, string) {
	return func(_ context.Context, method string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.n[server+method]++
	}
}

func (c *stallCount) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// TestStalledHTTPClientIsCut: an HTTP client of the OpenAI front door that stops
// reading a streamed completion is cut off once a write to it has waited the
// send-stall timeout: the front door closes the connection and ends its generations.
// Before, the write waited for as long as the client stayed connected (the router,
// no longer read, ended the generations' streams, and the client, reading at last,
// found an error event after the buffered tokens). The server's socket buffer is
// held small, as a busy host's would fill.
func TestStalledHTTPClientIsCut(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := goServe(t, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })
	vaddr := startVerifierOf(t, ctx, run, "specd-target-q8_0")
	rl := freeListener(t)
	hl := smallSendBuffers{freeListener(t)}
	ready := make(chan struct{})
	run(func() error {
		return serve.Router(ctx, serve.RouterConfig{Verifiers: []string{vaddr}, Refresh: 100 * time.Millisecond,
			Limits: services.Limits{SendStallTimeout: stallTimeout}, HTTP: &serve.HTTPConfig{Listener: hl},
			Log: quiet, Ready: func() { close(ready) }}, rl)
	})
	<-ready
	waitModels(t, specdv1.NewGenerationServiceClient(dialT(t, rl.Addr().String())), 1)

	conn, err := net.Dial("tcp", hl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	body := `{"prompt": "Once upon a time", "max_tokens": 490, "temperature": 1, "seed": 3, "logprobs": 20, "stream": true}`
	if _, err := fmt.Fprintf(conn, "POST /v1/completions HTTP/1.1\r\nHost: specd\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		t.Fatal(err)
	}
	// Long enough for the generation (about 300 KB of events) to fill the buffers
	// and for the timeout to pass.
	time.Sleep(5 * stallTimeout)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the front door still holds the stalled connection open (%d bytes read)", len(got))
	}
	if s := string(got); strings.Contains(s, "data: [DONE]") || strings.Contains(s, `"error"`) {
		t.Errorf("the stalled client read %d bytes ending %q: want the connection cut, with no error event or [DONE]", len(s), s[max(0, len(s)-200):])
	}
}

// smallSendBuffers is a listener whose connections have small socket send buffers.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}
