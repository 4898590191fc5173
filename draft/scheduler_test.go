package draft

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
)

func loadDraft(t testing.TB) (*model.Model, *kernels.Pool) {
	t.Helper()
	m, err := model.Load(testmodels.ForTest(t, "specd-draft-q8_0.gguf"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(1)
	t.Cleanup(func() { m.Close(); pool.Close() })
	return m, pool
}

// verifierScript stands in for a verifier, deterministically: it answers the oldest
// proposal it may still use with a verdict that accepts a pseudo-random prefix, then
// corrects (sometimes with a branch's guess, so that the branch is adopted) or adds a
// bonus token (sometimes the draft's own next token, so pipelined rounds stay valid).
// Proposals based before its last contradicting verdict are dropped as a verifier
// drops them.
type verifierScript struct {
	vocab    int
	seq      uint64 // verdicts sent
	stale    uint64 // Seq of the last verdict that contradicted the draft
	queue    []spec.Proposal
	branches []spec.Proposal
	lag      int // proposals left waiting after each one arrives
	cutAt    int // a verdict arrives when a round has drafted this many tokens (0: never)
	cutting  bool
}

func hash(a ...uint64) uint64 {
	h := uint64(1469598103934665603)
	for _, x := range a {
		h = (h ^ x) * 1099511628211
	}
	return h ^ h>>29
}

func (vs *verifierScript) propose(p spec.Proposal) {
	if p.BranchOf != 0 {
		vs.branches = append(vs.branches, p)
		return
	}
	vs.queue = append(vs.queue, p)
}

// verdict answers the oldest usable proposal; ok false when there is none.
func (vs *verifierScript) verdict() (v spec.Verdict, ok bool) {
	for len(vs.queue) > 0 && vs.queue[0].Base < vs.stale && vs.queue[0].BranchOf == 0 {
		vs.queue = vs.queue[1:]
	}
	if len(vs.queue) == 0 {
		return v, false
	}
	p := vs.queue[0]
	vs.queue = vs.queue[1:]
	vs.seq++
	h := hash(vs.seq, p.Round, uint64(p.Start))
	from := 0
	if p.BranchOf != 0 {
		from = 1 // the guess is committed already
	}
	a := from + int(h%uint64(len(p.Tokens)-from+1))
	toks := append([]int32(nil), p.Tokens[:a]...)
	contradicts := true
	if a < len(p.Tokens) {
		c := (p.Tokens[a] + 1 + int32(h>>8%7)) % int32(vs.vocab)
		for _, b := range vs.branches {
			if b.BranchOf == p.Round && b.Start == p.Start+a && h>>16%4 != 0 {
				c = b.Tokens[0]
				vs.queue = []spec.Proposal{b}
				break
			}
		}
		if c == p.Tokens[a] {
			c = (c + 1) % int32(vs.vocab)
		}
		toks = append(toks, c)
	} else {
		bonus := int32(h>>8) % int32(vs.vocab)
		if len(vs.queue) > 0 && vs.queue[0].Start == p.Start+len(p.Tokens) && h>>16%3 != 0 {
			bonus, contradicts = vs.queue[0].Tokens[0], false
		}
		toks = append(toks, bonus)
	}
	if contradicts {
		vs.stale = vs.seq
		vs.branches = vs.branches[:0]
		if len(vs.queue) > 0 && vs.queue[0].BranchOf == 0 {
			vs.queue = vs.queue[:0]
		}
	}
	return spec.Verdict{Round: p.Round, Seq: vs.seq, Accepted: a - from, Position: p.Start, Tokens: toks,
		NextGamma: 1 + int(h>>20%5), FirstGamma: int(h >> 24 % 4), Rollback: contradicts}, true
}

// scriptCase is one session of the equality test.
type scriptCase struct {
	prompt []int32
	opt    spec.Options
	lag    int
	cutAt  int
}

func scriptCases(m *model.Model, n int) []scriptCase {
	texts := []string{
		"Once upon a time",
		"It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
		"In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.",
		"def main():",
	}
	samplings := []struct {
		p    sample.Params
		mode spec.Mode
	}{
		{sample.Params{}, spec.Coupled},
		{sample.Params{Temperature: 0.8, Seed: 7}, spec.Coupled},
		{sample.Params{Temperature: 1, TopK: 40, Seed: 11}, spec.Rejection},
	}
	var cs []scriptCase
	for i := range n {
		prompt := m.Tok.Encode(texts[i%len(texts)], true)
		if i%5 == 4 {
			// A long context, fed over several passes within the prefill budget.
			for len(prompt) < 150 {
				prompt = append(prompt, prompt[1:]...)
			}
			prompt = prompt[:150]
		}
		sp := samplings[i%len(samplings)]
		// Branches are drafted
		// while Depth rounds wait for verdicts: when the verifier lags two proposals
		// behind and does not answer mid-round.
		lag, branches, cutAt := i/2%3, i%4/3, 1+i%2
		if lag == 2 {
			branches, cutAt = 1+i%2, 0
		}
		cs = append(cs, scriptCase{
			prompt: prompt,
			opt: spec.Options{Sampling: sp.p, Mode: sp.mode, Gamma: 1 + i%5, MaxPosition: m.Context, ProposalTopK: 8,
				Branches: branches},
			lag: lag, cutAt: cutAt,
		})
	}
	return cs
}

const scriptDepth = 2

// alone drafts c's first k proposals with a session of its own, a pass per token.
func alone(t *testing.T, m *model.Model, pool *kernels.Pool, c scriptCase, k int) ([]spec.Proposal, Stats, int) {
	t.Helper()
	kv, err := m.NewKVPool(64<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	st := m.NewState(pool, kv.NewSeq(), 16)
	s, err := NewSession(st, c.prompt, c.opt)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vs := &verifierScript{vocab: m.Vocab, lag: c.lag, cutAt: c.cutAt}
	var out []spec.Proposal
	cuts := 0
	apply := func(v spec.Verdict) {
		t.Helper()
		if err := s.Apply(v); err != nil {
			t.Fatal(err)
		}
	}
	var pending []spec.Verdict
	interrupt := func() bool {
		if vs.cutAt > 0 && !vs.cutting && s.cur.drafted() == vs.cutAt {
			if v, ok := vs.verdict(); ok {
				pending = append(pending, v)
				vs.cutting = true
				return true
			}
		}
		return false
	}
	for len(out) < k {
		draft := s.Branch
		if s.Outstanding() < scriptDepth && s.CanDraft() {
			draft = s.Draft
		}
		p, ok, err := draft(interrupt)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			v, ok := vs.verdict()
			if !ok {
				break
			}
			apply(v)
			continue
		}
		for _, v := range pending {
			apply(v)
		}
		pending = nil
		out = append(out, p)
		vs.propose(p)
		if vs.cutting {
			vs.cutting = false
			cuts++
			continue
		}
		if len(vs.queue) > vs.lag {
			if v, ok := vs.verdict(); ok {
				apply(v)
			}
		}
	}
	return out, s.Stats, cuts
}

// batched drafts every case's first k proposals with one scheduler.
func batched(t *testing.T, m *model.Model, pool *kernels.Pool, cs []scriptCase, k, maxTokens, prefill int) ([][]spec.Proposal, int) {
	t.Helper()
	kv, err := m.NewKVPool(64<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	sc := NewScheduler(m.NewBatch(pool, maxTokens), kv, Config{Depth: scriptDepth, Prefill: prefill})
	out, passes, _ := runScripts(t, sc, m, cs, k, maxTokens, prefill)
	return out, passes
}

// runScripts drafts every case's first k proposals with sc, session i for case i, and
// returns them, the passes that fed tokens and the prompt tokens fed without logits.
func runScripts(t *testing.T, sc *Scheduler, m *model.Model, cs []scriptCase, k, maxTokens, prefill int) ([][]spec.Proposal, int, int) {
	t.Helper()
	scripts := make([]*verifierScript, len(cs))
	for i, c := range cs {
		scripts[i] = &verifierScript{vocab: m.Vocab, lag: c.lag, cutAt: c.cutAt}
		if err := sc.Start(uint64(i), c.prompt, c.opt); err != nil {
			t.Fatal(err)
		}
	}
	out := make([][]spec.Proposal, len(cs))
	apply := func(id int, v spec.Verdict) {
		t.Helper()
		if err := sc.Apply(uint64(id), v); err != nil {
			t.Fatal(err)
		}
	}
	passes, fed := 0, 0
	for sc.Busy() {
		pass := sc.Step()
		if pass.Tokens > maxTokens || pass.Prefill > prefill {
			t.Fatalf("a pass of %d tokens, %d of them prefill; want at most %d and %d", pass.Tokens, pass.Prefill, maxTokens, prefill)
		}
		if pass.Tokens > 0 {
			passes++
		}
		fed += pass.Prefill
		for _, o := range sc.Ready(0) {
			if o.Err != nil {
				t.Fatalf("session %d: %v", o.ID, o.Err)
			}
			i, vs := int(o.ID), scripts[o.ID]
			if len(out[i]) == k {
				continue // stopped: made in the same pass as its last
			}
			out[i] = append(out[i], o.Proposal)
			if len(out[i]) == k {
				sc.Stop(o.ID)
				continue
			}
			vs.propose(o.Proposal)
			if vs.cutting {
				vs.cutting = false
				continue
			}
			if len(vs.queue) > vs.lag {
				if v, ok := vs.verdict(); ok {
					apply(i, v)
				}
			}
		}
		for i, vs := range scripts {
			e, ok := sc.byID[uint64(i)]
			switch {
			case !ok:
			case e.s.drafting():
				if vs.cutAt > 0 && !vs.cutting && e.s.cur.drafted() == vs.cutAt {
					if v, ok := vs.verdict(); ok {
						apply(i, v)
						vs.cutting = true
					}
				}
			case len(e.verdicts) == 0 && !sc.canBegin(e.s):
				if v, ok := vs.verdict(); ok {
					apply(i, v)
				} else {
					sc.Stop(uint64(i))
				}
			}
		}
	}
	return out, passes, fed
}

// TestPrefixCachedSessionsProposeTheSame: sessions whose contexts ended sessions
// computed start from the prefix cache, feed only what it lacks, and propose exactly
// what they propose computing everything.
func TestPrefixCachedSessionsProposeTheSame(t *testing.T) {
	m, pool := loadDraft(t)
	kv, err := m.NewKVPool(64<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := kv.NewPrefix("specd-draft")
	if err != nil {
		t.Fatal(err)
	}
	cs := scriptCases(m, 15)
	sc := NewScheduler(m.NewBatch(pool, 64), kv, Config{Depth: scriptDepth, Prefill: 16, Prefix: prefix})
	const k = 6
	first, _, fedFirst := runScripts(t, sc, m, cs, k, 64, 16)
	again, _, fedAgain := runScripts(t, sc, m, cs, k, 64, 16)
	for i, c := range cs {
		if want, _, _ := alone(t, m, pool, c, k); !reflect.DeepEqual(first[i], want) || !reflect.DeepEqual(again[i], want) {
			t.Errorf("case %d: proposals with the prefix cache differ from the session alone", i)
		}
	}
	context := 0
	for _, c := range cs {
		context += len(c.prompt) - 1 // the last token is fed with its logits
	}
	// Catching up after rollbacks feeds tokens without logits too, the same in both runs.
	if fedFirst < context || fedAgain > fedFirst-context {
		t.Errorf("tokens fed without logits: %d the first time (want the %d of the contexts and catch-ups), %d again (want the catch-ups only, %d)", fedFirst, context, fedAgain, fedFirst-context)
	}
	if st := prefix.Stats(); st.HitTokens == 0 {
		t.Errorf("prefix cache %+v: no hit", st)
	}
}

// TestBatchedEqualsAlone checks that sessions drafted together, a token of each per
// batched pass, propose exactly what each proposes drafted alone — greedy, seeded
// coupled and rejection-mode sampling, pipelined rounds, rounds cut short by a
// verdict, rollbacks, branches and long contexts fed in chunks — whatever the pass size
// and prefill budget.
func TestBatchedEqualsAlone(t *testing.T) {
	m, pool := loadDraft(t)
	n, k := 15, 14
	if testing.Short() {
		n, k = 10, 8
	}
	cs := scriptCases(m, n)
	want := make([][]spec.Proposal, len(cs))
	var total Stats
	cuts := 0
	for i, c := range cs {
		var st Stats
		var cut int
		want[i], st, cut = alone(t, m, pool, c, k)
		total.Rollbacks += st.Rollbacks
		total.Branches += st.Branches
		total.BranchHits += st.BranchHits
		total.Repeats += st.Repeats
		cuts += cut
	}
	t.Logf("alone: %+v, %d rounds cut short by a verdict", total, cuts)
	if total.Rollbacks == 0 || total.BranchHits == 0 || cuts == 0 {
		t.Errorf("alone: %+v, %d rounds cut short: a path went untested", total, cuts)
	}
	for _, size := range []struct{ maxTokens, prefill int }{{256, 256}, {8, 3}} {
		t.Run(fmt.Sprintf("tokens=%d/prefill=%d", size.maxTokens, size.prefill), func(t *testing.T) {
			got, passes := batched(t, m, pool, cs, k, size.maxTokens, size.prefill)
			t.Logf("%d sessions, %d passes", len(cs), passes)
			for i := range cs {
				if len(got[i]) != len(want[i]) {
					t.Errorf("session %d: %d proposals batched, %d alone", i, len(got[i]), len(want[i]))
				}
				for j := range min(len(got[i]), len(want[i])) {
					if !reflect.DeepEqual(got[i][j], want[i][j]) {
						t.Errorf("session %d proposal %d batched = %+v, want %+v", i, j, got[i][j], want[i][j])
						break
					}
				}
			}
		})
	}
}

// blockPool returns an F32 KV pool for m of exactly n blocks.
func blockPool(t *testing.T, m *model.Model, n int) *kvcache.Pool {
	t.Helper()
	probe, err := m.NewKVPool(1<<30, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := m.NewKVPool(int64(n*probe.BlockBytes()), ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// context100 is a context of 100 tokens.
func context100() []int32 {
	ctx := make([]int32, 100)
	for i := range ctx {
		ctx[i] = int32(5 + i)
	}
	return ctx
}

// TestSchedulerAdmission: sessions are admitted while the KV pool has blocks for their
// context and drafting room, refused at once with kvcache.ErrExhausted beyond, and a
// stopped session's blocks go back to the pool at once.
func TestSchedulerAdmission(t *testing.T) {
	m, pool := loadDraft(t)
	// Room for 10 blocks: sessions of 100 context tokens and 2 rounds of 4 need 2 each.
	kv := blockPool(t, m, 10)
	sc := NewScheduler(m.NewBatch(pool, 64), kv, Config{Depth: 2, Prefill: 64})
	ctx := context100()
	opt := spec.Options{Gamma: 4, MaxPosition: m.Context}
	for id := range 5 {
		if err := sc.Start(uint64(id), ctx, opt); err != nil {
			t.Fatalf("Start(%d) = %v, want admitted", id, err)
		}
	}
	if err := sc.Start(5, ctx, opt); !errors.Is(err, kvcache.ErrExhausted) {
		t.Fatalf("Start(5) beyond the budget = %v, want kvcache.ErrExhausted", err)
	}
	// Drafting fills the reserved blocks and does not exhaust the pool.
	for range 20 {
		sc.Step()
		for _, o := range sc.Ready(0) {
			if o.Err != nil {
				t.Fatalf("session %d failed: %v", o.ID, o.Err)
			}
		}
	}
	if used := kv.Stats().Used; used != 10 {
		t.Errorf("5 sessions of 100 tokens hold %d blocks, want 10", used)
	}
	sc.Stop(0)
	if err := sc.Start(5, ctx, opt); err != nil {
		t.Errorf("Start(5) after Stop(0) = %v, want admitted", err)
	}
	for id := range 6 {
		sc.Stop(uint64(id))
	}
	if st := kv.Stats(); st.Used != 0 || sc.Len() != 0 {
		t.Errorf("after stopping every session: %d blocks used, %d sessions, want none", st.Used, sc.Len())
	}
}

// TestSchedulerStarvedSessionFails: a session whose cache must grow past what the pool
// has fails with kvcache.ErrExhausted rather than waiting forever, and frees its blocks.
func TestSchedulerStarvedSessionFails(t *testing.T) {
	m, pool := loadDraft(t)
	kv := blockPool(t, m, 2)
	sc := NewScheduler(m.NewBatch(pool, 64), kv, Config{Depth: 1, Prefill: 64})
	if err := sc.Start(1, context100(), spec.Options{Gamma: 8, MaxPosition: m.Context}); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	for range 100 {
		sc.Step()
		for _, o := range sc.Ready(0) {
			if o.Err != nil {
				if !errors.Is(o.Err, kvcache.ErrExhausted) {
					t.Fatalf("session failed with %v, want kvcache.ErrExhausted", o.Err)
				}
				if used := kv.Stats().Used; used != 0 || sc.Len() != 0 {
					t.Errorf("after the failure: %d blocks used, %d sessions, want none", used, sc.Len())
				}
				return
			}
			// Commit the round as drafted (its last token standing for the
			// verifier's own), so the sequence keeps growing.
			p := o.Proposal
			seq++
			v := spec.Verdict{Round: p.Round, Seq: seq, Accepted: len(p.Tokens), Position: p.Start, Tokens: p.Tokens}
			if err := sc.Apply(1, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatalf("a session of %d tokens in a pool of 2 blocks of %d never failed", len(sc.all[0].s.seq), kv.Config().BlockTokens)
}

// TestSchedulerDraftsIntoCachedBlocks: blocks that only the prefix cache holds are
// free for drafting (allocation evicts them), as admission counts them. Sessions
// admitted into a pool that ended sessions filled with cached blocks draft, rather than
// fail for want of blocks.
func TestSchedulerDraftsIntoCachedBlocks(t *testing.T) {
	m, pool := loadDraft(t)
	// Room for 10 blocks: sessions of 100 context tokens and 2 rounds of 4 need 2 each.
	kv := blockPool(t, m, 10)
	prefix, err := kv.NewPrefix("specd-draft")
	if err != nil {
		t.Fatal(err)
	}
	sc := NewScheduler(m.NewBatch(pool, 64), kv, Config{Depth: 2, Prefill: 64, Prefix: prefix})
	opt := spec.Options{Gamma: 4, MaxPosition: m.Context}
	for wave := range 3 {
		for i := range 5 {
			ctx := context100()
			ctx[0] = int32(100*wave + i) // every context its own, so none is found cached
			if err := sc.Start(uint64(i), ctx, opt); err != nil {
				t.Fatalf("wave %d: Start(%d) = %v, want admitted", wave, i, err)
			}
		}
		proposed := 0
		for range 20 {
			sc.Step()
			for _, o := range sc.Ready(0) {
				if o.Err != nil {
					t.Fatalf("wave %d: session %d failed: %v (pool %+v)", wave, o.ID, o.Err, kv.Stats())
				}
				proposed++
			}
		}
		if proposed < 10 {
			t.Errorf("wave %d: %d proposals from 5 sessions, want each session's 2 rounds", wave, proposed)
		}
		for i := range 5 {
			sc.Stop(uint64(i))
		}
		if st := kv.Stats(); st.Cached == 0 {
			t.Fatalf("wave %d: no block cached after the sessions ended (%+v)", wave, st)
		}
	}
}
