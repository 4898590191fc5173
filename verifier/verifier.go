// Package verifier is the verifying side of speculative decoding: it owns the committed
// sequence of one request, checks a block of draft tokens with one batched forward pass
// of the large model, keeps exactly the tokens the large model would have produced, and
// says so in a verdict. It also decodes plainly when no proposal is at hand, so the
// plain path is never a special case.
//
// A Session is a deterministic core — no goroutines, clocks or I/O beyond the forward
// pass; the service in services/ feeds it proposals and sends its verdicts. It knows
// nothing of gRPC and never imports the draft package: both speak package spec.
package verifier

import (
	"errors"
	"fmt"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/tokenizer"
)

// Request is one generation as the verifier sees it.
type Request struct {
	Prompt     []int32 // not empty
	Resume     []int32 // tokens generated before a failover, already streamed
	ResumeText int     // bytes of text already streamed for Resume
	Sampling   sample.Params
	Mode       spec.Mode // for sampled requests; greedy ones are verified by exact match
	Limits     generate.Limits
	// Logprobs: report each committed token's log-probability (generate.Token.Logprobs),
	// with the TopLogprobs likeliest tokens at its position.
	Logprobs    bool
	TopLogprobs int
	// PromptLogprobs: report the prompt's tokens' too (Session.PromptLogprobs), with as
	// many likeliest tokens. Only a Scheduler's sessions compute them, and none of the
	// prompt comes from the prefix cache: its logits must be computed.
	PromptLogprobs bool
}

// Stats count a session's speculation.
type Stats struct {
	Rounds   int // proposals verified with a forward pass
	Drafted  int // draft tokens checked
	Accepted int // draft tokens kept
	Plain    int // steps taken without a proposal (Own)
	Stale    int // proposals dropped unverified
	Branches int // branch proposals verified (each saved a round trip to the draft)
	// Prompt lookup (Own): guessed tokens checked, and kept.
	Guessed, GuessAccepted int
}

// Step is what one call commits: tokens to stream, and a verdict for the draft (nil
// when the draft needs none).
type Step struct {
	Tokens  []generate.Token
	Verdict *spec.Verdict
	Used    bool // the proposal was verified (false: dropped as stale)
	Pass    int  // tokens the step's forward pass ran (0: none)
}

// Session verifies one request. It is used by one goroutine.
//
// Each step is computed in two halves, so that a Scheduler can run the steps of many
// sessions in one batched pass: a plan (what to feed the model: a prefill chunk, or the
// last committed token and the tokens to judge) and apply (judge them on the logits and
// commit). Own and Verify do both around a pass of the session's own.
type Session struct {
	m    *model.Model
	kv   *kvcache.Seq
	solo *model.State // Own and Verify's forward passes; nil for a scheduler's session
	smp  *sample.Sampler
	plan plan // the step in flight between a plan and its apply
	req  Request
	out  *generate.Output
	seq  []int32 // committed tokens; the cache holds all but the last

	verdicts   uint64 // verdicts sent
	lastReject uint64 // verdict after which the draft had to roll back
	// The round and position that verdict corrected: a branch of that round starting
	// there is built on the committed prefix.
	rejectRound uint64
	rejectPos   int
	synced      int // the draft has been told committed tokens below this position
	prevPos     int // position the previous verdict reported from
	Stats       Stats
	// promptLPs: with Request.PromptLogprobs, each prompt token's log-probabilities,
	// filled as the prompt's logits are computed (the first's bytes from the start).
	promptLPs []*generate.Logprobs
	promptDec *tokenizer.Decoder // with promptLPs: decodes the prompt as they are filled, for their text
	// endLP: with Request.Logprobs, the log-probabilities of the end-of-generation
	// token that ended the output (nil until then, or when something else ended it).
	endLP *generate.Logprobs
}

// ErrNoToken is returned by Apply (and so by Own and Verify) when the logits leave the
// sampler no token to draw (generate.ErrNoToken, which plain decoding returns too). The
// request fails alone; nothing is committed from those logits.
var ErrNoToken = generate.ErrNoToken

// ErrStarted is returned by NewSession on a state whose cache already holds tokens.
var ErrStarted = errors.New("verifier session already started")

// NewSession prepares a session on st (whose cache must be empty) and runs the prompt
// through the model, all but its last token; the first Verify or Own call computes the
// logits after it.
func NewSession(st *model.State, req Request) (*Session, error) {
	s, err := newSession(st.Model(), st.Seq, req)
	if err != nil {
		return nil, err
	}
	s.solo = st
	if n := s.Prefill(); n > 0 {
		if _, err := st.Forward(s.seq[:n], false); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newSession prepares a session whose cache kv (empty, or holding a cached prefix of
// the prompt) the caller fills: Prefill tokens first, then steps.
func newSession(m *model.Model, kv *kvcache.Seq, req Request) (*Session, error) {
	if len(req.Prompt) == 0 {
		return nil, generate.ErrEmptyPrompt
	}
	seq := append(append([]int32(nil), req.Prompt...), req.Resume...)
	req.Limits.MinTokens = req.Sampling.MinTokens // stop strings wait as long as the ends
	if kv.Len() >= len(seq) {
		return nil, ErrStarted
	}
	s := &Session{
		m: m, kv: kv, smp: sample.New(req.Sampling), req: req,
		out:     generate.NewOutput(m.Tok, req.Prompt, req.Limits),
		seq:     seq,
		synced:  len(seq),
		prevPos: len(seq),
	}
	s.out.Resume(req.Resume, req.ResumeText)
	if req.PromptLogprobs {
		s.promptDec = m.Tok.NewDecoder(nil)
		s.promptLPs = []*generate.Logprobs{{Bytes: m.Tok.TokenBytes(req.Prompt[0]), Text: s.promptDec.Next(req.Prompt[0])}}
	}
	s.smp.SetPrompt(req.Prompt)
	s.smp.SetEnds(req.Limits.Ends())
	for _, t := range req.Resume {
		s.smp.Observe(t)
	}
	return s, nil
}

// PromptLogprobs returns the log-probabilities of the prompt's tokens after the first
// (which nothing predicts: its entry has only its bytes), one per prompt token, with
// Request.PromptLogprobs once the prompt has been computed; else nil.
func (s *Session) PromptLogprobs() []*generate.Logprobs {
	if len(s.promptLPs) < len(s.req.Prompt) {
		return nil
	}
	return s.promptLPs
}

// EndLogprobs returns, with Request.Logprobs, the log-probabilities of the token that
// ended the generation when an end-of-generation token did (the output holds no token
// for it); else nil.
func (s *Session) EndLogprobs() *generate.Logprobs { return s.endLP }

// observePrompt takes the logits of the prefilled tokens at positions from, from+1, …:
// the row of position q predicts the token at q+1, which is a prompt token's while
// q+1 < len(prompt).
func (s *Session) observePrompt(from int, logits []float32) {
	if !s.req.PromptLogprobs {
		return
	}
	V := s.m.Vocab
	for k := 0; (k+1)*V <= len(logits); k++ {
		q := from + k + 1
		if q != len(s.promptLPs) || q >= len(s.req.Prompt) {
			continue
		}
		s.promptLPs = append(s.promptLPs, generate.NewLogprobs(logits[k*V:(k+1)*V], s.req.Prompt[q], s.req.TopLogprobs, s.m.Tok, s.promptDec))
		s.promptDec.Next(s.req.Prompt[q])
	}
}

// Prefill is how many tokens of the committed sequence still have to run through the
// model before the first step: all but the last (whose logits the first step computes),
// less what the cache already holds.
func (s *Session) Prefill() int { return max(len(s.seq)-1-s.kv.Len(), 0) }

// PrefillTokens returns the next n ≤ Prefill tokens to run; the caller appends them to
// the cache with a forward pass.
func (s *Session) PrefillTokens(n int) []int32 {
	at := s.kv.Len()
	return s.seq[at : at+n]
}

// Output is the generation so far (tokens, text, finish reason).
func (s *Session) Output() *generate.Output { return s.out }

// Done reports whether the generation has finished.
func (s *Session) Done() bool { return s.out.Done() }

// Len is the committed length (the position of the next token).
func (s *Session) Len() int { return len(s.seq) }

// Committed returns the committed sequence; the caller must not modify it.
func (s *Session) Committed() []int32 { return s.seq }

// room is how many draft tokens one forward pass may check now: the cache may not pass
// the context, and no more tokens are verified than the request can still use.
func (s *Session) room() int {
	L := len(s.seq)
	k := s.req.Limits.Context - L
	if rem := s.req.Limits.MaxTokens - len(s.out.IDs) - 1; rem < k {
		k = rem
	}
	return max(k, 0)
}

// choose is the verifier's own token at pos from logits: argmax for greedy requests,
// Gumbel-max with the request's seed otherwise — exactly what plain decoding draws.
func (s *Session) choose(logits []float32, pos int) int32 {
	return s.smp.Sample(logits, pos)
}

// Own decodes the verifier's own next token without a proposal. With maxGuess > 0, the
// same pass also checks up to maxGuess tokens guessed by prompt lookup (spec.Lookup),
// judged as a draft's tokens are, and commits the ones kept.
func (s *Session) Own(maxGuess int) (Step, error) {
	if s.Done() {
		return Step{}, nil
	}
	return s.run(s.PlanOwn(s.Guess(maxGuess)))
}

// Guess returns up to k tokens guessed by prompt lookup to follow the committed
// sequence (fewer when the request cannot use k more).
func (s *Session) Guess(k int) []int32 {
	k = min(k, s.room())
	if k <= 0 {
		return nil
	}
	return spec.Lookup(s.seq, spec.LookupOwnMin, spec.LookupOwnMax, k)
}

// PlanOwn plans the verifier's own next step, checking guess (from Guess) with it, and
// returns the tokens to feed; Apply takes the logits of every one of them.
func (s *Session) PlanOwn(guess []int32) []int32 {
	s.plan = plan{kind: planOwn, e: guess, q: func(i int) *sample.Dist { return oneHot(guess[i]) }}
	return s.input()
}

// run computes a planned step with the session's own forward pass.
func (s *Session) run(input []int32) (Step, error) {
	logits, err := s.solo.Forward(input, true)
	if err != nil {
		s.plan = plan{}
		return Step{}, err
	}
	return s.Apply(logits)
}

// oneHot is the distribution of a guessed token: the guess is certain of it, so
// rejection sampling keeps it with probability p(x) and otherwise draws from p without x.
func oneHot(x int32) *sample.Dist {
	return &sample.Dist{IDs: []int32{x}, Probs: []float32{1}}
}

// Verify checks proposal p against the model and commits what it keeps. A proposal made
// on a sequence the verifier has since contradicted is dropped (Used false); when the
// draft needs to hear of it, the step carries a verdict.
func (s *Session) Verify(p spec.Proposal) (Step, error) {
	if s.Done() {
		return Step{}, nil
	}
	input, st, err := s.PlanVerify(p, len(p.Tokens))
	if input == nil || err != nil {
		return st, err
	}
	return s.run(input)
}

// Usable is how many of p's tokens a pass would check now: 0 for a stale proposal
// (or one the request has no room for), which PlanVerify answers without a pass.
func (s *Session) Usable(p spec.Proposal) int {
	L := len(s.seq)
	branch := p.BranchOf != 0 && p.BranchOf == s.rejectRound && p.Start == s.rejectPos
	if (p.Base < s.lastReject && !branch) || p.Start > L || p.Start < 0 {
		return 0
	}
	skip := L - p.Start
	if skip >= len(p.Tokens) {
		return 0
	}
	for i := range skip {
		if p.Tokens[i] != s.seq[p.Start+i] {
			return 0
		}
	}
	return min(len(p.Tokens)-skip, s.room())
}

// PlanVerify plans checking proposal p, at most k of its unchecked tokens (k ≥ 1), and
// returns the tokens to feed. When p needs no pass — it is stale, or the request has no
// room for any of its tokens — it returns no input and the step to report now, which
// for a proposal with no room is an own step's plan instead (input set, step empty).
func (s *Session) PlanVerify(p spec.Proposal, k int) ([]int32, Step, error) {
	L := len(s.seq)
	branch := p.BranchOf != 0 && p.BranchOf == s.rejectRound && p.Start == s.rejectPos
	if (p.Base < s.lastReject && !branch) || p.Start > L || p.Start < 0 {
		s.Stats.Stale++
		return nil, Step{}, nil
	}
	skip := L - p.Start
	for i := 0; i < skip && i < len(p.Tokens); i++ {
		if p.Tokens[i] != s.seq[p.Start+i] {
			s.Stats.Stale++
			x := p.Start + i
			if x < s.synced {
				return nil, Step{}, nil // the draft has been told already
			}
			return nil, Step{Verdict: s.verdict(p.Round, i, x, true)}, nil
		}
	}
	if skip >= len(p.Tokens) {
		// Plain decoding overtook the proposal and agreed with all of it: tell the
		// draft what was committed after it so it drafts on from there.
		s.Stats.Stale++
		return nil, Step{Verdict: s.verdict(p.Round, len(p.Tokens), p.Start+len(p.Tokens), false)}, nil
	}
	e := p.Tokens[skip:]
	k = min(len(e), s.room(), max(k, 1))
	if k == 0 {
		return s.PlanOwn(nil), Step{}, nil
	}
	if s.req.Mode == spec.Rejection && !s.req.Sampling.Greedy() && len(p.Dists) != len(p.Tokens) {
		return nil, Step{}, fmt.Errorf("rejection-mode proposal round %d has %d distributions for %d tokens", p.Round, len(p.Dists), len(p.Tokens))
	}
	s.plan = plan{kind: planVerify, e: e[:k], proposed: len(e), round: p.Round, skip: skip, branch: branch,
		q: func(i int) *sample.Dist { return &p.Dists[skip+i] }}
	return s.input(), Step{}, nil
}

// plan is a step between its plan and its apply.
type plan struct {
	kind     planKind
	e        []int32                  // the tokens to judge
	q        func(i int) *sample.Dist // the distribution e[i] was drawn from (rejection mode)
	proposed int                      // verify: the proposal's unchecked tokens (≥ len(e))
	round    uint64                   // verify: the proposal's round
	skip     int                      // verify: its tokens already committed
	branch   bool                     // verify: a branch of the rejected round
}

type planKind int

const (
	planNone planKind = iota
	planOwn
	planVerify
)

// input is what the planned step feeds the model: the last committed token, then the
// tokens to judge.
func (s *Session) input() []int32 {
	in := make([]int32, 0, len(s.plan.e)+1)
	return append(append(in, s.seq[len(s.seq)-1]), s.plan.e...)
}

// Apply judges the planned step on logits — one row of Vocab for each token fed, in
// order — and commits what it keeps.
func (s *Session) Apply(logits []float32) (Step, error) {
	pl := s.plan
	s.plan = plan{}
	st := Step{Pass: len(pl.e) + 1}
	switch pl.kind {
	case planOwn:
		j, err := s.check(&st, pl.e, pl.q, logits)
		if err != nil {
			return Step{}, err
		}
		s.Stats.Plain++
		s.Stats.Guessed += len(pl.e)
		s.Stats.GuessAccepted += j
	case planVerify:
		L := len(s.seq)
		st.Used = true
		s.Stats.Rounds++
		if pl.branch {
			s.Stats.Branches++
		}
		s.Stats.Drafted += len(pl.e)
		j, err := s.check(&st, pl.e, pl.q, logits)
		if err != nil {
			return Step{}, err
		}
		s.Stats.Accepted += j
		// Tokens past the checked ones count as rejected: the draft rolls back to the
		// verifier's own token after the last one checked.
		rejected := j < pl.proposed
		st.Verdict = s.verdict(pl.round, pl.skip+j, L+j, rejected)
	default:
		return Step{}, errors.New("verifier: apply without a planned step")
	}
	return st, nil
}

// check judges the tokens e in order on the logits of a pass over the last committed
// token and e, and commits the longest accepted prefix and the verifier's own token
// after it (a correction, or a bonus when all are kept). q(i) is the distribution e[i]
// was drawn from, asked only in rejection mode. It returns how many it kept, or
// ErrNoToken, committing nothing, when a row of logits leaves no token to draw.
func (s *Session) check(st *Step, e []int32, q func(i int) *sample.Dist, logits []float32) (int, error) {
	L := len(s.seq)
	V := s.m.Vocab
	j := 0
	var last int32
	for ; j < len(e); j++ {
		tok, ok := s.judge(logits[j*V:(j+1)*V], L+j, e[j], q, j)
		if !ok {
			last = tok
			break
		}
		// The next token is judged with this one in the output, as plain decoding
		// would have drawn it (penalties count the output).
		s.smp.Observe(e[j])
	}
	if j == len(e) {
		last = s.choose(logits[j*V:(j+1)*V], L+j)
	}
	if last < 0 {
		return 0, fmt.Errorf("%w: at position %d", ErrNoToken, L+j)
	}
	s.smp.Observe(last)
	// Keep in the cache every fed token that is now committed: seq[L-1] and e[:j].
	s.kv.Truncate(L + j)
	for i, t := range e[:j] {
		if s.commit(st, t, logits[i*V:(i+1)*V]); s.Done() {
			break
		}
	}
	if !s.Done() {
		s.commit(st, last, logits[j*V:(j+1)*V])
	}
	return j, nil
}

// judge decides the draft token x at pos from the verifier's logits. It returns
// (x, true) to accept, or (the verifier's correction, false) — a correction of -1 when
// the logits leave no token to draw.
func (s *Session) judge(logits []float32, pos int, x int32, q func(i int) *sample.Dist, i int) (int32, bool) {
	if s.req.Sampling.Greedy() || s.req.Mode != spec.Rejection {
		// Greedy and coupled: the verifier's token is plain decoding's; a draft
		// token is kept when it equals it.
		t := s.choose(logits, pos)
		return t, t == x
	}
	// Rejection sampling (Leviathan et al. 2023, Algorithm 1): accept with probability
	// min(1, p(x)/q(x)), else draw from normalize(max(0, p − q)).
	pd := s.smp.Distribution(logits)
	if len(pd.IDs) == 0 || !(pd.Probs[0] >= 0) {
		return -1, false // NaN logits: an empty support, or NaN probabilities
	}
	qd := q(i)
	px, qx := float64(pd.Prob(x)), float64(qd.Prob(x))
	if qx > 0 && sample.Uniform(s.req.Sampling.Seed, uint64(pos), streamAccept) < px/qx {
		return x, true
	}
	return residual(pd, qd, sample.Uniform(s.req.Sampling.Seed, uint64(pos), streamResidual)), false
}

// Noise streams for rejection sampling; token ids use streams below the vocabulary size.
const (
	streamAccept   = 1 << 40
	streamResidual = 1<<40 + 1
)

// residual draws from normalize(max(0, p − q)) by inverse CDF with uniform u. When p ≤ q
// everywhere (p = q), it draws from p.
func residual(p, q *sample.Dist, u float64) int32 {
	qProb := lookup(q)
	total := 0.0
	for i, id := range p.IDs {
		total += max(0, float64(p.Probs[i])-qProb(id))
	}
	if total <= 0 {
		acc := 0.0
		for i, id := range p.IDs {
			acc += float64(p.Probs[i])
			if u <= acc {
				return id
			}
		}
		return p.IDs[len(p.IDs)-1]
	}
	acc, target := 0.0, u*total
	lastPos := p.IDs[0]
	for i, id := range p.IDs {
		r := max(0, float64(p.Probs[i])-qProb(id))
		if r <= 0 {
			continue
		}
		lastPos = id
		acc += r
		if target <= acc {
			return id
		}
	}
	return lastPos
}

// lookup returns d.Prob, answering 0 at once for an id d does not hold (a bitset of its
// ids). residual looks up every id of p, the whole vocabulary when no filter is set:
// scanning the draft's 64 ids for each of Qwen2's 152,064 took 6-7 ms a rejection on
// the verifier's engine goroutine.
func lookup(d *sample.Dist) func(id int32) float64 {
	top := int32(-1)
	for _, id := range d.IDs {
		top = max(top, id)
	}
	held := make([]uint64, top/64+1)
	for _, id := range d.IDs {
		if id >= 0 {
			held[id/64] |= 1 << (id % 64)
		}
	}
	return func(id int32) float64 {
		if id < 0 || id > top || held[id/64]&(1<<(id%64)) == 0 {
			return 0
		}
		return float64(d.Prob(id))
	}
}

// commit appends one token to the committed sequence and the output; logits are the
// model's at its position.
func (s *Session) commit(st *Step, t int32, logits []float32) {
	pos := len(s.seq)
	n := len(s.out.IDs)
	var lp *generate.Logprobs
	if s.req.Logprobs {
		lp = generate.NewLogprobs(logits, t, s.req.TopLogprobs, s.m.Tok, s.out) // its text where it stands, before it is pushed
	}
	text := s.out.Push(t)
	if len(s.out.IDs) > n {
		s.seq = append(s.seq, t)
		st.Tokens = append(st.Tokens, generate.Token{ID: t, Pos: pos, Text: text, Logprobs: lp})
		return
	}
	if s.out.Reason == generate.EOS {
		s.endLP = lp
	}
	if text != "" {
		st.Tokens = append(st.Tokens, generate.Token{ID: -1, Pos: pos, Text: text})
	}
}

// Extend brings v, the last verdict this session made, up to the committed end: the
// tokens committed since — by an own step taken in the pass after answering a stale
// proposal — are appended. Without them the draft would draft from where the verifier
// was before that step, and a round of one token from there is overtaken again.
func (s *Session) Extend(v *spec.Verdict) {
	if end := v.Position + len(v.Tokens); end < len(s.seq) {
		v.Tokens = append(v.Tokens, s.seq[end:]...)
		s.synced = len(s.seq)
	}
}

// verdict tells the draft the committed tokens from position x on. rollback marks a
// verdict that contradicts what the draft has proposed, so proposals it made before
// applying this verdict are stale.
func (s *Session) verdict(round uint64, accepted, x int, rollback bool) *spec.Verdict {
	s.verdicts++
	if rollback {
		s.lastReject, s.rejectRound, s.rejectPos = s.verdicts, round, x
	}
	// Report from the previous verdict's position at the latest: the draft, having
	// applied that one, holds at least that many tokens, so it can always line its
	// sequence up with this one — even after it rolled back on its own when a bonus
	// token contradicted a round it had pipelined.
	from := min(x, s.prevPos)
	s.prevPos = x
	v := &spec.Verdict{Round: round, Seq: s.verdicts, Accepted: accepted, Position: from, Rollback: rollback}
	if from < len(s.seq) {
		v.Tokens = append([]int32(nil), s.seq[from:]...)
	}
	s.synced = len(s.seq)
	return v
}
