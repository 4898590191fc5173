package draftsvc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/draft"
	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/internal/testnet"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func loadDraft(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.Load(testmodels.ForTest(t, "specd-draft-q8_0.gguf"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// serveDraft serves a draft service for m on loopback with a KV budget of kvBlocks
// blocks, until the test ends; it returns a client and the engines.
func serveDraft(t *testing.T, m *model.Model, kvBlocks int) (speculationv1.DraftServiceClient, *services.Engine) {
	c, eng, _ := serveDraftLimited(t, m, kvBlocks, services.Limits{})
	return c, eng
}

// serveDraftLimited is serveDraft with the server's limits, returning its address too.
func serveDraftLimited(t *testing.T, m *model.Model, kvBlocks int, lim services.Limits) (speculationv1.DraftServiceClient, *services.Engine, string) {
	t.Helper()
	probe, err := m.NewKVPool(1<<30, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := services.NewEngine(m, services.EngineConfig{Threads: 1, KVBudget: int64(kvBlocks * probe.BlockBytes()), KVType: ggml.F32, MaxBlock: 16})
	if err != nil {
		t.Fatal(err)
	}
	ds := draftsvc.New(draftsvc.Config{Depth: 2, Threads: 1, Prefill: 32}, quiet)
	srv := services.NewServer("specd.speculation.v1.DraftService", quiet, lim)
	speculationv1.RegisterDraftServiceServer(srv.GRPC, ds)
	ds.SetEngine(eng)
	srv.SetServing()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis, 5*time.Second) }()
	conn, err := services.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		ds.Close()
	})
	return speculationv1.NewDraftServiceClient(conn), eng, lis.Addr().String()
}

// prompts returns n different contexts of 12 to 40 tokens.
func prompts(m *model.Model, n int) [][]int32 {
	texts := []string{"Once upon a time", "It is a truth universally acknowledged, that", "In the beginning God created", "def main():"}
	out := make([][]int32, n)
	for i := range out {
		p := m.Tok.Encode(fmt.Sprintf("%s %d, %s", texts[i%len(texts)], i, texts[(i+1)%len(texts)]), true)
		out[i] = p
	}
	return out
}

// verify plays a verifier on one Speculate stream for rounds verdicts: it accepts every
// proposal based on its last verdict in full and adds a bonus token of its own (so the
// draft rolls back its pipelined round), then closes its side. It returns the first
// proposal.
func verify(ctx context.Context, c speculationv1.DraftServiceClient, prompt []int32, rounds int) (spec.Proposal, error) {
	st, err := c.Speculate(ctx)
	if err != nil {
		return spec.Proposal{}, err
	}
	if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Start{Start: &speculationv1.Start{
		ContextIds: prompt, Gamma: 4, MaxPosition: 512}}}); err != nil {
		return spec.Proposal{}, err
	}
	var first spec.Proposal
	seq := uint64(0)
	for seq < uint64(rounds) {
		msg, err := st.Recv()
		if err != nil {
			return first, err
		}
		p := services.ProposalFromProto(msg.GetProposal())
		if p.Round == 1 {
			first = p
		}
		if p.Base != seq {
			continue // drafted on a sequence the last verdict contradicted
		}
		seq++
		bonus := (p.Tokens[0] + 1) % 4096
		v := spec.Verdict{Round: p.Round, Seq: seq, Accepted: len(p.Tokens), Position: p.Start, Tokens: append(slices.Clone(p.Tokens), bonus), NextGamma: 4, Rollback: true}
		if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Verdict{Verdict: services.VerdictToProto(v)}}); err != nil {
			return first, err
		}
	}
	if err := st.CloseSend(); err != nil {
		return first, err
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return first, nil
			}
			return first, err
		}
	}
}

// TestManyStreams: 40 concurrent Speculate streams on one draft with 1 thread are all
// served — none is refused while the KV budget has room — each drafts what it would
// alone, and every KV block is back in the pool when they have ended.
func TestManyStreams(t *testing.T) {
	m := loadDraft(t)
	n, rounds := 40, 12
	if testing.Short() {
		n, rounds = 32, 5
	}
	c, eng := serveDraft(t, m, 2*n+8)
	ps := prompts(m, n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	firsts := make([]spec.Proposal, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { firsts[i], errs[i] = verify(ctx, c, ps[i], rounds) })
	}
	wg.Wait()
	kv, err := m.NewKVPool(8<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(1)
	defer pool.Close()
	alone := m.NewState(pool, kv.NewSeq(), 16)
	for i, err := range errs {
		if err != nil {
			t.Errorf("stream %d: %v", i, err)
			continue
		}
		s, err := draft.NewSession(alone, ps[i], spec.Options{Gamma: 4, MaxPosition: 512})
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := s.Draft(nil)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(firsts[i].Tokens, want.Tokens) || firsts[i].Start != want.Start {
			t.Errorf("stream %d: first proposal %v at %d, alone %v at %d", i, firsts[i].Tokens, firsts[i].Start, want.Tokens, want.Start)
		}
	}
	// Ended streams free their blocks as soon as the scheduler takes their stop.
	for deadline := time.Now().Add(10 * time.Second); eng.KV.Stats().Used != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if used := eng.KV.Stats().Used; used != 0 {
		t.Errorf("%d KV blocks still used after every stream ended", used)
	}
}

// TestKVBudgetFailsFast: beyond what the KV budget admits, a stream fails at once with
// RESOURCE_EXHAUSTED (the verifier then decodes plainly); a cancelled stream frees its
// blocks for the next.
func TestKVBudgetFailsFast(t *testing.T) {
	m := loadDraft(t)
	c, _ := serveDraft(t, m, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(ctx context.Context, prompt []int32) (speculationv1.DraftService_SpeculateClient, error) {
		return open(ctx, c, prompt)
	}
	ps := prompts(m, 4)
	held := make([]context.CancelFunc, 3)
	for i := range held {
		sctx, scancel := context.WithCancel(ctx)
		held[i] = scancel
		if _, err := open(sctx, ps[i]); err != nil {
			t.Fatalf("stream %d within the budget: %v", i, err)
		}
	}
	if _, err := open(ctx, ps[3]); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream beyond the budget: %v, want RESOURCE_EXHAUSTED", err)
	}
	held[0]()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err = open(ctx, ps[3]); status.Code(err) != codes.ResourceExhausted {
			break
		}
	}
	if err != nil {
		t.Errorf("stream after another was cancelled: %v, want served", err)
	}
	for _, f := range held[1:] {
		f()
	}
}

// open starts a Speculate stream and waits for its first proposal (or its refusal).
func open(ctx context.Context, c speculationv1.DraftServiceClient, prompt []int32) (speculationv1.DraftService_SpeculateClient, error) {
	st, err := c.Speculate(ctx)
	if err != nil {
		return nil, err
	}
	// A stream the server refuses at once can end before the start is sent: Send then
	// says io.EOF, and the refusal's status is what Recv reads.
	if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Start{Start: &speculationv1.Start{
		ContextIds: prompt, Gamma: 4}}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	_, err = st.Recv() // the first proposal, or the refusal
	return st, err
}

// clientFrom is a draft client whose connections come from the loopback address src,
// so that one test plays several peers.
func clientFrom(t *testing.T, src, addr string) speculationv1.DraftServiceClient {
	t.Helper()
	cc, err := services.Dial(addr, testnet.From(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return speculationv1.NewDraftServiceClient(cc)
}

// TestPeerCannotStarve is the regression test of defect 3 of issue 14 ("20 held
// Speculate streams made every user's request fall back to plain decoding"): a
// draft whose KV budget holds 3 sessions, one peer (127.0.0.2) opening as many
// Speculate streams as it can and holding them, and then the verifier's peer
// (127.0.0.1) asking for one. Without a per-peer limit the first peer takes the whole
// budget and the verifier's stream is refused; with --max-streams-per-peer 2 the
// first peer's third stream is refused at once (RESOURCE_EXHAUSTED, never a wait)
// and the verifier's stream is served and drafts.
func TestPeerCannotStarve(t *testing.T) {
	m := loadDraft(t)
	ps := prompts(m, 5)
	for _, c := range []struct {
		name         string
		perPeer      int
		wantHeld     int        // streams the hog holds before it is refused
		wantVerifier codes.Code // the other peer's stream
		wantRefusal  string     // in the hog's refusal
	}{
		{"no per-peer limit", 0, 3, codes.ResourceExhausted, "kv cache budget"},
		{"2 streams per peer", 2, 2, codes.OK, "streams per peer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, addr := serveDraftLimited(t, m, 3, services.Limits{MaxStreamsPerPeer: c.perPeer})
			hog, verifier := clientFrom(t, "127.0.0.2", addr), clientFrom(t, "127.0.0.1", addr)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			held := 0
			for held < len(ps)-1 {
				t0 := time.Now()
				_, err := open(ctx, hog, ps[held])
				if err != nil {
					if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), c.wantRefusal) {
						t.Fatalf("the hog's stream %d: %v, want RESOURCE_EXHAUSTED mentioning %q once refused", held, err, c.wantRefusal)
					}
					if d := time.Since(t0); d > 10*time.Second {
						t.Errorf("the hog's refusal took %v, want it at once", d)
					}
					break
				}
				held++
			}
			if held != c.wantHeld {
				t.Errorf("the hog holds %d streams, want %d", held, c.wantHeld)
			}
			st, err := open(ctx, verifier, ps[len(ps)-1])
			if status.Code(err) != c.wantVerifier {
				t.Fatalf("the verifier's stream beside the hog's: %v, want %v", err, c.wantVerifier)
			}
			if err == nil {
				if err := st.CloseSend(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestVerdictOutsideVocabulary: a verdict committing a token outside the draft's
// vocabulary (a verifier whose vocabulary is larger, as Qwen2.5-7B's padding is beside
// Qwen2.5-0.5B's, can commit one) ends that stream with INVALID_ARGUMENT, and the draft
// keeps serving other streams.
func TestVerdictOutsideVocabulary(t *testing.T) {
	m := loadDraft(t)
	c, _ := serveDraft(t, m, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, p := firstProposal(ctx, t, c, prompts(m, 1)[0])
	v := spec.Verdict{Round: p.Round, Seq: 1, Accepted: 0, Position: p.Start, Tokens: []int32{int32(m.Vocab) + 7}, NextGamma: 4, Rollback: true}
	if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Verdict{Verdict: services.VerdictToProto(v)}}); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		_, err = st.Recv()
	}
	if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "outside the vocabulary") {
		t.Errorf("stream ended with %v, want INVALID_ARGUMENT: outside the vocabulary", err)
	}
	if _, err := verify(ctx, c, prompts(m, 2)[1], 3); err != nil {
		t.Errorf("another stream after it: %v", err)
	}
}

// TestVerdictGammaBeyondContext: a verdict asking for more tokens per round than the
// draft's context holds ends that stream with INVALID_ARGUMENT. Taken as it came, it
// made the session's KV reserve so large that every other stream was refused
// RESOURCE_EXHAUSTED while it lived (and a session drafting branches would try to
// allocate a round of that many tokens). A start.gamma beyond it is INVALID_ARGUMENT too.
func TestVerdictGammaBeyondContext(t *testing.T) {
	m := loadDraft(t)
	c, _ := serveDraft(t, m, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, p := firstProposal(ctx, t, c, prompts(m, 1)[0])
	v := spec.Verdict{Round: p.Round, Seq: 1, Accepted: len(p.Tokens), Position: p.Start, Tokens: append(slices.Clone(p.Tokens), 1), NextGamma: 1 << 31}
	if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Verdict{Verdict: services.VerdictToProto(v)}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the verdict reaches the scheduler
	// The same bound holds for start.gamma, which was refused as RESOURCE_EXHAUSTED
	// (the KV budget), as if the draft were full, rather than as a bad request.
	bad, err := c.Speculate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Start{Start: &speculationv1.Start{
		ContextIds: prompts(m, 1)[0], Gamma: 1 << 31}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "start.gamma") {
		t.Errorf("start with gamma 2^31: %v, want INVALID_ARGUMENT naming start.gamma", err)
	}
	if _, err := verify(ctx, c, prompts(m, 2)[1], 3); err != nil {
		t.Errorf("another stream beside it: %v", err)
	}
	for err == nil {
		_, err = st.Recv()
	}
	if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "next_gamma") {
		t.Errorf("stream ended with %v, want INVALID_ARGUMENT naming next_gamma", err)
	}
}

// firstProposal opens a Speculate stream on c for prompt (γ 4) and returns it with the
// draft's first proposal.
func firstProposal(ctx context.Context, t *testing.T, c speculationv1.DraftServiceClient, prompt []int32) (speculationv1.DraftService_SpeculateClient, spec.Proposal) {
	t.Helper()
	st, err := c.Speculate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Start{Start: &speculationv1.Start{
		ContextIds: prompt, Gamma: 4, MaxPosition: 512}}}); err != nil {
		t.Fatal(err)
	}
	msg, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return st, services.ProposalFromProto(msg.GetProposal())
}

// TestVerdictBeyondContext: a verdict whose tokens run past the draft's context ends
// that stream with INVALID_ARGUMENT. Taken as it came, the session held a sequence it
// could never feed (no round fits after it, so it never drafted again) and the KV
// reserve of that sequence, so every other stream was refused RESOURCE_EXHAUSTED while
// it lived.
func TestVerdictBeyondContext(t *testing.T) {
	m := loadDraft(t)
	c, _ := serveDraft(t, m, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, p := firstProposal(ctx, t, c, prompts(m, 1)[0])
	toks := append(slices.Clone(p.Tokens), make([]int32, 256*m.Context)...)
	v := spec.Verdict{Round: p.Round, Seq: 1, Accepted: len(p.Tokens), Position: p.Start, Tokens: toks, NextGamma: 4}
	if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Verdict{Verdict: services.VerdictToProto(v)}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the verdict reaches the scheduler
	if _, err := verify(ctx, c, prompts(m, 2)[1], 3); err != nil {
		t.Errorf("another stream beside it: %v", err)
	}
	var err error
	for err == nil {
		_, err = st.Recv()
	}
	if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "verdict") {
		t.Errorf("stream ended with %v, want INVALID_ARGUMENT naming the verdict", err)
	}
}

// TestStartPromptTokensBeyondContext: a start whose prompt_tokens exceeds its
// context_ids is INVALID_ARGUMENT naming the field.
func TestStartPromptTokensBeyondContext(t *testing.T) {
	m := loadDraft(t)
	c, _ := serveDraft(t, m, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Speculate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := prompts(m, 1)[0]
	if err := st.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Start{Start: &speculationv1.Start{
		ContextIds: ids, Gamma: 2, PromptTokens: uint32(len(ids) + 1)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "start.prompt_tokens") {
		t.Errorf("prompt_tokens past the context: %v, want INVALID_ARGUMENT naming start.prompt_tokens", err)
	}
}
