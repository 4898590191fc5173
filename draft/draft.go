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

	round      uint64 // last round drafted
	firstValid uint64 // rounds before this were drafted on a sequence since rolled back
	answered   uint64 // highest round a verdict answered
	base       uint64 // Seq of the last verdict applied
	gamma      int

	Stats Stats
}

// Stats count a draft session's work.
type Stats struct {
	Rounds    int // proposals sent
	Tokens    int // tokens drafted
	Rollbacks int // verdicts that contradicted this draft's sequence
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
	s := &Session{st: st, smp: sample.New(opt.Sampling), opt: opt, seq: append([]int32(nil), context...), gamma: opt.Gamma, firstValid: 1}
	st.Seq.Truncate(0)
	if len(context) > 1 {
		if _, err := st.Forward(context[:len(context)-1], false); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Outstanding is the number of valid proposals not yet answered by a verdict.
func (s *Session) Outstanding() int {
	from := max(s.answered+1, s.firstValid)
	if s.round+1 <= from {
		return 0
	}
	return int(s.round + 1 - from)
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
	if n <= 0 {
		return p, false, nil
	}
	p = spec.Proposal{Start: start, Base: s.base}
	rejection := s.opt.Mode == spec.Rejection && !s.opt.Sampling.Greedy()
	for i := range n {
		if i > 0 && interrupt != nil && interrupt() {
			break
		}
		pos := len(s.seq)
		logits, err := s.st.Forward(s.seq[pos-1:], false)
		if err != nil {
			return p, false, err
		}
		var t int32
		if rejection {
			d := s.smp.Distribution(logits)
			d.Truncate(s.opt.ProposalTopK)
			t = s.smp.GumbelMax(d, pos)
			p.Dists = append(p.Dists, d.Clone())
		} else {
			t = s.smp.Sample(logits, pos)
		}
		s.seq = append(s.seq, t)
		p.Tokens = append(p.Tokens, t)
	}
	s.round++
	p.Round = s.round
	s.Stats.Rounds++
	s.Stats.Tokens += len(p.Tokens)
	return p, true, nil
}

// Apply takes a verdict: the committed tokens from v.Position on. Where they agree with
// the draft's own sequence nothing changes (pipelined proposals stay valid); at the
// first disagreement the sequence and cache roll back and the committed tokens replace
// the draft's.
func (s *Session) Apply(v spec.Verdict) error {
	if v.Position < 0 || v.Position > len(s.seq) {
		return fmt.Errorf("%w: position %d, draft holds %d tokens", ErrBadVerdict, v.Position, len(s.seq))
	}
	s.answered = max(s.answered, v.Round)
	s.base = v.Seq
	if v.NextGamma > 0 {
		s.gamma = v.NextGamma
	}
	for i, t := range v.Tokens {
		pos := v.Position + i
		if pos < len(s.seq) && s.seq[pos] == t {
			continue
		}
		if pos < len(s.seq) {
			// Roll back: everything drafted from pos on is wrong, and so is every
			// round drafted on it.
			s.seq = s.seq[:pos]
			s.Stats.Rollbacks++
			s.firstValid = s.round + 1
			if s.st.Seq.Len() > pos {
				s.st.Seq.Truncate(pos)
			}
		}
		s.seq = append(s.seq, v.Tokens[i:]...)
		// The cache holds at most the tokens before the last; feeding the new ones
		// happens lazily: catch up now so Draft always feeds exactly one token.
		return s.catchUp()
	}
	return nil
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
