package spec_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/specd-dev/specd/draft"
	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

type pair struct {
	target, draft *model.Model
	pool          *kernels.Pool
}

func loadPair(t *testing.T) pair {
	t.Helper()
	var p pair
	var err error
	if p.target, err = model.Load(testmodels.ForTest(t, "specd-target-q8_0.gguf"), model.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if p.draft, err = model.Load(testmodels.ForTest(t, "specd-draft-q8_0.gguf"), model.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	p.pool = kernels.NewPool(1)
	t.Cleanup(func() { p.target.Close(); p.draft.Close(); p.pool.Close() })
	return p
}

func state(t *testing.T, m *model.Model, pool *kernels.Pool) *model.State {
	kv, err := m.NewKVPool(32<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	return m.NewState(pool, kv.NewSeq(), 16)
}

func limits(m *model.Model, n int) generate.Limits {
	return generate.Limits{MaxTokens: n, Context: m.Context, End: m.Tok.EOG(), BOS: m.Tok.BOS()}
}

// simulate runs a draft and a verifier session against each other in one goroutine,
// with a random interleaving: the draft pipelines up to depth rounds ahead, verdicts
// reach it late, and the verifier sometimes decodes plainly instead of waiting.
func simulate(t *testing.T, p pair, prompt []int32, n int, sp sample.Params, mode spec.Mode, gamma, depth int, rng *rand.Rand) ([]int32, verifier.Stats) {
	t.Helper()
	return simulateLimits(t, p, prompt, limits(p.target, n), sp, mode, gamma, depth, rng)
}

// simulateLimits is simulate with the given limits.
func simulateLimits(t *testing.T, p pair, prompt []int32, lim generate.Limits, sp sample.Params, mode spec.Mode, gamma, depth int, rng *rand.Rand) ([]int32, verifier.Stats) {
	t.Helper()
	vs, err := verifier.NewSession(state(t, p.target, p.pool), verifier.Request{Prompt: prompt, Sampling: sp, Mode: mode, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := draft.NewSession(state(t, p.draft, p.pool), prompt, spec.Options{Sampling: sp, Mode: mode, Gamma: gamma, MaxPosition: p.target.Context, ProposalTopK: 32, Ends: lim.Ends(),
		Branches: rng.IntN(3)})
	if err != nil {
		t.Fatal(err)
	}
	var proposals []spec.Proposal
	var verdicts []spec.Verdict
	branches := 0
	var trail []string
	defer func() { ds.Close(); used.Add(uint64(branches)) }()
	for !vs.Done() {
		switch r := rng.IntN(10); {
		case r < 4:
			// Draft on the main line, or a branch once enough is in flight.
			draft := ds.Branch
			if ds.Outstanding() < depth && ds.CanDraft() {
				draft = ds.Draft
			}
			pr, ok, err := draft(func() bool { return len(verdicts) > 0 && rng.IntN(2) == 0 })
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				trail = append(trail, fmt.Sprintf("send round %d branch %d base %d start %d toks %v", pr.Round, pr.BranchOf, pr.Base, pr.Start, pr.Tokens))
				proposals = append(proposals, pr)
				if pr.BranchOf != 0 {
					branches++
				}
			}
		case r < 6 && len(verdicts) > 0:
			if err := ds.Apply(verdicts[0]); err != nil {
				t.Fatalf("%v\nverdict %+v\nlog:\n%s", err, verdicts[0], strings.Join(trail, "\n"))
			}
			trail = append(trail, fmt.Sprintf("apply %+v", verdicts[0]))
			verdicts = verdicts[1:]
		case r < 9 && len(proposals) > 0:
			st, err := vs.Verify(proposals[0])
			if err != nil {
				t.Fatal(err)
			}
			trail = append(trail, fmt.Sprintf("verify round %d branch %d base %d start %d toks %v -> used %v verdict %+v L %d", proposals[0].Round, proposals[0].BranchOf, proposals[0].Base, proposals[0].Start, proposals[0].Tokens, st.Used, st.Verdict, vs.Len()))
			proposals = proposals[1:]
			if st.Verdict != nil {
				v := *st.Verdict
				v.FirstGamma = rng.IntN(gamma + 1) // 0 (no cap) to γ
				verdicts = append(verdicts, v)
			}
		case r == 9:
			// An own step, checking a prompt-lookup guess of 0–4 tokens.
			k := rng.IntN(5)
			if _, err := vs.Own(k); err != nil {
				t.Fatal(err)
			}
			trail = append(trail, fmt.Sprintf("own (lookup %d) -> L %d", k, vs.Len()))
		}
	}
	hits.Add(uint64(ds.Stats.BranchHits))
	guessKept.Add(uint64(vs.Stats.GuessAccepted))
	repeats.Add(uint64(ds.Stats.Repeats))
	return vs.Output().IDs, vs.Stats
}

// Branch and prompt-lookup counters over all simulations (the equality test reports them).
var used, hits, guessKept, repeats atomic.Uint64

func plain(t *testing.T, p pair, prompt []int32, n int, sp sample.Params) []int32 {
	out, _, err := generate.Run(context.Background(), state(t, p.target, p.pool), generate.Request{Prompt: prompt, Sampling: sp, Limits: limits(p.target, n)},
		func(generate.Token) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out.IDs
}

// TestSpeculationEqualsPlain checks that greedy and coupled (seeded) speculation commit
// exactly the tokens of plain decoding on the verifier, for several γ and random
// interleavings of drafting, verification, late verdicts and plain steps.
func TestSpeculationEqualsPlain(t *testing.T) {
	p := loadPair(t)
	prompts := []string{
		"One day, Lily found a shiny key in the garden.",
		"It is a truth universally acknowledged, that",
		"In the beginning God created",
	}
	n := 40
	for _, sp := range []sample.Params{{}, {Temperature: 0.8, Seed: 7}, {Temperature: 1, TopK: 40, Seed: 11}} {
		for _, text := range prompts {
			prompt := p.target.Tok.Encode(text, true)
			want := plain(t, p, prompt, n, sp)
			for _, gamma := range []int{1, 4, 8} {
				for _, depth := range []int{1, 3} {
					rng := rand.New(rand.NewPCG(uint64(gamma), uint64(depth)))
					got, st := simulate(t, p, prompt, n, sp, spec.Coupled, gamma, depth, rng)
					if !slices.Equal(got, want) {
						t.Errorf("T=%v γ=%d depth=%d %q:\n got %v\nwant %v", sp.Temperature, gamma, depth, text, got, want)
					}
					if st.Accepted == 0 {
						t.Errorf("T=%v γ=%d depth=%d %q: no draft token accepted (%+v)", sp.Temperature, gamma, depth, text, st)
					}
				}
			}
		}
	}
	t.Logf("branches drafted %d, adopted after a rejection %d", used.Load(), hits.Load())
	if hits.Load() == 0 {
		t.Errorf("no branch was ever adopted: the branch path went untested")
	}
	t.Logf("prompt-lookup tokens kept in own steps: %d; draft tokens taken from repeats: %d", guessKept.Load(), repeats.Load())
	if guessKept.Load() == 0 || repeats.Load() == 0 {
		t.Errorf("prompt lookup: %d guessed tokens kept, %d draft tokens from repeats: a lookup path went untested", guessKept.Load(), repeats.Load())
	}
}

// onceUponATime starts a greedy draft session of γ tokens a round on a short prompt.
func onceUponATime(t *testing.T, p pair, gamma int) *draft.Session {
	t.Helper()
	prompt := p.target.Tok.Encode("Once upon a time", true)
	ds, err := draft.NewSession(state(t, p.draft, p.pool), prompt, spec.Options{Gamma: gamma, MaxPosition: p.target.Context})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ds.Close)
	return ds
}

// TestFirstGammaCapsRoundAfterRollback checks that a verdict's FirstGamma caps exactly
// the draft's next round after a rollback, and no other round.
func TestFirstGammaCapsRoundAfterRollback(t *testing.T) {
	p := loadPair(t)
	ds := onceUponATime(t, p, 4)
	propose := func() spec.Proposal {
		t.Helper()
		pr, ok, err := ds.Draft(nil)
		if err != nil || !ok {
			t.Fatalf("Draft: ok %v, err %v", ok, err)
		}
		return pr
	}
	r1 := propose()
	// Accept all of round 1 with the draft's own next token as the bonus: no rollback,
	// so the cap does not apply.
	r2 := propose()
	if err := ds.Apply(spec.Verdict{Round: r1.Round, Seq: 1, Accepted: 4, Position: r1.Start,
		Tokens: append(append([]int32(nil), r1.Tokens...), r2.Tokens[0]), NextGamma: 4, FirstGamma: 2}); err != nil {
		t.Fatal(err)
	}
	if r := propose(); len(r.Tokens) != 4 {
		t.Errorf("round after an agreeing verdict has %d tokens, want 4", len(r.Tokens))
	}
	// Reject round 2 at its first token: the draft rolls back, and its next round is
	// capped, the one after is not.
	wrong := (r2.Tokens[0] + 1) % int32(p.draft.Vocab)
	if err := ds.Apply(spec.Verdict{Round: r2.Round, Seq: 2, Accepted: 0, Position: r2.Start,
		Tokens: []int32{wrong}, NextGamma: 4, FirstGamma: 2}); err != nil {
		t.Fatal(err)
	}
	if r := propose(); len(r.Tokens) != 2 || r.Start != r2.Start+1 {
		t.Errorf("round after a rollback: %d tokens from %d, want 2 from %d", len(r.Tokens), r.Start, r2.Start+1)
	}
	if r := propose(); len(r.Tokens) != 4 {
		t.Errorf("second round after a rollback has %d tokens, want 4", len(r.Tokens))
	}
}

// TestRollbackVerdictEndsLiveRounds: a verdict marked Rollback whose tokens agree with
// everything the draft has drafted still ends the draft's unanswered rounds (the
// verifier drops proposals based before it), so the draft drafts on from its end
// instead of waiting for verdicts on rounds that will never be answered.
func TestRollbackVerdictEndsLiveRounds(t *testing.T) {
	p := loadPair(t)
	ds := onceUponATime(t, p, 2)
	r1, _, err := ds.Draft(nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, _, err := ds.Draft(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The verifier rejected an older proposal and decoded on its own exactly the tokens
	// of rounds 1 and 2.
	agree := append(append([]int32(nil), r1.Tokens...), r2.Tokens...)
	if got := ds.Outstanding(); got != 2 {
		t.Fatalf("%d rounds outstanding before the verdict, want 2", got)
	}
	if err := ds.Apply(spec.Verdict{Round: 0, Seq: 1, Position: r1.Start, Tokens: agree, Rollback: true}); err != nil {
		t.Fatal(err)
	}
	if got := ds.Outstanding(); got != 0 {
		t.Errorf("%d rounds outstanding after a rollback verdict, want 0", got)
	}
	r3, ok, err := ds.Draft(nil)
	if err != nil || !ok {
		t.Fatalf("Draft after the rollback: ok %v, err %v", ok, err)
	}
	if r3.Start != r2.Start+len(r2.Tokens) || r3.Base != 1 {
		t.Errorf("round after the rollback starts at %d on verdict %d, want %d on 1", r3.Start, r3.Base, r2.Start+len(r2.Tokens))
	}
}

// TestRollbackVerdictShorterThanDraft: the verifier checked only the first tokens of a
// round (the controller's k, or the pass budget, below the round's γ), and its own
// token after them happened to equal the draft's next one. Its verdict is a rollback —
// it drops the rest of the round and every pipelined one — whose tokens agree with the
// draft but end before the draft's sequence does. The draft must draft on from where
// the verdict ends, the verifier's committed end: a round starting past it can never
// be checked, and the verifier drops it without a verdict.
func TestRollbackVerdictShorterThanDraft(t *testing.T) {
	p := loadPair(t)
	ds := onceUponATime(t, p, 4)
	r1, _, err := ds.Draft(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ds.Draft(nil); err != nil {
		t.Fatal(err)
	}
	// Two tokens checked and kept, and the verifier's own third equal to the draft's.
	if err := ds.Apply(spec.Verdict{Round: r1.Round, Seq: 1, Accepted: 2, Position: r1.Start, Tokens: slices.Clone(r1.Tokens[:3]), NextGamma: 4, Rollback: true}); err != nil {
		t.Fatal(err)
	}
	r3, ok, err := ds.Draft(nil)
	if err != nil || !ok {
		t.Fatalf("Draft after the rollback: ok %v, err %v", ok, err)
	}
	if want := r1.Start + 3; r3.Start != want {
		t.Errorf("round after a rollback verdict ending at %d starts at %d, want %d", want, r3.Start, want)
	}
	if !slices.Equal(r3.Tokens[:1], r1.Tokens[3:4]) {
		t.Errorf("round after the rollback drafts %v at %d, want the same token as before, %v", r3.Tokens, r3.Start, r1.Tokens[3])
	}
}
