package draft

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/spec"
)

// Scheduler drafts for many sessions in shared forward passes (continuous batching).
// Each Step runs one pass of a model.Batch over, for every session that should draft
// now, its next token (or a chunk of its context while it catches up); the weights are
// read once per pass whoever shares it. Because a batched row's arithmetic does not
// depend on the other rows, every session drafts exactly what it would draft alone.
//
// It is a deterministic core with no goroutines, clocks or I/O: the caller feeds it
// events (Start, Apply, Stop), calls Step while Busy, and after each Step hands Ready
// the time the pass took, getting back the proposals (and failures) to send. It is used
// by one goroutine, which owns the Batch and its kernels.Pool.
type Scheduler struct {
	b   *model.Batch
	kv  *kvcache.Pool
	cfg Config

	all  []*entry // sessions in start order
	byID map[uint64]*entry
	next int // index in all where the next pass starts picking (round robin)

	segs []model.Segment // the current pass
	fed  []*entry        // the session of each segment
	out  []Out           // to hand out by Ready
}

// Config tunes a Scheduler.
type Config struct {
	// Depth is how many main-line proposals a session keeps in flight (pipelining);
	// at least 1. A session with Depth proposals unanswered drafts a branch, if its
	// options ask for branches and it has one worth drafting, or waits.
	Depth int
	// Prefill is the most tokens of context (or of committed tokens after a rollback)
	// fed per pass over all sessions, so a long context never stalls the others'
	// drafting; at least 1. A session catches up over as many passes as it needs.
	Prefill int
	// Prefix, when not nil, is the KV pool's prefix cache: a session starts from the
	// longest run of its context that an ended session computed, and a session stopped
	// by its verifier leaves its entries there (Retire).
	Prefix *kvcache.Prefix
}

// Out is a proposal to send for a session, or the failure that stopped it.
type Out struct {
	ID       uint64
	Proposal spec.Proposal // valid when Err is nil; Drafting is the pass time of its rounds
	Err      error         // when not nil the session has failed and is stopped
}

// Pass describes the pass a Step ran (zero: none).
type Pass struct {
	Sessions int // sessions fed
	Tokens   int // tokens fed
	Prefill  int // of them, tokens fed without asking for their logits (catching up)
}

// entry is a session under the scheduler.
type entry struct {
	id       uint64
	s        *Session
	verdicts []spec.Verdict // received while a round was being drafted; applied when it ends
	cost     time.Duration  // pass time of the round being drafted so far
	ended    int            // index in Scheduler.out of the proposal this pass ended, or -1
}

// ErrUnknownSession is returned by Apply for an id that is not running (never started,
// stopped, or failed).
var ErrUnknownSession = errors.New("no such draft session")

// NewScheduler returns a scheduler that runs its passes on b, with sessions' caches
// drawn from kv.
func NewScheduler(b *model.Batch, kv *kvcache.Pool, cfg Config) *Scheduler {
	cfg.Depth = max(cfg.Depth, 1)
	cfg.Prefill = max(cfg.Prefill, 1)
	return &Scheduler{b: b, kv: kv, cfg: cfg, byID: map[uint64]*entry{}}
}

// Len is the number of sessions running.
func (sc *Scheduler) Len() int { return len(sc.all) }

// Start admits a session id drafting after context. It admits only while the KV pool has
// blocks for the context and the session's drafting room beyond what the running
// sessions need for theirs; otherwise it returns an error wrapping
// kvcache.ErrExhausted (the verifier then decodes that request plainly). An id already
// running is an error.
func (sc *Scheduler) Start(id uint64, context []int32, opt spec.Options) error {
	if _, dup := sc.byID[id]; dup {
		return fmt.Errorf("draft session %d already running", id)
	}
	if opt.Gamma < 1 {
		opt.Gamma = 1
	}
	need := sc.reserve(len(context), opt)
	if free := sc.headroom(); need > free {
		return fmt.Errorf("%w: a draft session of %d context tokens needs %d blocks, %d are free for new sessions", kvcache.ErrExhausted, len(context), need, free)
	}
	kv := sc.kv.NewSeq()
	if sc.cfg.Prefix != nil {
		sc.cfg.Prefix.Attach(kv, context)
	}
	s, err := newSession(kv, context, opt)
	if err != nil {
		kv.Release()
		return err
	}
	e := &entry{id: id, s: s, ended: -1}
	sc.all = append(sc.all, e)
	sc.byID[id] = e
	return nil
}

// reserve is the number of KV blocks a session of n tokens with options opt may soon
// hold: its tokens and Depth rounds of γ, and each branch's own blocks (a copied block
// and a round's worth).
func (sc *Scheduler) reserve(n int, opt spec.Options) int {
	bt := sc.kv.Config().BlockTokens
	blocks := func(tokens int) int { return (tokens + bt - 1) / bt }
	return blocks(n+sc.cfg.Depth*opt.Gamma+1) + opt.Branches*(blocks(opt.Gamma+1)+1)
}

// headroom is the number of blocks a new session can have (free, or held only by the
// prefix cache) that running sessions have not yet claimed by their reserve.
func (sc *Scheduler) headroom() int {
	free := sc.kv.Available()
	for _, e := range sc.all {
		o := e.s.opt
		o.Gamma = e.s.gamma
		free -= max(sc.reserve(len(e.s.seq), o)-e.s.kv.Blocks(), 0)
	}
	return free
}

// Apply hands session id a verdict. It takes effect before the session's next token is
// drafted, or, when a round is being drafted, once that round has drafted a token: the
// round is then cut short and proposed as it is (the verifier is waiting). A verdict
// that does not fit the session fails it (an Out with Err wrapping ErrBadVerdict). It
// returns ErrUnknownSession for an id not running.
func (sc *Scheduler) Apply(id uint64, v spec.Verdict) error {
	e, ok := sc.byID[id]
	if !ok {
		return fmt.Errorf("%w: %d", ErrUnknownSession, id)
	}
	e.verdicts = append(e.verdicts, v)
	return nil
}

// Stop ends session id at once, returning its KV blocks to the pool (or the prefix
// cache), and drops anything not yet handed out for it. Stopping an id not running does nothing.
func (sc *Scheduler) Stop(id uint64) {
	e, ok := sc.byID[id]
	if !ok {
		return
	}
	if sc.cfg.Prefix != nil {
		// The cache holds the entries of seq's tokens: drafted ones too, for they
		// are what the draft computes after that context whoever accepted them.
		sc.cfg.Prefix.Retire(e.s.kv, e.s.seq)
	}
	sc.remove(e)
	sc.out = slices.DeleteFunc(sc.out, func(o Out) bool { return o.ID == id })
}

func (sc *Scheduler) remove(e *entry) {
	e.s.Close()
	e.s.kv.Release()
	delete(sc.byID, e.id)
	i := slices.Index(sc.all, e)
	sc.all = slices.Delete(sc.all, i, i+1)
	if sc.next > i {
		sc.next--
	}
}

// fail stops e and reports err for it.
func (sc *Scheduler) fail(e *entry, err error) {
	sc.remove(e)
	sc.out = append(sc.out, Out{ID: e.id, Err: err})
}

// Busy reports whether a Step would do anything: some session has a round to draft or
// a verdict to apply, or something is waiting for Ready.
func (sc *Scheduler) Busy() bool {
	if len(sc.out) > 0 {
		return true
	}
	for _, e := range sc.all {
		if e.s.drafting() || len(e.verdicts) > 0 || sc.canBegin(e.s) {
			return true
		}
	}
	return false
}

// canBegin reports whether s would begin a round now: on the main line while fewer
// than Depth proposals are in flight, else a branch.
func (sc *Scheduler) canBegin(s *Session) bool {
	if s.Outstanding() < sc.cfg.Depth && s.CanDraft() {
		return true
	}
	_, _, _, ok := s.branchPoint()
	return ok
}

// begin starts s's next round as canBegin says; false when there is none.
func (sc *Scheduler) begin(s *Session) bool {
	if s.Outstanding() < sc.cfg.Depth && s.CanDraft() {
		return s.beginMain()
	}
	return s.beginBranch()
}

// settle applies e's waiting verdicts once no round is being drafted, failing e if one
// does not fit; it reports whether e is still running.
func (sc *Scheduler) settle(e *entry) bool {
	if e.s.drafting() {
		return true
	}
	for len(e.verdicts) > 0 {
		v := e.verdicts[0]
		e.verdicts = e.verdicts[1:]
		if err := e.s.Apply(v); err != nil {
			sc.fail(e, err)
			return false
		}
	}
	e.verdicts = nil
	return true
}

// end proposes e's round as drafted so far.
func (sc *Scheduler) end(e *entry) {
	p := e.s.finish()
	p.Drafting = e.cost
	e.cost = 0
	e.ended = len(sc.out)
	sc.out = append(sc.out, Out{ID: e.id, Proposal: p})
}

// Step runs one pass. First every session that has a verdict waiting and a round with
// at least one token cuts that round short and proposes it, and waiting verdicts are
// applied. Then, in round-robin order from where the last pass left off, every session
// that should draft (a round in progress, or room to begin one) adds its segment — its
// next token, or a chunk of what it must catch up on within the pass's prefill budget —
// while the pass has room for its tokens and the KV pool blocks for them. After the pass
// each fed session drafts its token; a round that has its γ tokens, or that a waiting
// verdict cuts short, becomes a proposal. Call Ready next.
//
// A session whose cache cannot grow even in a pass of its own fails with an error
// wrapping kvcache.ErrExhausted; one whose pass fails otherwise fails with that error.
func (sc *Scheduler) Step() Pass {
	for _, e := range slices.Clone(sc.all) {
		if len(e.verdicts) > 0 && e.s.drafting() && e.s.cur.drafted() > 0 {
			sc.end(e)
		}
		sc.settle(e)
	}
	for _, e := range sc.all {
		e.ended = -1
	}
	var pass Pass
	sc.segs, sc.fed = sc.segs[:0], sc.fed[:0]
	room, prefill := sc.b.MaxTokens(), sc.cfg.Prefill
	free := sc.kv.Available() // blocks only the prefix cache holds are evicted for the pass
	bt := sc.kv.Config().BlockTokens
	var starved *entry // the first session that had tokens to feed but no blocks
	n := len(sc.all)
	for k := range n {
		if room == 0 {
			break
		}
		e := sc.all[(sc.next+k)%n]
		if !e.s.drafting() && (len(e.verdicts) > 0 || !sc.begin(e.s)) {
			continue
		}
		seg, ok := e.s.segment(min(prefill, room-1))
		if !ok {
			continue
		}
		// Blocks the pass will take for it (a fork's shared last block is copied first).
		need := (seg.Seq.Len()+len(seg.Tokens)+bt-1)/bt - seg.Seq.Blocks()
		if b := e.s.cur.b; b != nil && seg.Seq == b.kv && b.kv.Len()%bt != 0 {
			need++
		}
		if need > free {
			if starved == nil {
				starved = e
			}
			continue
		}
		free -= need
		room -= len(seg.Tokens)
		prefill -= len(seg.Tokens) - seg.Logits
		sc.segs = append(sc.segs, seg)
		sc.fed = append(sc.fed, e)
		pass.Sessions++
		pass.Tokens += len(seg.Tokens)
		pass.Prefill += len(seg.Tokens) - seg.Logits
	}
	if n > 0 {
		sc.next = (sc.next + 1) % n
	}
	if len(sc.segs) == 0 {
		if starved != nil {
			sc.fail(starved, fmt.Errorf("%w: a draft session of %d tokens cannot grow its cache", kvcache.ErrExhausted, len(starved.s.seq)))
		}
		return pass
	}
	logits, err := sc.b.Forward(sc.segs)
	if err != nil {
		return sc.oneByOne(pass)
	}
	vocab := sc.b.Model().Vocab
	for i, e := range sc.fed {
		var l []float32
		if sc.segs[i].Logits > 0 {
			l, logits = logits[:vocab], logits[vocab:]
		}
		sc.consume(e, l)
	}
	clear(sc.segs)
	return pass
}

// oneByOne runs the pass's segments one at a time after the batched pass failed (no
// cache changed): a segment that fails alone fails its session, unless it only lacked
// KV blocks and another segment got them.
func (sc *Scheduler) oneByOne(pass Pass) Pass {
	var starved []*entry
	fed := 0
	for i, e := range sc.fed {
		logits, err := sc.b.Forward(sc.segs[i : i+1])
		switch {
		case errors.Is(err, kvcache.ErrExhausted):
			starved = append(starved, e)
		case err != nil:
			e.s.abort()
			sc.fail(e, err)
		default:
			fed++
			sc.consume(e, logits)
		}
	}
	if fed == 0 {
		for _, e := range starved {
			e.s.abort()
			sc.fail(e, fmt.Errorf("draft session: %w", kvcache.ErrExhausted))
		}
	}
	clear(sc.segs)
	return pass
}

// consume hands e the logits of its segment (nil: it asked for none) and ends its round
// when complete or when a waiting verdict cuts it short.
func (sc *Scheduler) consume(e *entry, logits []float32) {
	if e.s.consume(logits) || len(e.verdicts) > 0 && e.s.cur.drafted() > 0 {
		sc.end(e)
		sc.settle(e)
	}
}

// Ready attributes took, the measured time of the last Step's pass, to the rounds fed
// in it, and returns what is ready to send: proposals in the order they were made, and
// failures. Call it right after Step, with no event in between.
func (sc *Scheduler) Ready(took time.Duration) []Out {
	for _, e := range sc.fed {
		if _, running := sc.byID[e.id]; !running {
			continue
		}
		if e.ended >= 0 {
			sc.out[e.ended].Proposal.Drafting += took
			e.ended = -1
		} else {
			e.cost += took
		}
	}
	sc.fed = sc.fed[:0]
	out := sc.out
	sc.out = nil
	return out
}
