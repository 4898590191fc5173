// Package draft is the drafting side of speculative decoding: a small model that
// proposes the next tokens of a sequence, keeps proposing ahead while earlier proposals
// are being verified (pipelining), and rolls its KV cache back to what the verifier
// committed.
//
// A Session is a deterministic core with no goroutines. It runs alone on a model.State
// (Draft, Branch), or with many others in a Scheduler that drafts the next token of
// every session in one batched forward pass; both run the same per-token code: the
// session says what to feed (segment) and takes the logits (consume). The service in
// services/ runs a Scheduler against gRPC streams. The package never imports the
// verifier package (both speak spec), gRPC, clocks or goroutines.
package draft

import (
	"errors"
	"fmt"
	"math"

	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
)

// Session drafts for one request. It is used by one goroutine.
type Session struct {
	st  *model.State // the state Draft and Branch run on; nil in a Scheduler
	kv  *kvcache.Seq // the main line's cache; the caller's (st.Seq) when st is set, else the session's own
	smp *sample.Sampler
	opt spec.Options

	seq     []int32 // committed tokens as last told, then this draft's own proposals; the cache holds all but the last
	context int     // tokens of the context the session started with

	round uint64   // last round sent (main line or branch)
	live  []uint64 // main-line rounds sent and not yet answered, oldest first
	base  uint64   // Seq of the last verdict applied
	gamma int
	// first caps the next main-line round after a rollback (the verifier waits for all
	// of it); fresh marks that the next round is that one.
	first int
	fresh bool

	// guess[pos] is the draft's second choice at a position it drafted: its guess of
	// the verifier's correction should its own token there be rejected.
	guess    map[int]int32
	roundAt  map[int]uint64 // main-line round that drafted each position
	starts   map[uint64]int // main-line round → its start position
	branches []*branch      // alternatives drafted for the oldest live round
	cur      *job           // the round being drafted; nil between rounds

	Stats Stats
}

// job is a round being drafted, a token per forward pass: on the main line (b nil) or
// on a branch.
type job struct {
	p spec.Proposal
	n int     // tokens to draft (after the branch's guess)
	b *branch // nil on the main line
}

// drafted is how many tokens the round has drafted so far (a branch's guess excluded).
func (j *job) drafted() int {
	if j.b != nil {
		return len(j.p.Tokens) - 1
	}
	return len(j.p.Tokens)
}

// branch is an alternative continuation: the sequence as it would be had the verifier
// corrected position pos to seq[pos], and the cache holding all of it but the last.
type branch struct {
	of    uint64 // the main-line round it anticipates correcting
	round uint64 // the round it was sent as
	pos   int
	seq   []int32
	kv    *kvcache.Seq
}

// Stats count a draft session's work.
type Stats struct {
	Rounds     int // proposals sent
	Tokens     int // tokens drafted
	Rollbacks  int // verdicts that contradicted this draft's sequence
	Branches   int // alternative continuations drafted
	BranchHits int // rollbacks that landed on a prepared branch
	Repeats    int // tokens proposed from a repeat against the model's choice (greedy)
}

// ErrBadVerdict is returned by Apply for a verdict that cannot follow this session.
var ErrBadVerdict = errors.New("verdict does not fit the draft's sequence")

// NewSession starts drafting after context (the whole committed sequence so far) on st,
// whose sequence it empties; the context is fed by the first Draft. The main cache stays
// the caller's (st.Seq, which follows the session when it adopts a branch).
func NewSession(st *model.State, context []int32, opt spec.Options) (*Session, error) {
	st.Seq.Truncate(0)
	s, err := newSession(st.Seq, context, opt)
	if err != nil {
		return nil, err
	}
	s.st = st
	return s, nil
}

// newSession starts a session on kv, which holds the entries of a leading run of
// context (none, or what a prefix cache had); the rest is fed from there.
func newSession(kv *kvcache.Seq, context []int32, opt spec.Options) (*Session, error) {
	if len(context) == 0 {
		return nil, errors.New("empty context")
	}
	if opt.Gamma < 1 {
		opt.Gamma = 1
	}
	if kv.Len() >= len(context) {
		return nil, fmt.Errorf("draft session: %d cached positions for a context of %d", kv.Len(), len(context))
	}
	smp := sample.New(opt.Sampling)
	smp.SetEnds(opt.Ends)
	return &Session{kv: kv, smp: smp, opt: opt, seq: append([]int32(nil), context...), context: len(context), gamma: opt.Gamma,
		guess: map[int]int32{}, roundAt: map[int]uint64{}, starts: map[uint64]int{}}, nil
}

// Outstanding is the number of valid main-line proposals not yet answered by a verdict.
func (s *Session) Outstanding() int { return len(s.live) }

// Close releases the cache of any branch still held (the main cache belongs to the
// caller's state).
func (s *Session) Close() {
	if s.cur != nil && s.cur.b != nil {
		s.cur.b.kv.Release()
	}
	s.cur = nil
	s.dropBranches()
}

func (s *Session) dropBranches() {
	for _, b := range s.branches {
		b.kv.Release()
	}
	s.branches = s.branches[:0]
}

// Next is the position the next proposal would start at.
func (s *Session) Next() int { return len(s.seq) }

// CanDraft reports whether there is room to draft before MaxPosition.
func (s *Session) CanDraft() bool { return len(s.seq) < s.opt.MaxPosition }

// Draft proposes up to γ tokens continuing the draft's sequence, assuming everything
// proposed so far is accepted. interrupt is polled between tokens; when it returns true
// the proposal ends early (a verdict is waiting). It returns ok false when nothing could
// be drafted.
func (s *Session) Draft(interrupt func() bool) (p spec.Proposal, ok bool, err error) {
	if !s.beginMain() {
		return p, false, nil
	}
	return s.runAlone(interrupt)
}

// beginMain starts the next main-line round; false when there is no room to draft.
func (s *Session) beginMain() bool {
	start := len(s.seq)
	n := min(s.gamma, s.opt.MaxPosition-start)
	if s.fresh && s.first > 0 {
		n = min(n, s.first)
	}
	if n <= 0 {
		return false
	}
	s.fresh = false
	s.round++
	s.cur = &job{p: spec.Proposal{Round: s.round, Start: start, Base: s.base}, n: n}
	return true
}

// runAlone drafts the round begun on the session's own state, a pass per token, until
// it is complete or interrupt asks to end it.
func (s *Session) runAlone(interrupt func() bool) (spec.Proposal, bool, error) {
	for {
		seg, _ := s.segment(math.MaxInt)
		s.st.Seq = seg.Seq
		logits, err := s.st.Forward(seg.Tokens, false)
		s.st.Seq = s.kv
		if err != nil {
			s.abort()
			return spec.Proposal{}, false, err
		}
		if s.consume(logits) || interrupt != nil && interrupt() {
			p := s.finish()
			return p, true, nil
		}
	}
}

// drafting reports whether a round is being drafted.
func (s *Session) drafting() bool { return s.cur != nil }

// segment is the session's part of the next forward pass of the round being drafted:
// the main line's tokens not yet cached (the context, or committed tokens after a
// rollback) up to prefill of them, and then the last token, whose logits choose the
// next draft token (Logits 1). With more than prefill tokens to catch up on it feeds
// prefill of them alone (Logits 0); ok is false when that is none.
func (s *Session) segment(prefill int) (seg model.Segment, ok bool) {
	seq, kv := s.seq, s.kv
	if b := s.cur.b; b != nil {
		seq, kv = b.seq, b.kv
	}
	behind := seq[kv.Len():] // never empty: the cache holds at most all but the last
	switch {
	case len(behind)-1 <= prefill:
		return model.Segment{Seq: kv, Tokens: behind, Logits: 1}, true
	case prefill > 0:
		return model.Segment{Seq: kv, Tokens: behind[:prefill]}, true
	}
	return seg, false
}

// consume takes the logits of the last token the session's segment fed (nil when it
// asked for none), drafts the next token from them, and reports whether the round has
// all its tokens. On the main line it also records, per position, the round and the
// second choice.
func (s *Session) consume(logits []float32) (done bool) {
	j := s.cur
	if logits == nil {
		return false
	}
	seq := &s.seq
	if j.b != nil {
		seq = &j.b.seq
	}
	pos := len(*seq)
	var t, guess int32
	if sp := s.opt.Sampling; sp.Penalized() || sp.Grammar != nil || sp.MinTokens > 0 {
		// The verifier penalizes (and constrains by the grammar) what it has committed;
		// had it committed the line drafted so far, that is this.
		prompt := s.opt.PromptLen
		if prompt == 0 {
			prompt = s.context
		}
		s.smp.SetHistory(*seq, prompt)
	}
	if s.opt.Mode == spec.Rejection && !s.opt.Sampling.Greedy() {
		d := s.smp.Distribution(logits)
		d.Truncate(s.opt.ProposalTopK)
		t, guess = s.smp.GumbelTop2(d, pos)
		j.p.Dists = append(j.p.Dists, d.Clone())
	} else {
		t, guess = s.smp.Top2(logits, pos)
		if sp := s.opt.Sampling; sp.Greedy() && !sp.Shaped() {
			// A long repeat predicts the verifier's next token better than the small
			// model does (spec.LookupDraft); the model's choice becomes the guess of the
			// correction. Not where penalties work against repeats, nor where a bias or
			// a minimum of tokens shapes the logits; under a grammar only a repeat it
			// allows (JSON repeats its keys and structure).
			if l := spec.Lookup(*seq, spec.LookupDraft, spec.LookupDraft, 1); l != nil && l[0] != t && s.smp.Allows(l[0]) {
				t, guess = l[0], t
				s.Stats.Repeats++
			}
		}
	}
	if j.b == nil {
		s.roundAt[pos] = j.p.Round
		if guess >= 0 {
			s.guess[pos] = guess
		} else {
			delete(s.guess, pos)
		}
	}
	*seq = append(*seq, t)
	j.p.Tokens = append(j.p.Tokens, t)
	return j.drafted() >= j.n
}

// finish ends the round being drafted (complete, or cut short after at least one
// token) and returns its proposal.
func (s *Session) finish() spec.Proposal {
	j := s.cur
	s.cur = nil
	s.Stats.Rounds++
	if j.b != nil {
		s.branches = append(s.branches, j.b)
		s.Stats.Branches++
		s.Stats.Tokens += len(j.p.Tokens) - 1
		return j.p
	}
	s.live = append(s.live, j.p.Round)
	s.starts[j.p.Round] = j.p.Start
	s.Stats.Tokens += len(j.p.Tokens)
	return j.p
}

// abort drops the round being drafted after a failed pass.
func (s *Session) abort() {
	if s.cur.b != nil {
		s.cur.b.kv.Release()
	}
	s.cur = nil
}

// Branch drafts, while the oldest live round is being verified, an alternative
// continuation from the draft's guess of the correction at the next likely rejection
// point (the round's first position without a branch). It returns ok false when there
// is nothing worth drafting.
func (s *Session) Branch(interrupt func() bool) (p spec.Proposal, ok bool, err error) {
	if !s.beginBranch() {
		return p, false, nil
	}
	return s.runAlone(interrupt)
}

// branchPoint is where the next branch would start: the oldest live round r, the
// position and the guessed correction there; ok false when there is none worth drafting.
func (s *Session) branchPoint() (r uint64, pos int, g int32, ok bool) {
	if len(s.live) == 0 || len(s.branches) >= s.opt.Branches {
		return 0, 0, 0, false
	}
	r = s.live[0]
	start, known := s.starts[r]
	if !known {
		return 0, 0, 0, false
	}
	// The first positions are the likeliest to be rejected (acceptance is geometric).
	pos = start + len(s.branches)
	g, has := s.guess[pos]
	if !has || s.roundAt[pos] != r || pos >= s.opt.MaxPosition-1 || s.kv.Len() < pos {
		return 0, 0, 0, false
	}
	return r, pos, g, true
}

// beginBranch starts drafting the next branch; false when there is none worth drafting.
func (s *Session) beginBranch() bool {
	r, pos, g, ok := s.branchPoint()
	if !ok {
		return false
	}
	b := &branch{of: r, pos: pos, kv: s.kv.Fork(pos)}
	b.seq = append(append(make([]int32, 0, pos+s.gamma+1), s.seq[:pos]...), g)
	s.round++
	b.round = s.round
	p := spec.Proposal{Round: b.round, Base: s.base, Start: pos, Tokens: []int32{g}, BranchOf: r}
	if s.opt.Mode == spec.Rejection && !s.opt.Sampling.Greedy() {
		// The guess sits at a position the verifier has committed when it uses the
		// branch, so it is never judged; its distribution is a placeholder.
		p.Dists = append(p.Dists, sample.NewDist([]int32{g}, []float32{1}))
	}
	s.cur = &job{p: p, n: min(s.gamma, s.opt.MaxPosition-len(b.seq)), b: b}
	return true
}

// Apply takes a verdict: the committed tokens from v.Position on. Where they agree with
// the draft's own sequence nothing changes (pipelined proposals stay valid). At the
// first disagreement, a branch drafted for exactly that correction becomes the draft's
// sequence (its proposal is already with the verifier); otherwise the sequence and
// cache roll back and the committed tokens replace the draft's. A verdict marked
// Rollback ends every unanswered round either way.
func (s *Session) Apply(v spec.Verdict) error {
	if s.cur != nil {
		panic("draft: verdict applied while a round is being drafted")
	}
	if v.Position < 0 || v.Position > len(s.seq) {
		return fmt.Errorf("%w: position %d, draft holds %d tokens", ErrBadVerdict, v.Position, len(s.seq))
	}
	s.base = v.Seq
	if v.NextGamma > 0 {
		s.gamma = v.NextGamma
	}
	s.first = v.FirstGamma
	for len(s.live) > 0 && s.live[0] <= v.Round {
		delete(s.starts, s.live[0])
		s.live = s.live[1:]
	}
	branched := false
	for i, t := range v.Tokens {
		pos := v.Position + i
		if pos < len(s.seq) && s.seq[pos] == t {
			continue
		}
		s.Stats.Rollbacks++
		if b := s.takeBranch(pos, t); b != nil {
			branched = true
			s.kv.Release()
			s.kv = b.kv
			if s.st != nil {
				s.st.Seq = b.kv
			}
			s.seq = b.seq
			s.live = []uint64{b.round}
			clear(s.starts)
			s.Stats.BranchHits++
			s.resetGuesses(pos)
			continue // the rest of the verdict is checked against the branch
		}
		if pos < len(s.seq) {
			// Roll back: everything drafted from pos on is wrong, and so is every
			// round drafted on it.
			s.seq = s.seq[:pos]
			s.live = s.live[:0]
			clear(s.starts)
			if s.kv.Len() > pos {
				s.kv.Truncate(pos)
			}
		}
		s.dropBranches()
		s.resetGuesses(pos)
		s.fresh = true
		// The next round feeds the cache the new tokens before drafting.
		s.seq = append(s.seq, v.Tokens[i:]...)
		return nil
	}
	if v.Rollback && !branched {
		// The sequence agrees, but the verifier has dropped the rounds drafted on
		// it: draft on from the verdict's end, the verifier's committed end. Tokens
		// drafted past it (the verifier checked only part of a round) belong to the
		// dropped rounds; a round starting after them could never be checked.
		if end := v.Position + len(v.Tokens); end > 0 && end < len(s.seq) {
			s.seq = s.seq[:end]
			if s.kv.Len() >= end {
				s.kv.Truncate(end - 1)
			}
			s.resetGuesses(end)
		}
		s.live = s.live[:0]
		clear(s.starts)
		s.dropBranches()
		s.fresh = true
		return nil
	}
	// Branches of rounds now answered can no longer be used.
	kept := s.branches[:0]
	for _, b := range s.branches {
		if b.of > v.Round {
			kept = append(kept, b)
		} else {
			b.kv.Release()
		}
	}
	s.branches = kept
	return nil
}

// takeBranch removes and returns the branch for a correction to t at pos, releasing
// every other branch; nil when there is none.
func (s *Session) takeBranch(pos int, t int32) *branch {
	var hit *branch
	for _, b := range s.branches {
		if hit == nil && b.pos == pos && b.seq[pos] == t {
			hit = b
			continue
		}
		b.kv.Release()
	}
	s.branches = s.branches[:0]
	return hit
}

// resetGuesses forgets second choices and round marks from pos on.
func (s *Session) resetGuesses(pos int) {
	for q := range s.guess {
		if q >= pos {
			delete(s.guess, q)
		}
	}
	for q := range s.roundAt {
		if q >= pos {
			delete(s.roundAt, q)
		}
	}
}
