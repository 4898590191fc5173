package verifier

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/spec"
)

// ID names a request in a Scheduler; the caller chooses it, unique among live requests.
type ID uint64

// Forwarder runs one batched forward pass (model.Batch).
type Forwarder interface {
	Forward(segs []model.Segment) ([]float32, error)
	MaxTokens() int
}

var _ Forwarder = (*model.Batch)(nil)

// Config sizes a Scheduler. Zero fields take the defaults documented on each.
type Config struct {
	// MaxTokens is the most tokens in one pass (default and cap: the Forwarder's).
	MaxTokens int
	// PrefillChunk is the most prompt tokens one pass prefills, all requests together
	// (default MaxTokens/2), so that a long prompt never stalls the others' steps.
	PrefillChunk int
	// MaxRunning is the most requests admitted at once (default 64).
	MaxRunning int
	// MaxQueue is the most requests waiting for admission (default 256), not counting
	// those the next admission takes; Submit fails with ErrQueueFull beyond it.
	MaxQueue int
	// MaxGamma caps the draft tokens one pass checks for one request (default 8).
	MaxGamma int
	// Lookup caps the tokens an own step guesses by prompt lookup (0: none).
	Lookup int
}

// Job is a request as the scheduler takes it.
type Job struct {
	Request
	// Spec lets the request speculate: its draft's proposals and prompt-lookup guesses
	// are checked. False decodes plainly.
	Spec bool
	// MaxGamma, when > 0, lowers Config.MaxGamma for this request (never raises it).
	MaxGamma int
	// Gamma, when > 0, fixes the draft tokens checked per pass (at most MaxGamma),
	// whatever the controller would choose.
	Gamma int
	// Draftable: the request has a draft it could speculate with, whether or not the
	// caller connected it (a caller may leave it unconnected while DraftsOn is false).
	// With drafts off, only such requests measure what decoding plainly gives up.
	Draftable bool
}

// Sentinel errors of Submit.
var (
	// ErrQueueFull: the admission queue holds Config.MaxQueue requests already.
	ErrQueueFull = errors.New("admission queue full")
	// ErrDuplicate: a request with this ID is live.
	ErrDuplicate = errors.New("request id already in use")
	// ErrTooLarge: the request's prompt and greatest growth need more KV blocks than
	// the whole cache has; it could never be admitted.
	ErrTooLarge = errors.New("request larger than the whole KV cache budget")
)

// Update is what one Step did for one request.
type Update struct {
	ID       ID
	Admitted bool             // the request left the queue in this step (and runs)
	Tokens   []generate.Token // committed tokens to stream, in order
	Verdicts []spec.Verdict   // for the request's draft, in order
	Rounds   []Round          // draft proposals verified, in order
	Done     bool             // the request finished (Output says why) or failed (Err)
	Err      error            // the request failed; it is gone
	// CachedPrompt is how many prompt positions came from the prefix cache (set when
	// Admitted). Resume tokens the cache held too are not counted: they are not the
	// prompt.
	CachedPrompt int
	Output       *generate.Output // the generation; set when Done without Err
	// PromptLogprobs: with Request.PromptLogprobs, the prompt's tokens' (see
	// Session.PromptLogprobs), in the one update of the step that completed them —
	// before any of the request's tokens, so that they can be streamed first.
	PromptLogprobs []*generate.Logprobs
	// EndLogprobs: with Request.Logprobs, the log-probabilities of the token that
	// ended the generation (see Session.EndLogprobs); set with Output.
	EndLogprobs *generate.Logprobs
	Stats       Stats // the request's so far; final when Done
}

// Round describes one verified draft proposal.
type Round struct {
	Round    uint64        // the proposal's round
	Start    int           // its first position
	Gamma    int           // tokens it proposed
	Drafted  int           // of them, checked in the pass
	Accepted int           // of those, kept
	Drafting time.Duration // the draft's compute time for it (0: unknown)
	Next     int           // the γ the verdict asked for next
}

// Ready is what one Step did.
type Ready struct {
	Updates  []Update
	Tokens   int // tokens the pass ran (0: no pass)
	Segments int // requests in the pass
	// Speculative is the pass's tokens beyond one per decoding request and the
	// prompt chunks: draft tokens and guesses the controller chose to check.
	Speculative int
}

// Scheduler is the verifier's deterministic core under load: it owns every admitted
// request, and each Step builds one ragged batch — prompt chunks under a token budget,
// each decoding request's next step, and the draft tokens or prompt-lookup guesses the
// goodput controller finds worth checking — runs one forward pass over it, and applies
// the results. It has no goroutines, clocks or I/O beyond the pass: the caller feeds
// events (Submit, Propose, Cancel, ObservePass with the measured time of a pass) and
// acts on what Step returns.
//
// Admission is by memory: a request is admitted, first come first served, once the KV
// pool can hold its prompt and its greatest growth (max tokens and one block of
// speculation) beside the reservations of everyone already admitted, so a running
// request never runs out of cache. The rest wait in a bounded queue.
//
// The goodput controller chooses, every pass, how many speculative tokens each request
// gets (0 allowed): with c(n) the measured cost of a pass of n tokens and α a request's
// acceptance, the k-th token of a request adds α^k expected committed tokens, and is
// worth adding while it raises the pass's committed tokens per second, E/c(N):
// α^k·c(N) > (c(N+1) − c(N))·E. Candidates are taken best first. When passes are
// bound by arithmetic, extra tokens cost as much as the ones every request needs, and
// the controller checks none: speculation never costs throughput.
type Scheduler struct {
	cfg     Config
	fwd     Forwarder
	m       *model.Model
	kv      *kvcache.Pool
	prefix  *kvcache.Prefix // nil: no prefix cache
	cost    *Cost
	running []*entry // admitted, in admission order
	queue   []*entry // waiting, first come first
	byID    map[ID]*entry

	reserved int // KV blocks reserved by running requests

	drafts    draftSwitch // whether to speculate at all (ObserveStep)
	committed int         // tokens the last Step committed
	// the last Step's pass: its tokens, and how many of them were prompt chunks
	passTokens, prefilled int

	// scratch reused by Step
	arena []int32 // the pass's tokens, capacity MaxTokens
	segs  []model.Segment
	cands []candidate
}

// entry is one request in the scheduler.
type entry struct {
	id    ID
	job   Job
	sess  *Session // nil while queued
	props []spec.Proposal
	need  int // KV blocks reserved
	draft rate
	guess rate
	// set while a pass is planned
	prefill   []int32
	prefillAt int // position of prefill[0]
	input     []int32
	source    source
	avail     int     // speculative tokens available to the controller
	guessed   []int32 // the lookup guess, when the source is srcLookup
	k         int     // speculative tokens chosen
	alpha     float64 // acceptance of the source
	cached    int
	// Catching up with a draft that lags: own steps taken since a proposal was last
	// checked, and whether the entry sits out passes waiting for one (see hold).
	behind  int
	drafted bool // the request's draft has proposed
	held    int  // passes left to sit out; 0: not held
	noDraft bool // the draft is gone (DropDraft)
	// promptSent: the prompt's log-probabilities have gone out in an update.
	promptSent bool
}

// A request whose draft has proposed but whose proposals have all arrived too late to
// check (the verifier decoded past them) for maxBehind of its own steps is held: it
// sits out up to holdPasses passes, or until a proposal it can check arrives or Timer
// fires, so that the draft catches up. Alone on the verifier, a pass is shorter than a
// draft's round trip and without holds no proposal would ever be checked. A stale
// proposal that arrives during the hold is answered at the next Step, without a pass
// and without ending the hold: its verdict is how the draft learns where to catch up.
//
// Only a verifier running at most maxHoldRunning requests holds one: with more, a pass
// is as long as a draft's round trip and proposals arrive in time, while a held request
// only shrinks the passes that carry the others.
const (
	maxBehind      = 16
	holdPasses     = 4
	maxHoldRunning = 2
)

type source int

const (
	srcNone source = iota
	srcDraft
	srcLookup
)

// rate estimates a per-token acceptance probability from decayed counts of accepted
// tokens and of rounds that ended in a rejection: for a run of independent acceptances
// with probability α, accepted / (accepted + rejections) estimates α.
type rate struct{ acc, rej float64 }

const decay = 0.9 // weight of history per observed round

func (r *rate) alpha() float64 { return r.acc / (r.acc + r.rej) }

func (r *rate) observe(checked, kept int) {
	if checked == 0 {
		return
	}
	r.acc = r.acc*decay + float64(kept)
	x := 0.0
	if kept < checked {
		x = 1
	}
	r.rej = r.rej*decay + x
}

// candidate is the k-th speculative token of a request, worth gain expected tokens.
type candidate struct {
	e    *entry
	k    int
	gain float64
}

// NewScheduler returns a scheduler running passes with fwd for m, its cache in kv;
// prefix, when not nil, shares the KV pages of prompt prefixes between requests.
func NewScheduler(fwd Forwarder, m *model.Model, kv *kvcache.Pool, prefix *kvcache.Prefix, cfg Config) *Scheduler {
	if cfg.MaxTokens <= 0 || cfg.MaxTokens > fwd.MaxTokens() {
		cfg.MaxTokens = fwd.MaxTokens()
	}
	if cfg.PrefillChunk <= 0 {
		cfg.PrefillChunk = max(cfg.MaxTokens/2, 1)
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = 64
	}
	// Every running request takes at least one token of every pass.
	cfg.MaxRunning = min(cfg.MaxRunning, cfg.MaxTokens)
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 256
	}
	if cfg.MaxGamma <= 0 {
		cfg.MaxGamma = 8
	}
	return &Scheduler{cfg: cfg, fwd: fwd, m: m, kv: kv, prefix: prefix, cost: NewCost(cfg.MaxTokens), byID: map[ID]*entry{}, drafts: newDraftSwitch()}
}

// Cost is the scheduler's pass-cost curve (ObservePass feeds it).
func (s *Scheduler) Cost() *Cost { return s.cost }

// ObservePass records the measured time of a pass of n tokens.
func (s *Scheduler) ObservePass(n int, d time.Duration) { s.cost.Observe(n, d) }

// ObserveStep records the wall time the last Step stood for: from the end of the step
// before it (or from when work arrived, after an idle wait) to its own end. It drives
// the measured choice of checking drafts at all (see draftSwitch); a caller that never
// calls it keeps drafts on.
func (s *Scheduler) ObserveStep(wall time.Duration) {
	// A setting is measured only on steps that show it: with drafts off, while a
	// request that could speculate with a draft runs plainly; with them on, while most
	// such requests have their drafts proposing. Requests that arrived while drafts
	// were off run without them, so just after the switch turns on a loaded verifier
	// still decodes mostly plainly, and would measure that as speculation.
	draftable, drafted := 0, 0
	for _, e := range s.running {
		if e.job.Spec && e.job.Draftable {
			draftable++
			if e.drafted {
				drafted++
			}
		}
	}
	measurable := draftable > 0 && (!s.drafts.on || drafted > 0 && 4*drafted >= 3*draftable)
	// Prompt chunks commit nothing, and come in waves (a burst of new requests): leave
	// their share of the pass, by the cost curve, out of the time, so that a wave in
	// one setting's epoch does not count against it.
	switch {
	case s.prefilled == 0:
	case s.prefilled >= s.passTokens:
		wall = 0
	default:
		wall = time.Duration(float64(wall) * s.cost.At(s.passTokens-s.prefilled) / s.cost.At(s.passTokens))
	}
	s.drafts.observe(s.committed, wall, len(s.running), measurable)
}

// DraftsOn reports whether the scheduler speculates at the moment: checks proposals
// and prompt-lookup guesses (see ObserveStep).
func (s *Scheduler) DraftsOn() bool { return s.drafts.on }

// Load reports the requests running and waiting.
func (s *Scheduler) Load() (running, queued int) { return len(s.running), len(s.queue) }

// HasWork reports whether Step would do anything: a request is running and not held
// for its draft, a held one has a stale proposal to answer, or one waiting can be
// admitted.
func (s *Scheduler) HasWork() bool {
	for _, e := range s.running {
		if e.held == 0 || s.staleHead(e) {
			return true
		}
	}
	return len(s.queue) > 0 && s.admissible(s.queue[0])
}

// staleHead reports whether e's next proposal is stale: it needs no pass, only an
// answer (dropStale). A proposal e has no room for is not stale: its answer is a step.
func (s *Scheduler) staleHead(e *entry) bool {
	return s.speculating(e) && len(e.props) > 0 && e.sess.room() > 0 && e.sess.Usable(e.props[0]) == 0
}

// Held reports whether a running request is held waiting for its draft's proposal:
// the caller, having no other work, should wait for one (Propose) a short while and
// then call Timer.
func (s *Scheduler) Held() bool {
	for _, e := range s.running {
		if e.held > 0 {
			return true
		}
	}
	return false
}

// Timer ends every hold: the caller waited long enough for the drafts.
func (s *Scheduler) Timer() {
	for _, e := range s.running {
		e.held = 0
	}
}

// blocks is how many KV blocks a request may ever hold: its prompt, its new tokens and
// a pass's speculative tokens past them, plus one for a copy on write into a shared
// block.
func (s *Scheduler) blocks(j Job) int {
	bt := s.kv.Config().BlockTokens
	n := min(len(j.Prompt)+len(j.Resume)+j.Limits.MaxTokens+s.cfg.MaxGamma+1, s.m.Context)
	return (n+bt-1)/bt + 1
}

// Submit queues a request. It fails with ErrQueueFull when the queue is full, with
// ErrTooLarge when the request could not fit even in an empty cache, and with
// ErrDuplicate for an ID in use.
func (s *Scheduler) Submit(id ID, j Job) error {
	if _, ok := s.byID[id]; ok {
		return fmt.Errorf("%w: %d", ErrDuplicate, id)
	}
	if len(j.Prompt) == 0 {
		return generate.ErrEmptyPrompt
	}
	if need, total := s.blocks(j), s.kv.Stats().Total; need > total {
		return fmt.Errorf("%w: it needs %d KV blocks, the whole budget is %d", ErrTooLarge, need, total)
	}
	// Requests the next admission takes do not count: a burst that arrives between
	// two steps would otherwise be refused while the budget has room for it.
	if len(s.queue)-s.admissibleNow() >= s.cfg.MaxQueue {
		return fmt.Errorf("%w: %d requests waiting, %d running", ErrQueueFull, len(s.queue), len(s.running))
	}
	e := &entry{id: id, job: j, need: s.blocks(j), draft: rate{acc: 2, rej: 1}, guess: rate{acc: 1, rej: 1}}
	s.byID[id] = e
	s.queue = append(s.queue, e)
	return nil
}

// MaxProposals is the most proposals a request keeps queued: a draft pipelines a few
// rounds, and more is a runaway peer. Propose drops the oldest to make room.
const MaxProposals = 16

// Propose hands request id a proposal from its draft; the next passes verify it, in
// the order they came: a proposal verified means every one before it has been dropped.
// An unknown id (finished, cancelled) is ignored.
func (s *Scheduler) Propose(id ID, p spec.Proposal) {
	e, ok := s.byID[id]
	if !ok || !e.job.Spec || e.noDraft {
		return
	}
	// A held request resumes with a proposal it can check; a stale one (drafted before
	// the draft heard the last verdict) is answered by the next Step, and the hold goes
	// on.
	if e.drafted = true; e.sess != nil && e.sess.Usable(p) > 0 {
		e.held = 0
	}
	if len(e.props) >= MaxProposals {
		e.props = e.props[1:]
	}
	e.props = append(e.props, p)
}

// DropDraft tells the scheduler that request id's draft is gone (its stream failed,
// or it misbehaved): the proposals queued for it are dropped, later ones ignored, and
// the request is never again held waiting for one; it decodes on plainly, guessing by
// prompt lookup as before. An unknown id is ignored.
func (s *Scheduler) DropDraft(id ID) {
	e, ok := s.byID[id]
	if !ok {
		return
	}
	e.noDraft, e.drafted = true, false
	e.props, e.held, e.behind = nil, 0, 0
}

// Cancel ends request id, queued or running, and frees its cache at once. An unknown
// id is ignored.
func (s *Scheduler) Cancel(id ID) {
	e, ok := s.byID[id]
	if !ok {
		return
	}
	s.remove(e)
}

// Withdraw ends request id if it is still waiting for admission, and reports whether
// it did; false when it has been admitted (it runs on), has ended, or is unknown. A
// caller whose bounded wait for admission runs out withdraws its request so, and
// refuses it only on true: the request is then refused or admitted, never both.
func (s *Scheduler) Withdraw(id ID) bool {
	e, ok := s.byID[id]
	if !ok || e.sess != nil {
		return false
	}
	s.remove(e)
	return true
}

func (s *Scheduler) remove(e *entry) {
	delete(s.byID, e.id)
	if e.sess == nil {
		s.queue = slices.DeleteFunc(s.queue, func(x *entry) bool { return x == e })
		return
	}
	if s.prefix != nil {
		s.prefix.Retire(e.sess.kv, e.sess.seq)
	}
	e.sess.kv.Release()
	s.reserved -= e.need
	s.running = slices.DeleteFunc(s.running, func(x *entry) bool { return x == e })
}

// Admit admits the waiting requests that fit, as Step does first, and returns their
// updates (Admitted, or the failure to start one), so that the caller can act on an
// admission — connect the request's draft — while the pass that prefills it runs.
func (s *Scheduler) Admit() []Update {
	var r Ready
	s.admit(&r)
	return r.Updates
}

// admissibleNow is how many waiting requests, first come first served, the next
// admission takes (admit).
func (s *Scheduler) admissibleNow() int {
	running, reserved, total := len(s.running), s.reserved, s.kv.Stats().Total
	for i, e := range s.queue {
		if running >= s.cfg.MaxRunning || reserved+e.need > total {
			return i
		}
		running++
		reserved += e.need
	}
	return len(s.queue)
}

// admissible reports whether e can be admitted now.
func (s *Scheduler) admissible(e *entry) bool {
	return len(s.running) < s.cfg.MaxRunning && s.reserved+e.need <= s.kv.Stats().Total
}

// admit moves waiting requests into the running set, first come first served, while
// the cache can hold them.
func (s *Scheduler) admit(r *Ready) {
	for len(s.queue) > 0 && s.admissible(s.queue[0]) {
		e := s.queue[0]
		s.queue = s.queue[1:]
		kv := s.kv.NewSeq()
		full := append(append([]int32(nil), e.job.Prompt...), e.job.Resume...)
		if s.prefix != nil && !e.job.PromptLogprobs {
			// (A request for the prompt's log-probabilities needs its logits computed.)
			e.cached = s.prefix.Attach(kv, full)
		}
		sess, err := newSession(s.m, kv, e.job.Request)
		if err != nil {
			kv.Release()
			delete(s.byID, e.id)
			r.Updates = append(r.Updates, Update{ID: e.id, Done: true, Err: err})
			continue
		}
		if sess.Done() && !owesPrompt(sess) {
			// The resumed tokens ended the generation (a stop string, max_tokens):
			// there is nothing to compute. (One that owes its prompt's
			// log-probabilities runs until its prompt is computed: see owesPrompt.)
			kv.Release()
			delete(s.byID, e.id)
			r.Updates = append(r.Updates, Update{ID: e.id, Done: true, Output: sess.Output(), Stats: sess.Stats, PromptLogprobs: sess.PromptLogprobs(), EndLogprobs: sess.EndLogprobs()})
			continue
		}
		e.sess = sess
		s.reserved += e.need
		s.running = append(s.running, e)
		r.Updates = append(r.Updates, Update{ID: e.id, Admitted: true, CachedPrompt: min(e.cached, len(e.job.Prompt))})
	}
}

// gammaCap is the most draft tokens one pass may check for e.
func (s *Scheduler) gammaCap(e *entry) int { return e.job.GammaCap(s.cfg.MaxGamma) }

// GammaCap is the most draft tokens one pass may check for j on a scheduler whose
// Config.MaxGamma is maxGamma: j's MaxGamma and fixed Gamma only lower it.
func (j Job) GammaCap(maxGamma int) int {
	g := maxGamma
	if j.MaxGamma > 0 {
		g = min(g, j.MaxGamma)
	}
	if j.Gamma > 0 {
		g = min(g, j.Gamma)
	}
	return g
}

// FirstGamma is the γ j's draft should start with, before a verdict sets it: j's
// fixed γ, else a few tokens, never above GammaCap(maxGamma) nor below 1.
func (j Job) FirstGamma(maxGamma int) int {
	const first = 4
	g := j.GammaCap(maxGamma)
	if j.Gamma == 0 {
		g = min(g, first)
	}
	return max(g, 1)
}

// MaxGamma is Config.MaxGamma with its default filled in.
func (s *Scheduler) MaxGamma() int { return s.cfg.MaxGamma }

// Step admits what it can, runs one pass over every running request and returns what
// it did. An error is the pass's own failure (a bug or a broken Forwarder): the
// requests in it have failed and are gone, and their updates say so.
func (s *Scheduler) Step() (Ready, error) {
	var r Ready
	s.committed, s.passTokens, s.prefilled = 0, 0, 0
	defer func() {
		s.passTokens = r.Tokens
		for i := range r.Updates {
			u := &r.Updates[i]
			s.committed += len(u.Tokens)
			if e := s.byID[u.ID]; e != nil && e.sess != nil && !u.Done {
				u.Stats = e.sess.Stats
			}
		}
	}()
	s.admit(&r)
	if len(s.running) == 0 {
		return r, nil
	}
	upd := map[ID]int{}
	update := func(e *entry) *Update {
		i, ok := upd[e.id]
		if !ok {
			for j := range r.Updates {
				if r.Updates[j].ID == e.id {
					upd[e.id] = j
					return &r.Updates[j]
				}
			}
			r.Updates = append(r.Updates, Update{ID: e.id})
			i = len(r.Updates) - 1
			upd[e.id] = i
		}
		return &r.Updates[i]
	}
	budget := s.cfg.MaxTokens
	decoding := 0
	var failed []*entry
	// takeStep gives e its step in the pass: the one token it needs, and the source of
	// its candidates (a usable proposal, or a lookup guess).
	takeStep := func(e *entry) {
		if err := s.pickSource(e, update); err != nil {
			failed = append(failed, e)
			update(e).Err = err
			e.prefill, e.input, e.source = nil, nil, srcNone // not planned: it is removed
			return
		}
		budget--
		decoding++
	}
	// Held requests sit out a pass, if one runs: a Step may run none, only answering
	// held requests' stale proposals.
	pass := slices.ContainsFunc(s.running, func(e *entry) bool { return e.held == 0 })
	// Every request whose prompt is in the cache takes its next step.
	for _, e := range s.running {
		e.prefill, e.input, e.source, e.avail, e.k, e.guessed = nil, nil, srcNone, 0, 0, nil
		if e.held > 0 {
			for s.staleHead(e) {
				input, err := s.dropStale(e, update)
				if err != nil {
					failed = append(failed, e)
					update(e).Err = err
					break
				}
				if input != nil {
					panic("verifier: a stale proposal planned a step") // staleHead: room, nothing usable
				}
			}
			if pass {
				e.held--
			}
			continue
		}
		if e.sess.Prefill() > 0 || budget == 0 || e.sess.Done() {
			continue
		}
		takeStep(e)
	}
	// Prompt chunks, first come first served, under the prefill budget. A request
	// whose prompt completes in this pass takes its first step in the same segment.
	chunk := min(s.cfg.PrefillChunk, budget)
	for _, e := range s.running {
		n := e.sess.Prefill()
		if n == 0 || chunk == 0 {
			continue
		}
		take := min(n, chunk)
		e.prefill, e.prefillAt = e.sess.PrefillTokens(take), e.sess.kv.Len()
		s.prefilled += take
		chunk -= take
		budget -= take
		if take == n && budget > 0 && !e.sess.Done() {
			takeStep(e)
		}
	}
	r.Speculative = s.control(budget, decoding)
	// Plan each stepping request with the tokens the controller gave it.
	s.segs = s.segs[:0]
	if s.arena == nil {
		s.arena = make([]int32, 0, s.cfg.MaxTokens)
	}
	s.arena = s.arena[:0]
	var planned []*entry
	for _, e := range s.running {
		if e.source == srcNone && e.input == nil && e.prefill == nil {
			continue
		}
		if err := s.plan(e); err != nil {
			failed = append(failed, e)
			update(e).Err = err
			continue
		}
		// The pass's tokens go into one buffer reused every step; it never grows past
		// MaxTokens, so the segments' slices stay valid through the pass.
		at := len(s.arena)
		s.arena = append(append(s.arena, e.prefill...), e.input...)
		tokens := s.arena[at:len(s.arena):len(s.arena)]
		if len(tokens) == 0 {
			continue
		}
		rows := len(e.input)
		if e.job.PromptLogprobs {
			rows += len(e.prefill) // their rows predict the prompt's tokens
		}
		s.segs = append(s.segs, model.Segment{Seq: e.sess.kv, Tokens: tokens, Logits: rows})
		planned = append(planned, e)
		r.Tokens += len(tokens)
	}
	for _, e := range failed {
		u := update(e)
		u.Done, u.Stats = true, e.sess.Stats
		s.remove(e)
	}
	if len(s.segs) == 0 {
		return r, nil
	}
	r.Segments = len(s.segs)
	logits, err := s.fwd.Forward(s.segs)
	clear(s.segs)
	if err != nil {
		for _, e := range planned {
			u := update(e)
			u.Done, u.Err, u.Stats = true, fmt.Errorf("verifier pass: %w", err), e.sess.Stats
			s.remove(e)
		}
		return r, err
	}
	V := s.m.Vocab
	for _, e := range planned {
		if e.job.PromptLogprobs && len(e.prefill) > 0 {
			e.sess.observePrompt(e.prefillAt, logits[:len(e.prefill)*V])
			logits = logits[len(e.prefill)*V:]
		}
		if lps := e.sess.PromptLogprobs(); lps != nil && !e.promptSent {
			// Complete (a prompt of one token from the start): out ahead of the
			// tokens this pass commits.
			e.promptSent = true
			update(e).PromptLogprobs = lps
		}
		if e.job.PromptLogprobs && len(e.prefill) > 0 && e.sess.Done() && !owesPrompt(e.sess) {
			// Admitted done, for its prompt's log-probabilities: they are complete.
			u := update(e)
			u.Done, u.Output, u.Stats, u.EndLogprobs = true, e.sess.Output(), e.sess.Stats, e.sess.EndLogprobs()
			s.remove(e)
			continue
		}
		if len(e.input) == 0 {
			if s.prefix != nil && e.sess.Prefill() == 0 {
				s.prefix.Publish(e.sess.kv, e.sess.seq)
			}
			continue
		}
		rows := logits[:len(e.input)*V]
		logits = logits[len(e.input)*V:]
		if s.prefix != nil && len(e.prefill) > 0 {
			s.prefix.Publish(e.sess.kv, e.sess.seq)
		}
		before := e.sess.Stats
		st, err := e.sess.Apply(rows)
		u := update(e)
		if err != nil {
			u.Done, u.Err, u.Stats = true, err, e.sess.Stats
			s.remove(e)
			continue
		}
		switch e.source {
		case srcDraft:
			p := e.props[0]
			e.props = e.props[1:]
			drafted, accepted := e.sess.Stats.Drafted-before.Drafted, e.sess.Stats.Accepted-before.Accepted
			e.draft.observe(drafted, accepted)
			rd := Round{Round: p.Round, Start: p.Start, Gamma: len(p.Tokens), Drafted: drafted, Accepted: accepted, Drafting: p.Drafting}
			if st.Verdict != nil {
				rd.Next = s.withGamma(e, *st.Verdict).NextGamma
			}
			u.Rounds = append(u.Rounds, rd)
		case srcLookup:
			e.guess.observe(e.sess.Stats.Guessed-before.Guessed, e.sess.Stats.GuessAccepted-before.GuessAccepted)
		}
		if e.source == srcDraft {
			e.behind = 0
		} else if e.drafted && s.speculating(e) && len(s.running) <= maxHoldRunning {
			if e.behind++; e.behind >= maxBehind {
				e.behind, e.held = 0, holdPasses
			}
		}
		u.Tokens = append(u.Tokens, st.Tokens...)
		switch {
		case e.sess.Done():
		case st.Verdict != nil:
			u.Verdicts = append(u.Verdicts, s.withGamma(e, *st.Verdict))
		case len(u.Verdicts) > 0:
			// A stale proposal answered before this own step: the draft hears of the
			// step's token too.
			e.sess.Extend(&u.Verdicts[len(u.Verdicts)-1])
		}
		if e.sess.Done() {
			u.Done, u.Output, u.Stats, u.EndLogprobs = true, e.sess.Output(), e.sess.Stats, e.sess.EndLogprobs()
			s.remove(e)
		}
	}
	return r, nil
}

// owesPrompt reports whether sess asked for its prompt's log-probabilities and they
// are not computed yet. A session resumed with every token of its generation (the
// verifier before it failed after the last token, before its final message) is done
// at admission, and still runs its prompt through the model for them: without, its
// final message would lack them.
func owesPrompt(sess *Session) bool {
	return sess.req.PromptLogprobs && sess.PromptLogprobs() == nil
}

// speculating reports whether e speculates in this pass: when the switch says so, or
// always when the client fixed γ (it asked for exactly that).
func (s *Scheduler) speculating(e *entry) bool { return s.drafts.on || e.job.Gamma > 0 }

// pickSource drops the stale proposals at the head of e's queue — answering those the
// draft must hear of — and sets what e's step may check: the first usable proposal,
// else a prompt-lookup guess.
func (s *Scheduler) pickSource(e *entry, update func(*entry) *Update) error {
	e.source = srcLookup
	for s.speculating(e) && len(e.props) > 0 {
		if u := e.sess.Usable(e.props[0]); u > 0 {
			e.source, e.avail, e.alpha = srcDraft, min(u, s.gammaCap(e)), e.draft.alpha()
			return nil
		}
		input, err := s.dropStale(e, update)
		if err != nil {
			return err
		}
		if input != nil {
			// No room for any draft token: the session planned a plain step.
			e.source, e.input = srcNone, input
			return nil
		}
	}
	if e.job.Spec && s.cfg.Lookup > 0 && s.speculating(e) {
		e.guessed = e.sess.Guess(min(s.cfg.Lookup, s.gammaCap(e)))
		e.avail, e.alpha = len(e.guessed), e.guess.alpha()
	}
	return nil
}

// dropStale drops the proposal at the head of e's queue, of which no pass can check a
// token (Usable 0), answering it with a verdict when the draft must hear of it. When
// the request has no room for a draft token it returns the input of the plain step
// the session planned instead; a stale proposal (staleHead) needs none.
func (s *Scheduler) dropStale(e *entry, update func(*entry) *Update) ([]int32, error) {
	p := e.props[0]
	e.props = e.props[1:]
	input, st, err := e.sess.PlanVerify(p, 1)
	if err != nil {
		return nil, err
	}
	if st.Verdict != nil && !e.sess.Done() {
		u := update(e)
		u.Verdicts = append(u.Verdicts, s.withGamma(e, *st.Verdict))
	}
	return input, nil
}

// control gives the decoding requests their speculative tokens from budget spare
// tokens of the pass, and returns how many it gave (see Scheduler).
func (s *Scheduler) control(budget, decoding int) int {
	s.cands = s.cands[:0]
	for _, e := range s.running {
		if e.avail == 0 || e.source == srcNone {
			continue
		}
		if e.job.Gamma > 0 && e.source == srcDraft {
			// A fixed γ is the client's choice, not the controller's.
			k := min(e.avail, budget)
			e.k, budget = k, budget-k
			continue
		}
		a := math.Min(e.alpha, 0.99)
		g := 1.0
		for k := 1; k <= e.avail; k++ {
			g *= a
			s.cands = append(s.cands, candidate{e: e, k: k, gain: g})
		}
	}
	slices.SortStableFunc(s.cands, func(x, y candidate) int {
		switch {
		case x.gain > y.gain:
			return -1
		case x.gain < y.gain:
			return 1
		}
		return x.k - y.k
	})
	// The best m speculative tokens are the first m candidates (each request's gains
	// fall with k, so its tokens come in order); take the m that commits the most
	// tokens per second of the pass. Not the first m after which one more token stops
	// paying: passes measured while drafts compute beside the verifier make the curve
	// jump from one token to two and stay flat after, and a token-by-token walk would
	// stop at the jump.
	n := s.cfg.MaxTokens - budget // tokens already in the pass
	gain := float64(decoding)
	best, added := gain/s.cost.At(n), 0
	for m, c := range s.cands {
		if m == budget {
			break
		}
		gain += c.gain
		if r := gain / s.cost.At(n+m+1); r > best {
			best, added = r, m+1
		}
	}
	for _, c := range s.cands[:added] {
		c.e.k++
	}
	// A request whose lookup guess went unchecked drifts back toward the prior, so
	// that text that starts repeating later is tried again.
	for _, e := range s.running {
		if e.source == srcLookup && e.avail > 0 && e.k == 0 {
			const back = 0.05
			e.guess.acc += back * (1 - e.guess.acc)
			e.guess.rej += back * (1 - e.guess.rej)
		}
	}
	return added
}

// plan fixes e's step for this pass: its prompt chunk and the tokens it feeds.
func (s *Scheduler) plan(e *entry) error {
	if e.input != nil || (e.source == srcNone && e.prefill != nil) {
		return nil
	}
	switch {
	case e.source == srcDraft && e.k > 0:
		input, _, err := e.sess.PlanVerify(e.props[0], e.k)
		if err != nil {
			return err
		}
		e.input = input
	case e.source == srcLookup && e.k > 0:
		e.input = e.sess.PlanOwn(e.guessed[:e.k])
	default:
		// A step without speculation; a proposal not checked now stays queued.
		e.source = srcNone
		e.input = e.sess.PlanOwn(nil)
	}
	return nil
}

// withGamma sets the draft's next γ in v: the draft tokens the controller would check
// for e at the current load, at least 1 (a request that fixed γ gets it).
func (s *Scheduler) withGamma(e *entry, v spec.Verdict) spec.Verdict {
	v.NextGamma = s.gammaCap(e)
	if e.job.Gamma == 0 {
		v.NextGamma = max(1, min(v.NextGamma, s.draftGamma(e)))
	}
	return v
}

// draftGamma is how many draft tokens of e the controller would check in a pass like
// the last, at the current load.
func (s *Scheduler) draftGamma(e *entry) int {
	n := max(len(s.running), 1)
	a := math.Min(e.draft.alpha(), 0.99)
	// As control chooses: the γ that commits the most tokens per second of the pass,
	// the others in it taking one token each.
	g, gain := 1.0, float64(n)
	best, k := gain/s.cost.At(n), 0
	for j := 1; j <= s.cfg.MaxGamma; j++ {
		g *= a
		gain += g
		if r := gain / s.cost.At(n+j); r > best {
			best, k = r, j
		}
	}
	return k
}
