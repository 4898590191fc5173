package verifiersvc_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
	"github.com/specd-dev/specd/verifier"
)

// fakeDraft is a DraftService on loopback whose Speculate is the test's function: a
// draft that misbehaves in ways the real one never does, speaking the real wire
// protocol. It records every Start it receives.
type fakeDraft struct {
	speculationv1.UnimplementedDraftServiceServer
	speculate func(start *speculationv1.Start, stream speculationv1.DraftService_SpeculateServer) error

	mu     sync.Mutex
	starts []*speculationv1.Start
}

func (f *fakeDraft) Speculate(stream speculationv1.DraftService_SpeculateServer) error {
	msg, err := stream.Recv()
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.starts = append(f.starts, msg.GetStart())
	f.mu.Unlock()
	if f.speculate == nil {
		// Take verdicts, propose nothing, until the verifier ends the stream.
		for {
			if _, err := stream.Recv(); err != nil {
				return nil
			}
		}
	}
	return f.speculate(msg.GetStart(), stream)
}

// Starts returns the Start messages received so far.
func (f *fakeDraft) Starts() []*speculationv1.Start {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.starts)
}

// startFakeDraft serves f on loopback until the test ends and returns its address.
func startFakeDraft(t *testing.T, f *fakeDraft) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	speculationv1.RegisterDraftServiceServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

// proposeAhead is a draft that knows the verifier's continuation want and proposes,
// from the end of the context, the tokens the verifier has committed as far as it
// knows, two more of want, and then bad's tokens — first after the context, then
// after every verdict (which tells it how far the verifier has got) — until the
// verifier ends the stream. A proposal that arrives late finds the verifier past
// its first bad token and draws a rollback verdict, and the draft tries again; one in
// time puts a bad token among the next 8 (fixed γ) a pass checks. dists, when not nil,
// gives the distributions of a proposal's tokens.
func proposeAhead(want []int32, bad []int32, dists func(tokens []int32) []*speculationv1.Distribution) func(*speculationv1.Start, speculationv1.DraftService_SpeculateServer) error {
	return func(start *speculationv1.Start, stream speculationv1.DraftService_SpeculateServer) error {
		ctx := len(start.GetContextIds())
		round, base, known := uint64(0), uint64(0), 0
		propose := func() error {
			round++
			toks := append(slices.Clone(want[:min(known+2, len(want))]), bad...)
			p := &speculationv1.Proposal{Round: round, BaseSeq: base, StartPosition: uint32(ctx), Tokens: toks}
			if dists != nil {
				p.Probs = dists(toks)
			}
			return stream.Send(&speculationv1.SpeculateResponse{Kind: &speculationv1.SpeculateResponse_Proposal{Proposal: p}})
		}
		if err := propose(); err != nil {
			return nil
		}
		for {
			msg, err := stream.Recv()
			if err != nil {
				return nil
			}
			v := msg.GetVerdict()
			base, known = v.GetSeq(), int(v.GetPosition())+len(v.GetTokens())-ctx
			if err := propose(); err != nil {
				return nil
			}
		}
	}
}

// generateAll runs req to its end and returns its token ids and final stats.
func generateAll(ctx context.Context, client speculationv1.VerifierServiceClient, req *speculationv1.GenerateRequest) ([]int32, *specdv1.Stats, error) {
	st, err := client.Generate(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var ids []int32
	var stats *specdv1.Stats
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) && stats != nil {
			return ids, stats, nil
		}
		if err != nil {
			return ids, nil, err
		}
		ids = append(ids, msg.GetChunk().GetTokenIds()...)
		if f := msg.GetFinal(); f != nil {
			stats = f.GetStats()
		}
	}
}

// TestMalformedProposal: a draft that proposes tokens outside the vocabulary, or
// distributions that do not fit their tokens, is a failed peer like an unreachable
// one: the verifier drops it and decodes on plainly, and the request ends as it would
// have without a draft. No client's request fails for it, not the one the draft
// serves nor another sharing the verifier's passes, and the verifier does not crash.
func TestMalformedProposal(t *testing.T) {
	checkLeaks(t)
	const vocab = 4096 // specd-target-q8_0.gguf
	sampled := &specdv1.SamplingParams{Temperature: 0.8, Seed: ptr(uint64(7))}
	// Each token's distribution: the token alone, with probability p (of ids ids).
	each := func(f func(tok int32) *speculationv1.Distribution) func([]int32) []*speculationv1.Distribution {
		return func(toks []int32) (ds []*speculationv1.Distribution) {
			for _, t := range toks {
				ds = append(ds, f(t))
			}
			return ds
		}
	}
	for _, c := range []struct {
		name     string
		sampling *specdv1.SamplingParams
		mode     specdv1.VerificationMode
		bad      []int32
		dists    func([]int32) []*speculationv1.Distribution
	}{
		{name: "token past the vocabulary", bad: []int32{vocab + 3, 5}},
		{name: "negative token", bad: []int32{-2}},
		{name: "fewer probabilities than ids", sampling: sampled, mode: specdv1.VerificationMode_VERIFICATION_MODE_REJECTION, bad: []int32{100},
			dists: each(func(tok int32) *speculationv1.Distribution {
				return &speculationv1.Distribution{Ids: []int32{(tok + 1) % vocab, tok}, Probs: []float32{1}}
			})},
		{name: "no distributions in rejection mode", sampling: sampled, mode: specdv1.VerificationMode_VERIFICATION_MODE_REJECTION, bad: []int32{100}},
		{name: "probability not a number", sampling: sampled, mode: specdv1.VerificationMode_VERIFICATION_MODE_REJECTION, bad: []int32{100},
			dists: each(func(tok int32) *speculationv1.Distribution {
				return &speculationv1.Distribution{Ids: []int32{tok}, Probs: []float32{float32(math.NaN())}}
			})},
		{name: "distribution id outside the vocabulary", sampling: sampled, mode: specdv1.VerificationMode_VERIFICATION_MODE_REJECTION, bad: []int32{100},
			dists: each(func(tok int32) *speculationv1.Distribution {
				return &speculationv1.Distribution{Ids: []int32{tok, vocab + 1}, Probs: []float32{0.5, 0.5}}
			})},
		// A support larger than the vocabulary repeats ids; judging by it costs the
		// verifier's pass (every request in it) a search of it per id of the target's.
		{name: "distribution larger than the vocabulary", sampling: sampled, mode: specdv1.VerificationMode_VERIFICATION_MODE_REJECTION, bad: []int32{100},
			dists: each(func(tok int32) *speculationv1.Distribution {
				ids, probs := make([]int32, vocab+1), make([]float32, vocab+1)
				for i := range ids {
					ids[i], probs[i] = (tok+int32(i))%vocab, 1/float32(vocab+1)
				}
				return &speculationv1.Distribution{Ids: ids, Probs: probs}
			})},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake := &fakeDraft{}
			draft := startFakeDraft(t, fake)
			ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
				Engine: verifiersvc.EngineConfig{Threads: 1}})
			req := func(spec *specdv1.SpeculationOptions) *speculationv1.GenerateRequest {
				return &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
					Prompt: "Once upon a time", MaxTokens: 120, Sampling: c.sampling, Speculation: spec}}
			}
			want, _, err := generateAll(ctx, client, req(&specdv1.SpeculationOptions{Disabled: true, Mode: c.mode}))
			if err != nil {
				t.Fatalf("plain: %v", err)
			}
			fake.speculate = proposeAhead(want, c.bad, c.dists)
			// Another client's request runs beside it, sharing passes.
			other := make(chan error, 1)
			go func() {
				_, _, err := generateAll(ctx, client, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
					Prompt: "The quick brown fox", MaxTokens: 120, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
				other <- err
			}()
			got, stats, err := generateAll(ctx, client, req(&specdv1.SpeculationOptions{Gamma: 8, Mode: c.mode}))
			if err != nil {
				t.Fatalf("with the misbehaving draft: %v, want the request served", err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("with the misbehaving draft: %v\nwant %v (plain)", got, want)
			}
			if stats.GetFallbacks() == 0 || stats.GetDraftedTokens() != 0 {
				t.Errorf("stats: %d fallbacks, %d drafted tokens; want the draft dropped before any of its tokens was checked", stats.GetFallbacks(), stats.GetDraftedTokens())
			}
			if err := <-other; err != nil {
				t.Errorf("another client's request beside it: %v", err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestDraftStartGamma: the γ a request's draft starts with (before any verdict sets
// it) obeys the same limits as every later one: a client's max_gamma and fixed gamma
// only lower the server's --max-gamma, never raise it.
func TestDraftStartGamma(t *testing.T) {
	checkLeaks(t)
	fake := &fakeDraft{}
	draft := startFakeDraft(t, fake)
	ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
		Engine: verifiersvc.EngineConfig{Threads: 1, Sched: verifier.Config{MaxGamma: 6}}})
	for _, c := range []struct {
		opt  *specdv1.SpeculationOptions
		want uint32
	}{
		{&specdv1.SpeculationOptions{}, 4},
		{&specdv1.SpeculationOptions{MaxGamma: 2}, 2},
		{&specdv1.SpeculationOptions{MaxGamma: 20}, 4},
		{&specdv1.SpeculationOptions{Gamma: 3}, 3},
		{&specdv1.SpeculationOptions{Gamma: 20}, 6},
		{&specdv1.SpeculationOptions{Gamma: 5, MaxGamma: 2}, 2},
	} {
		n := len(fake.Starts())
		_, _, err := generateAll(ctx, client, &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: 4, Speculation: c.opt}})
		if err != nil {
			t.Fatalf("%v: %v", c.opt, err)
		}
		starts := fake.Starts()
		if len(starts) != n+1 {
			t.Fatalf("%v: the draft got %d starts, want 1", c.opt, len(starts)-n)
		}
		if g := starts[n].GetGamma(); g != c.want {
			t.Errorf("speculation {%v} with --max-gamma 6: the draft starts with γ %d, want %d", c.opt, g, c.want)
		}
	}
}

// TestLargerThanBudget: a request that would not fit in the verifier's KV budget even
// alone is a bad argument, not RESOURCE_EXHAUSTED: no retry would ever serve it, and
// RESOURCE_EXHAUSTED promises a retry hint. One that fits is served.
func TestLargerThanBudget(t *testing.T) {
	checkLeaks(t)
	// 6 MiB: six blocks of 64 positions of the target (1 MiB each), less than its
	// context of 512 positions.
	ctx, addr := startService(t, "specd-target-q8_0.gguf", 6<<20, func(ctx context.Context, w serve.Worker, lis net.Listener) error {
		return serve.Verifier(ctx, w, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}}, lis)
	})
	cc, err := services.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := speculationv1.NewVerifierServiceClient(cc)
	for _, c := range []struct {
		maxTokens uint32
		want      codes.Code
	}{
		{0, codes.InvalidArgument}, // up to the context: 512 positions
		{400, codes.InvalidArgument},
		{100, codes.OK},
	} {
		err := generatePlain(ctx, client, "Once upon a time", c.maxTokens)
		s := status.Convert(err)
		if s.Code() != c.want {
			t.Errorf("max_tokens %d with a budget of 6 blocks: %v, want %v", c.maxTokens, err, c.want)
			continue
		}
		if c.want != codes.InvalidArgument {
			continue
		}
		var field string
		for _, d := range s.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
				field = br.GetFieldViolations()[0].GetField()
			}
		}
		if field != "max_tokens" {
			t.Errorf("max_tokens %d: %v names field %q, want max_tokens", c.maxTokens, err, field)
		}
	}
}

// TestRealDraftProposalsPass: the proposals of the real draft — greedy, coupled and
// in rejection mode with its distributions — pass the verifier's check of proposals
// (TestMalformedProposal): they are verified, and the draft is never dropped.
func TestRealDraftProposalsPass(t *testing.T) {
	checkLeaks(t)
	draft := startDraft(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
		Engine: verifiersvc.EngineConfig{Threads: 1}})
	sampled := &specdv1.SamplingParams{Temperature: 0.8, Seed: ptr(uint64(7))}
	for _, c := range []struct {
		name     string
		sampling *specdv1.SamplingParams
		mode     specdv1.VerificationMode
	}{
		{"greedy", nil, 0},
		{"coupled", sampled, specdv1.VerificationMode_VERIFICATION_MODE_COUPLED},
		{"rejection", sampled, specdv1.VerificationMode_VERIFICATION_MODE_REJECTION},
	} {
		// A just-started draft on a busy machine may first propose after a request
		// has ended (see TestDraftAddressOutsideView): try a few times (in one CI run
		// under full load, ten sampled requests in a row finished first).
		for try := 1; ; try++ {
			_, stats, err := generateAll(ctx, client, &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
				Prompt: "Once upon a time", MaxTokens: 64, Sampling: c.sampling, Speculation: &specdv1.SpeculationOptions{Gamma: 4, Mode: c.mode}}})
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if stats.GetFallbacks() != 0 {
				t.Fatalf("%s: the real draft was dropped (%d fallbacks)", c.name, stats.GetFallbacks())
			}
			if stats.GetDraftedTokens() > 0 {
				break
			}
			if try == 40 {
				t.Fatalf("%s: no draft token checked in %d requests", c.name, try)
			}
		}
	}
}

// TestDraftOpenedOnlyOnAdmission: a request's draft stream is opened once the request
// is admitted, never for one refused — at once (its queue full, or more than the whole
// KV budget) or after waiting past --queue-wait — nor while it waits: a refused
// request would cost the draft a session, a prefill and a stream to tear down for
// nothing. An admitted request still gets its draft.
func TestDraftOpenedOnlyOnAdmission(t *testing.T) {
	checkLeaks(t)
	fake := &fakeDraft{}
	draft := startFakeDraft(t, fake)
	cfg := verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}), QueueWait: 100 * time.Millisecond,
		Engine: verifiersvc.EngineConfig{Threads: 1, Sched: verifier.Config{MaxRunning: 1, MaxQueue: 1}}}
	// 6 MiB: six KV blocks of 64 positions, less than the context of 512.
	ctx, client := startVerifierWith(t, 6<<20, nil, cfg)
	speculative := func(ctx context.Context, maxTokens uint32) error {
		_, _, err := generateAll(ctx, client, &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: maxTokens, Speculation: &specdv1.SpeculationOptions{Gamma: 4}}})
		return err
	}
	if err := speculative(ctx, 0); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a request larger than the KV budget: %v, want INVALID_ARGUMENT", err)
	}
	// A plain request runs (300 greedy tokens from this prompt: it never ends early);
	// one speculative request waits past the queue wait, another finds the queue full.
	hold, stop := context.WithCancel(ctx)
	defer stop()
	st, err := client.Generate(hold, &speculationv1.GenerateRequest{Request: &specdv1.GenerateRequest{
		Prompt: "Once upon a time", MaxTokens: 300, Speculation: &specdv1.SpeculationOptions{Disabled: true}}})
	if err == nil {
		_, err = st.Recv()
	}
	if err != nil {
		t.Fatalf("the running request: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- speculative(ctx, 8) }()
	time.Sleep(30 * time.Millisecond)
	if err := speculative(ctx, 8); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a request finding the queue full: %v, want RESOURCE_EXHAUSTED", err)
	}
	if err := <-waited; status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a request waiting past --queue-wait: %v, want RESOURCE_EXHAUSTED", err)
	}
	stop()
	if n := len(fake.Starts()); n != 0 {
		t.Errorf("the draft got %d session starts from requests never admitted, want 0", n)
	}
	// Admitted, a request opens its draft's stream.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err := speculative(ctx, 8)
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("a request on the idle verifier: %v", err)
		}
	}
	if n := len(fake.Starts()); n != 1 {
		t.Errorf("an admitted request: the draft got %d session starts, want 1", n)
	}
}

// TestNoDraftForOneToken: a request with one token left to generate (max_tokens 1, or
// resumed one token short of it) takes that token from its prompt's pass, and no
// proposal could ever be checked: the verifier does not open a draft stream for it,
// which would only cost the draft a session and a prefill. One with two tokens left
// opens it.
func TestNoDraftForOneToken(t *testing.T) {
	checkLeaks(t)
	fake := &fakeDraft{}
	draft := startFakeDraft(t, fake)
	ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
		Engine: verifiersvc.EngineConfig{Threads: 1}})
	speculative := func(maxTokens uint32, resume []int32) []int32 {
		t.Helper()
		ids, _, err := generateAll(ctx, client, &speculationv1.GenerateRequest{DraftAddress: draft, ResumeIds: resume, Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: maxTokens, Speculation: &specdv1.SpeculationOptions{Gamma: 4}}})
		if err != nil {
			t.Fatalf("max_tokens %d, %d resumed: %v", maxTokens, len(resume), err)
		}
		return ids
	}
	if ids := speculative(1, nil); len(ids) != 1 {
		t.Fatalf("max_tokens 1: %d tokens, want 1", len(ids))
	}
	if n := len(fake.Starts()); n != 0 {
		t.Errorf("max_tokens 1: the draft got %d session starts, want 0", n)
	}
	first := speculative(4, nil)
	if n := len(fake.Starts()); n != 1 {
		t.Fatalf("max_tokens 4: the draft got %d session starts, want 1", n)
	}
	if ids := speculative(4, first[:3]); !slices.Equal(ids, first[3:]) {
		t.Errorf("resumed one token short of max_tokens: generated %v, want %v", ids, first[3:])
	}
	if n := len(fake.Starts()); n != 1 {
		t.Errorf("resumed one token short of max_tokens: the draft got %d session starts in all, want 1", n)
	}
}

// TestDraftMaxPositionOfResumedRequest: a resumed request's draft may propose up to the
// request's last position but one (the last token is always the verifier's own) —
// max_tokens counts the resumed tokens, so its end does not move with them.
func TestDraftMaxPositionOfResumedRequest(t *testing.T) {
	checkLeaks(t)
	fake := &fakeDraft{}
	draft := startFakeDraft(t, fake)
	ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
		Engine: verifiersvc.EngineConfig{Threads: 1}})
	const maxTokens = 12
	req := func(resume []int32) *speculationv1.GenerateRequest {
		return &speculationv1.GenerateRequest{DraftAddress: draft, ResumeIds: resume, Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: maxTokens, Speculation: &specdv1.SpeculationOptions{Gamma: 4}}}
	}
	ids, _, err := generateAll(ctx, client, req(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := generateAll(ctx, client, req(ids[:5])); err != nil {
		t.Fatal(err)
	}
	starts := fake.Starts()
	if len(starts) != 2 {
		t.Fatalf("the draft got %d session starts, want 2", len(starts))
	}
	for i, st := range starts {
		prompt := len(st.GetContextIds()) - 5*i
		if got, want := st.GetMaxPosition(), uint32(prompt-1+maxTokens); got != want {
			t.Errorf("start %d (%d tokens resumed): max_position %d, want %d", i, 5*i, got, want)
		}
	}
}
