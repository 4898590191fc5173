package serve_test

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
)

// TestVerifierKilledMidStream: with two verifiers up, the one serving a request is
// killed with SIGKILL mid-stream; the router resumes on the other from the tokens
// already streamed, and the client's stream completes with the plain greedy output —
// no token missing, none repeated, positions consecutive.
func TestVerifierKilledMidStream(t *testing.T) {
	s, victim, text := twoVerifiers(t)
	want := s.plain(t, text, 120, sample.Params{})
	got, final := s.killMidStream(t, victim, request(text, 120, 0, 0, 4))
	if !slices.Equal(got, want) {
		t.Errorf("output across the failover differs from plain:\n got %v\nwant %v", got, want)
	}
	if final.GetStats().GetFailovers() != 1 {
		t.Errorf("stats report %d failovers, want 1", final.GetStats().GetFailovers())
	}
}

// TestVerifierKilledMidStreamSeeded is TestVerifierKilledMidStream for a seeded request
// in coupled mode, with filters and every penalty: the verifier that resumes draws each
// token with the noise of its position and penalizes the tokens streamed before the
// failover as output, so the text is still plain decoding's with that seed.
func TestVerifierKilledMidStreamSeeded(t *testing.T) {
	s, victim, text := twoVerifiers(t)
	sp := sample.Params{Temperature: 0.8, TopK: 40, TopP: 0.95, Seed: 7, RepetitionPenalty: 1.1, FrequencyPenalty: 0.3, PresencePenalty: 0.2}
	want := s.plain(t, text, 120, sp)
	req := &specdv1.GenerateRequest{Prompt: text, MaxTokens: 120, Sampling: services.SamplingToProto(sp),
		Speculation: &specdv1.SpeculationOptions{Gamma: 4, Mode: specdv1.VerificationMode_VERIFICATION_MODE_COUPLED}}
	got, final := s.killMidStream(t, victim, req)
	if !slices.Equal(got, want) {
		t.Errorf("seeded output across the failover differs from plain:\n got %v\nwant %v", got, want)
	}
	if final.GetStats().GetFailovers() != 1 {
		t.Errorf("stats report %d failovers, want 1", final.GetStats().GetFailovers())
	}
}

// killMidStream sends req, kills victim with SIGKILL once 10 tokens have streamed, and
// returns every token streamed and the final message, failing t on a broken stream or
// positions that skip or repeat.
func (s *stack) killMidStream(t *testing.T, victim *proc, req *specdv1.GenerateRequest) ([]int32, *specdv1.Final) {
	t.Helper()
	return s.faultMidStream(t, context.Background(), func() { victim.kill(t) }, req)
}

// faultMidStream is killMidStream with the request's context ctx and the fault done
// once 10 tokens have streamed.
func (s *stack) faultMidStream(t *testing.T, ctx context.Context, fault func(), req *specdv1.GenerateRequest) ([]int32, *specdv1.Final) {
	t.Helper()
	st, err := s.client.Generate(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var got []int32
	var last uint32
	killed := false
	for {
		msg, err := st.Recv()
		if err != nil {
			t.Fatalf("stream broke: %v (after %d tokens)", err, len(got))
		}
		c := msg.GetChunk()
		if c == nil {
			return got, msg.GetFinal()
		}
		for _, p := range c.GetPositions() {
			if len(got) > 0 && p != last+1 {
				t.Fatalf("position %d follows %d: gap or repeat", p, last)
			}
			last = p
			got = append(got, 0)
		}
		got = append(got[:len(got)-len(c.GetTokenIds())], c.GetTokenIds()...)
		if len(got) >= 10 && !killed {
			fault()
			killed = true
		}
	}
}

// TestVerifierHungMidStream: the verifier serving a request stops answering — SIGSTOP,
// as a hung process or a network dropping its packets would — with its connection
// still open. The router gives its stream up once the verifier has left its health
// probes unanswered for routersvc.HungAfter and resumes on the other verifier; before,
// the stream waited for the connection's keepalive to fail (40 s), past the 30 s
// deadline this request has. The output is plain decoding's, with one failover.
func TestVerifierHungMidStream(t *testing.T) {
	s, victim, text := twoVerifiers(t)
	want := s.plain(t, text, 120, sample.Params{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, final := s.faultMidStream(t, ctx, func() { victim.signal(t, syscall.SIGSTOP) }, request(text, 120, 0, 0, 4))
	if !slices.Equal(got, want) {
		t.Errorf("output across the failover differs from plain:\n got %v\nwant %v", got, want)
	}
	if final.GetStats().GetFailovers() != 1 {
		t.Errorf("stats report %d failovers, want 1", final.GetStats().GetFailovers())
	}
}

// twoVerifiers starts a draft, two verifiers and a router, and returns the stack (its
// verifier field the verifier that is not the victim), the verifier that the router's
// affinity sends the returned prompt to, and the prompt.
func twoVerifiers(t *testing.T) (*stack, *proc, string) {
	t.Helper()
	d := startDraftProcess(t)
	va := startProcess(t, "verifier", "-m", "specd-target-q8_0", "--drafts", d.addr)
	vb := startProcess(t, "verifier", "-m", "specd-target-q8_0", "--drafts", d.addr)
	client := startRouter(t, serve.RouterConfig{Verifiers: []string{va.addr, vb.addr}, Drafts: []string{d.addr}, Refresh: 100 * time.Millisecond,
		Breakers: services.NewBreakers(3, time.Second)})
	text := "It was the best of times, it was the worst of times, it was the age of"
	// The router's affinity key for a text prompt is its head; find who serves it.
	first, _, _ := router.Pick(router.NewStatic(
		router.Endpoint{ID: va.addr, Address: va.addr, Role: router.Verifier},
		router.Endpoint{ID: vb.addr, Address: vb.addr, Role: router.Verifier}), text, nil, nil)
	if first.ID == vb.addr {
		return &stack{client: client, target: loadTarget(t), verifier: va.addr}, vb, text
	}
	return &stack{client: client, target: loadTarget(t), verifier: vb.addr}, va, text
}

// TestRestartedVerifierThenOtherDies is the fault run of issue 14: of two verifiers,
// the one a prompt's affinity picks is killed and restarted on the same address while
// the router keeps polling it (so its old connection sits in reconnect backoff); then
// a request for that prompt starts, and the other verifier is killed mid-stream. The
// client must get its whole greedy output: the restarted verifier is SERVING, and the
// request must not have spent an attempt on a stale connection to it.
func TestRestartedVerifierThenOtherDies(t *testing.T) {
	d := startDraftProcess(t)
	va := startProcess(t, "verifier", "-m", "specd-target-q8_0", "--drafts", d.addr)
	vb := startProcess(t, "verifier", "-m", "specd-target-q8_0", "--drafts", d.addr)
	client := startRouter(t, serve.RouterConfig{Verifiers: []string{va.addr, vb.addr}, Drafts: []string{d.addr}, Refresh: 100 * time.Millisecond,
		HealthInterval: 100 * time.Millisecond, Breakers: services.NewBreakers(3, 10*time.Second)})

	s := &stack{client: client, target: loadTarget(t)}
	text := "It was the best of times, it was the worst of times, it was the age of"
	want := s.plain(t, text, 120, sample.Params{})
	first, _, _ := router.Pick(router.NewStatic(
		router.Endpoint{ID: va.addr, Address: va.addr, Role: router.Verifier},
		router.Endpoint{ID: vb.addr, Address: vb.addr, Role: router.Verifier}), text, nil, nil)
	affine, other := va, vb
	if first.ID == vb.addr {
		affine, other = vb, va
	}
	affine.kill(t)
	affine.cmd.Wait()
	time.Sleep(5 * time.Second) // the router's polls fail meanwhile: gRPC's own backoff would grow past 4 s
	startProcessAt(t, affine.addr, "verifier", "-m", "specd-target-q8_0", "--drafts", d.addr)

	st, err := client.Generate(context.Background(), request(text, 120, 0, 0, 4))
	if err != nil {
		t.Fatal(err)
	}
	var got []int32
	killed := false
	for {
		msg, err := st.Recv()
		if err != nil {
			t.Fatalf("stream broke after %d tokens: %v", len(got), err)
		}
		if c := msg.GetChunk(); c != nil {
			got = append(got, c.GetTokenIds()...)
			if len(got) >= 10 && !killed {
				other.kill(t)
				killed = true
			}
			continue
		}
		break
	}
	if !slices.Equal(got, want) {
		t.Errorf("output differs from plain:\n got %v\nwant %v", got, want)
	}
}

// startRouter serves a router with cfg on a free loopback port until the test ends,
// and returns a client once it lists both models.
func startRouter(t *testing.T, cfg serve.RouterConfig) specdv1.GenerationServiceClient {
	t.Helper()
	rl := freeListener(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ready := make(chan struct{})
	cfg.Log, cfg.Ready = quiet, func() { close(ready) }
	goServe(t, &wg)(func() error { return serve.Router(ctx, cfg, rl) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	<-ready
	cc, err := services.Dial(rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := specdv1.NewGenerationServiceClient(cc)
	waitModels(t, client, 2)
	return client
}

// TestFailoverFinalStats: the final message's durations are the router's, from the
// request to the first token and to the end (as the proto says), not those of the
// verifier that finished a request resumed late: the client's first token came from the
// verifier that was killed, and most of the generation ran there.
func TestFailoverFinalStats(t *testing.T) {
	s, victim, text := twoVerifiers(t)
	const n = 300
	want := s.plain(t, text, n, sample.Params{})
	if len(want) < 200 {
		t.Fatalf("plain decoding ends after %d tokens; the test needs a long generation", len(want))
	}
	t0 := time.Now()
	st, err := s.client.Generate(context.Background(), request(text, n, 0, 0, 4))
	if err != nil {
		t.Fatal(err)
	}
	var got []int32
	var tFirst time.Time
	var final *specdv1.Final
	for final == nil {
		msg, err := st.Recv()
		if err != nil {
			t.Fatalf("stream broke: %v (after %d tokens)", err, len(got))
		}
		if c := msg.GetChunk(); c != nil {
			if tFirst.IsZero() && len(c.GetTokenIds()) > 0 {
				tFirst = time.Now()
			}
			before := len(got)
			got = append(got, c.GetTokenIds()...)
			if before < len(want)*3/4 && len(got) >= len(want)*3/4 {
				victim.kill(t)
			}
		}
		final = msg.GetFinal()
	}
	end := time.Now()
	if !slices.Equal(got, want) {
		t.Fatalf("output across the failover differs from plain:\n got %v\nwant %v", got, want)
	}
	stats := final.GetStats()
	if stats.GetFailovers() != 1 {
		t.Fatalf("stats report %d failovers, want 1 (the kill came too late?)", stats.GetFailovers())
	}
	// The router's clock starts after the client's and stops before it, by a loopback hop.
	if total, seen := stats.GetTotalDuration().AsDuration(), end.Sub(t0); total > seen || total < seen*3/5 {
		t.Errorf("total_duration %v; the client saw %v from the request to the final message", total, seen)
	}
	if ttft, seen := stats.GetTimeToFirstToken().AsDuration(), tFirst.Sub(t0); ttft > seen {
		t.Errorf("time_to_first_token %v; the client had its first token after %v", ttft, seen)
	}
	if rate, seen := stats.GetDecodeTokensPerSecond(), float64(len(got)-1)/end.Sub(tFirst).Seconds(); rate > 1.5*seen {
		t.Errorf("decode_tokens_per_second %.0f; the client saw %.0f", rate, seen)
	}
}
