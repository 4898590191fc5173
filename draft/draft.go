// Package draft is the drafting side of speculative decoding: a small model that
// proposes the next tokens of a sequence, keeps proposing ahead while earlier proposals
// are being verified (pipelining), and rolls its KV cache back to what the verifier
// committed.
//
// A Session is a deterministic core with no goroutines; the service in services/ runs
// it against a gRPC stream. It never imports the verifier package: both speak spec.
package draft

import (
	"errors"
	"fmt"

	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
)

// Session drafts for one request. It is used by one goroutine.
type Session struct {
	st  *model.State
	smp *sample.Sampler
	opt spec.Options

	seq []int32 // committed tokens as last told, then this draft's own proposals; the cache holds all but the last

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

	Stats Stats
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

// NewSession starts drafting after context (the whole committed sequence so far).
func NewSession(st *model.State, context []int32, opt spec.Options) (*Session, error) {
	if len(context) == 0 {
		return nil, errors.New("empty context")
	}
	if opt.Gamma < 1 {
		opt.Gamma = 1
	}
	s := &Session{st: st, smp: sample.New(opt.Sampling), opt: opt, seq: append([]int32(nil), context...), gamma: opt.Gamma,
		guess: map[int]int32{}, roundAt: map[int]uint64{}, starts: map[uint64]int{}}
	st.Seq.Truncate(0)
	if len(context) > 1 {
		if _, err := st.Forward(context[:len(context)-1], false); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Outstanding is the number of valid main-line proposals not yet answered by a verdict.
func (s *Session) Outstanding() int { return len(s.live) }

// Close releases the cache of any branch still held (the main cache belongs to the
// caller's state).
func (s *Session) Close() { s.dropBranches() }

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
	start := len(s.seq)
	n := min(s.gamma, s.opt.MaxPosition-start)
	if s.fresh && s.first > 0 {
		n = min(n, s.first)
	}
	if n <= 0 {
		return p, false, nil
	}
	s.fresh = false
	p = spec.Proposal{Start: start, Base: s.base}
	s.round++
	p.Round = s.round
	if err := s.extend(&s.seq, n, &p, interrupt, true); err != nil {
		return p, false, err
	}
	s.live = append(s.live, p.Round)
	s.starts[p.Round] = start
	s.Stats.Rounds++
	s.Stats.Tokens += len(p.Tokens)
	return p, true, nil
}

// extend drafts up to n tokens after *seq on the state's current cache, appending them
// to *seq and to p (with their distributions in rejection mode). On the main line it
// also records, per position, the round and the second choice.
func (s *Session) extend(seq *[]int32, n int, p *spec.Proposal, interrupt func() bool, main bool) error {
	rejection := s.opt.Mode == spec.Rejection && !s.opt.Sampling.Greedy()
	for i := range n {
		if i > 0 && interrupt != nil && interrupt() {
			break
		}
		pos := len(*seq)
		logits, err := s.st.Forward((*seq)[pos-1:], false)
		if err != nil {
			return err
		}
		var t, guess int32
		if rejection {
			d := s.smp.Distribution(logits)
			d.Truncate(s.opt.ProposalTopK)
			t, guess = s.smp.GumbelTop2(d, pos)
			p.Dists = append(p.Dists, d.Clone())
		} else {
			t, guess = s.smp.Top2(logits, pos)
			if s.opt.Sampling.Greedy() {
				// A long repeat predicts the verifier's next token better than the
				// small model does (spec.LookupDraft); the model's choice becomes the
				// guess of the correction.
				if l := spec.Lookup(*seq, spec.LookupDraft, spec.LookupDraft, 1); l != nil && l[0] != t {
					t, guess = l[0], t
					s.Stats.Repeats++
				}
			}
		}
		if main {
			s.roundAt[pos] = p.Round
			if guess >= 0 {
				s.guess[pos] = guess
			} else {
				delete(s.guess, pos)
			}
		}
		*seq = append(*seq, t)
		p.Tokens = append(p.Tokens, t)
	}
	return nil
}

// Branch drafts, while the oldest live round is being verified, an alternative
// continuation from the draft's guess of the correction at the next likely rejection
// point (the round's first position without a branch). It returns ok false when there
// is nothing worth drafting.
func (s *Session) Branch(interrupt func() bool) (p spec.Proposal, ok bool, err error) {
	if len(s.live) == 0 || len(s.branches) >= s.opt.Branches {
		return p, false, nil
	}
	r := s.live[0]
	start, known := s.starts[r]
	if !known {
		return p, false, nil
	}
	// The first positions are the likeliest to be rejected (acceptance is geometric).
	pos := start + len(s.branches)
	g, has := s.guess[pos]
	if !has || s.roundAt[pos] != r || pos >= s.opt.MaxPosition-1 || s.st.Seq.Len() < pos {
		return p, false, nil
	}
	b := &branch{of: r, pos: pos, kv: s.st.Seq.Fork(pos)}
	b.seq = append(append(make([]int32, 0, pos+s.gamma+1), s.seq[:pos]...), g)
	s.round++
	b.round = s.round
	p = spec.Proposal{Round: b.round, Base: s.base, Start: pos, Tokens: []int32{g}, BranchOf: r}
	if s.opt.Mode == spec.Rejection && !s.opt.Sampling.Greedy() {
		// The guess sits at a position the verifier has committed when it uses the
		// branch, so it is never judged; its distribution is a placeholder.
		p.Dists = append(p.Dists, sample.NewDist([]int32{g}, []float32{1}))
	}
	main := s.st.Seq
	s.st.Seq = b.kv
	err = s.extend(&b.seq, min(s.gamma, s.opt.MaxPosition-len(b.seq)), &p, interrupt, false)
	s.st.Seq = main
	if err != nil {
		b.kv.Release()
		return p, false, err
	}
	s.branches = append(s.branches, b)
	s.Stats.Rounds++
	s.Stats.Branches++
	s.Stats.Tokens += len(p.Tokens) - 1
	return p, true, nil
}

// Apply takes a verdict: the committed tokens from v.Position on. Where they agree with
// the draft's own sequence nothing changes (pipelined proposals stay valid). At the
// first disagreement, a branch drafted for exactly that correction becomes the draft's
// sequence (its proposal is already with the verifier); otherwise the sequence and
// cache roll back and the committed tokens replace the draft's. A verdict marked
// Rollback ends every unanswered round either way.
func (s *Session) Apply(v spec.Verdict) error {
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
			s.st.Seq.Release()
			s.st.Seq = b.kv
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
			if s.st.Seq.Len() > pos {
				s.st.Seq.Truncate(pos)
			}
		}
		s.dropBranches()
		s.resetGuesses(pos)
		s.fresh = true
		s.seq = append(s.seq, v.Tokens[i:]...)
		// The cache holds at most the tokens before the last; feed the new ones now
		// so Draft always feeds exactly one token.
		return s.catchUp()
	}
	if v.Rollback && !branched {
		// The sequence agrees, but the verifier has dropped the rounds drafted on
		// it: draft on from its end.
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

// catchUp feeds the cache every token of seq except the last.
func (s *Session) catchUp() error {
	have := s.st.Seq.Len()
	if have >= len(s.seq)-1 {
		return nil
	}
	_, err := s.st.Forward(s.seq[have:len(s.seq)-1], false)
	return err
}
