package verifiersvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/telemetry"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/verifier"
)

// engine runs the verifier's scheduler on one goroutine, the only one that touches it
// and the model's batch: requests reach it as events on bounded channels, and it
// hands each request its updates through the request's sink.
type engine struct {
	model   *model.Model
	kv      *kvcache.Pool
	prefix  *kvcache.Prefix
	pool    *kernels.Pool
	sched   *verifier.Scheduler
	log     *slog.Logger
	metrics *telemetry.Metrics // per pass; nil records nothing
	// maxGamma is the scheduler's cap on a request's γ (verifier.Scheduler.MaxGamma);
	// fixed at start, read by request goroutines.
	maxGamma int
	// textPerToken is the most bytes of text one token of the model's vocabulary
	// stands for (textPerToken); fixed at start.
	textPerToken int

	submits chan submit
	events  chan event
	stop    context.CancelFunc
	done    chan struct{}
	nextID  atomic.Uint64

	running, queued atomic.Int32
	speculating     atomic.Bool  // the scheduler's switch (verifier.Scheduler.DraftsOn)
	passTime        atomic.Int64 // nanoseconds of the last pass, for retry hints
	sinks           map[verifier.ID]*sink
}

type submit struct {
	id    verifier.ID
	job   verifier.Job
	sink  *sink
	reply chan error
}

type event struct {
	id        verifier.ID
	proposal  *arrival // nil: cancel, unless dropDraft or withdraw
	dropDraft bool     // the request lost its draft (verifier.Scheduler.DropDraft)
	// withdraw: the request's wait for admission ran out; unless it has been admitted,
	// it ends with errNotAdmitted (verifier.Scheduler.Withdraw).
	withdraw bool
}

// sink queues one request's updates from the engine goroutine to the request's own.
type sink struct {
	mu     sync.Mutex
	ups    []verifier.Update
	notify chan struct{}
}

func newSink() *sink { return &sink{notify: make(chan struct{}, 1)} }

func (s *sink) push(u verifier.Update) {
	s.mu.Lock()
	s.ups = append(s.ups, u)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *sink) take() []verifier.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.ups
	s.ups = nil
	return u
}

// A request held for its draft (verifier.Scheduler.Held) waits at most catchUpPasses
// passes' time, and at least minCatchUp, when nothing else is running.
const (
	catchUpPasses = 4
	minCatchUp    = 10 * time.Millisecond
)

// errNotAdmitted ends a request withdrawn while it waited for admission.
var errNotAdmitted = errors.New("not admitted")

// errStopped: the engine has stopped (the server is shutting down).
var errStopped = fmt.Errorf("verifier engine stopped: %w", services.ErrUnavailable)

// EngineConfig sizes the engine.
type EngineConfig struct {
	Threads     int  // kernel threads of the forward pass
	PrefixCache bool // share prompt prefixes' KV blocks between requests
	Sched       verifier.Config
}

// newEngine starts the engine for eng's model and KV pool. It times passes of each
// size the cost curve is anchored at, so that the controller starts from this
// machine's costs, and faults in the KV memory.
func newEngine(eng *services.Engine, cfg EngineConfig, log *slog.Logger, metrics *telemetry.Metrics) (*engine, error) {
	m := eng.Model
	pool := kernels.NewPool(max(cfg.Threads, 1))
	maxTokens := cfg.Sched.MaxTokens
	if maxTokens <= 0 {
		maxTokens = 128
	}
	batch := m.NewBatch(pool, maxTokens)
	e := &engine{model: m, kv: eng.KV, pool: pool, log: log, metrics: metrics,
		submits: make(chan submit, 64), events: make(chan event, 4096), done: make(chan struct{}), sinks: map[verifier.ID]*sink{}}
	if cfg.PrefixCache {
		p, err := eng.KV.NewPrefix(m.Name + "/" + m.Tok.Hash())
		if err != nil {
			pool.Close()
			return nil, err
		}
		e.prefix = p
	}
	st := eng.KV.Stats()
	eng.KV.Reserve(st.Total * st.BlockTokens)
	e.sched = verifier.NewScheduler(batch, m, eng.KV, e.prefix, cfg.Sched)
	e.maxGamma = e.sched.MaxGamma()
	e.textPerToken = textPerToken(m.Tok)
	e.speculating.Store(e.sched.DraftsOn())
	if err := e.warm(batch); err != nil {
		pool.Close()
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	go e.loop(ctx)
	return e, nil
}

// warm times passes of each knot's size over a throwaway sequence and feeds the cost
// curve the fastest of each.
func (e *engine) warm(b *model.Batch) error {
	knots := e.sched.Cost().Knots()
	seq := e.kv.NewSeq()
	defer seq.Release()
	toks := make([]int32, knots[len(knots)-1])
	for i := range toks {
		toks[i] = max(e.model.Tok.BOS(), 0) // id 0 where the vocabulary names no BOS (-1)
	}
	// Every size is timed warmReps times in each of two rounds, after one untimed pass,
	// and its fastest pass anchors the curve: the first passes after loading run slow
	// (the collector and the kernel still settling the fresh memory), and a knot set
	// too high stays there — with speculation then judged too dear, no pass of that
	// size comes to correct it.
	const warmReps = 3
	best := make([]time.Duration, len(knots))
	for round := range 2 {
		for i, n := range knots {
			for rep := range warmReps + 1 {
				if seq.Len()+n > e.model.Context {
					seq.Truncate(0)
				}
				t := time.Now()
				if _, err := b.Forward([]model.Segment{{Seq: seq, Tokens: toks[:n], Logits: n}}); err != nil {
					if errors.Is(err, kvcache.ErrExhausted) {
						return nil // a budget too small for the warm-up still serves
					}
					return err
				}
				if d := time.Since(t); (round > 0 || rep > 0) && (best[i] == 0 || d < best[i]) {
					best[i] = d
				}
				seq.Truncate(0)
			}
		}
	}
	for i, n := range knots {
		e.sched.ObservePass(n, best[i])
	}
	return nil
}

// close stops the engine goroutine; requests still running fail with errStopped.
func (e *engine) close() {
	e.stop()
	<-e.done
	e.pool.Close()
}

// load reports requests running and waiting.
func (e *engine) load() (running, queued int) { return int(e.running.Load()), int(e.queued.Load()) }

func (e *engine) loop(ctx context.Context) {
	defer close(e.done)
	defer func() {
		for id, s := range e.sinks {
			s.push(verifier.Update{ID: id, Done: true, Err: errStopped})
		}
	}()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	// When the wait for held requests' drafts ends: set when the engine first idles
	// with requests held, cleared by a pass. Events while it waits (proposals, stale
	// ones answered at once among them) do not restart it.
	var holdEnd time.Time
	last := time.Now()
	var st passStats
	for {
		if !e.sched.HasWork() {
			// Requests held for their drafts wait a few passes' time for a proposal.
			var timeout <-chan time.Time
			held := e.sched.Held()
			if held {
				if holdEnd.IsZero() {
					holdEnd = time.Now().Add(max(catchUpPasses*time.Duration(e.passTime.Load()), minCatchUp))
				}
				hold.Reset(time.Until(holdEnd))
				timeout = hold.C
			}
			select {
			case s := <-e.submits:
				e.submit(s)
			case ev := <-e.events:
				e.event(ev)
			case <-timeout:
				e.sched.Timer()
				holdEnd = time.Time{}
			case <-ctx.Done():
				return
			}
			hold.Stop()
			if !held {
				// An idle wait is no step's time; a wait for held requests' drafts
				// is speculation's, and the draft switch must see it.
				last = time.Now()
			}
		}
		for drained := false; !drained; {
			select {
			case s := <-e.submits:
				e.submit(s)
			case ev := <-e.events:
				e.event(ev)
			case <-ctx.Done():
				return
			default:
				drained = true
			}
		}
		if !e.sched.HasWork() {
			e.publishLoad()
			continue
		}
		// Requests learn of their admission before the pass: each connects its draft
		// then, and the draft prefills while the verifier does.
		for _, u := range e.sched.Admit() {
			e.deliver(u)
		}
		t := time.Now()
		r, err := e.sched.Step()
		now := time.Now()
		if r.Tokens > 0 {
			holdEnd = time.Time{}
			d := now.Sub(t)
			e.sched.ObservePass(r.Tokens, d)
			e.passTime.Store(int64(d))
			e.metrics.RecordPass(ctx, e.model.Name, r.Tokens, d)
		}
		e.sched.ObserveStep(now.Sub(last))
		last = now
		st.add(r, e.sched, now, e.log)
		if err != nil && e.log != nil {
			e.log.Error("verifier pass failed", "err", err, "segments", r.Segments, "tokens", r.Tokens)
		}
		for _, u := range r.Updates {
			e.deliver(u)
		}
		e.publishLoad()
	}
}

// deliver hands u to its request's sink, and forgets the sink when u ends the request.
func (e *engine) deliver(u verifier.Update) {
	s, ok := e.sinks[u.ID]
	if !ok {
		return
	}
	s.push(u)
	if u.Done {
		delete(e.sinks, u.ID)
	}
}

// publishLoad makes the scheduler's load readable from other goroutines.
func (e *engine) publishLoad() {
	e.speculating.Store(e.sched.DraftsOn())
	running, queued := e.sched.Load()
	e.running.Store(int32(running))
	e.queued.Store(int32(queued))
}

func (e *engine) submit(s submit) {
	err := e.sched.Submit(s.id, s.job)
	if err == nil {
		e.sinks[s.id] = s.sink
		e.publishLoad()
	}
	s.reply <- err
}

func (e *engine) event(ev event) {
	if ev.dropDraft {
		e.sched.DropDraft(ev.id)
		return
	}
	if ev.withdraw {
		if s, ok := e.sinks[ev.id]; ok && e.sched.Withdraw(ev.id) {
			s.push(verifier.Update{ID: ev.id, Done: true, Err: errNotAdmitted})
			delete(e.sinks, ev.id)
		}
		return
	}
	if ev.proposal == nil {
		e.sched.Cancel(ev.id)
		delete(e.sinks, ev.id)
		return
	}
	e.sched.Propose(ev.id, ev.proposal.p)
}

// Submit hands a request to the engine and returns its id and sink, or the reason it
// was refused (verifier.ErrQueueFull, a budget too small, ctx's error).
func (e *engine) Submit(ctx context.Context, job verifier.Job) (verifier.ID, *sink, error) {
	id := verifier.ID(e.nextID.Add(1))
	s := submit{id: id, job: job, sink: newSink(), reply: make(chan error, 1)}
	select {
	case e.submits <- s:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case <-e.done:
		return 0, nil, errStopped
	}
	select {
	case err := <-s.reply:
		return id, s.sink, err
	case <-e.done:
		return 0, nil, errStopped
	}
}

// send delivers an event, waiting for room (the channel is drained between passes).
func (e *engine) send(ctx context.Context, ev event) error {
	select {
	case e.events <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return errStopped
	}
}

// cancel ends request id in the engine, even after ctx has ended.
func (e *engine) cancel(id verifier.ID) {
	select {
	case e.events <- event{id: id}:
	case <-e.done:
	}
}

// retryAfter is a hint for a refused client: about the time for the requests ahead of
// it to make room, as passes of the current length.
func (e *engine) retryAfter() time.Duration {
	pass := time.Duration(e.passTime.Load())
	running, queued := e.load()
	return min(max(pass*time.Duration(64+queued*64/max(running, 1)), 100*time.Millisecond), 30*time.Second)
}

// passStats sums the engine's passes for a debug log line once a second: what the
// scheduler's batches hold and how often drafts are checked.
type passStats struct {
	since                      time.Time
	passes, tokens, spec, done int
	draftsOn                   int
}

func (p *passStats) add(r verifier.Ready, s *verifier.Scheduler, now time.Time, log *slog.Logger) {
	draftsOn := s.DraftsOn()
	if p.since.IsZero() {
		p.since = now
	}
	p.passes++
	p.tokens += r.Tokens
	p.spec += r.Speculative
	for _, u := range r.Updates {
		for _, t := range u.Tokens {
			if t.ID >= 0 {
				p.done++
			}
		}
	}
	if draftsOn {
		p.draftsOn++
	}
	if now.Sub(p.since) < time.Second {
		return
	}
	if log != nil {
		sec := now.Sub(p.since).Seconds()
		log.Debug("verifier passes", "passes_per_second", float64(p.passes)/sec, "tokens_per_pass", float64(p.tokens)/float64(p.passes),
			"speculative_per_pass", float64(p.spec)/float64(p.passes), "committed_per_second", float64(p.done)/sec,
			"drafts_on", float64(p.draftsOn)/float64(p.passes), "cost_ms", s.Cost().String())
	}
	*p = passStats{since: now}
}

// textPerToken is the most bytes of text one token of tok stands for: its longest
// piece, or one character for an unknown one. A piece spells at least the bytes it
// stands for (a space is "▁", three bytes, in a SentencePiece piece; a byte one or two
// in a byte-level BPE piece; a byte fallback token "<0x41>"), so a text of more than n
// times this many bytes has more than n tokens.
func textPerToken(tok *tokenizer.Tokenizer) int {
	most := utf8.UTFMax
	for id := range tok.VocabSize() {
		most = max(most, len(tok.Piece(int32(id))))
	}
	return most
}
