// Package draftsvc serves the draft model over gRPC: the DraftService's bidirectional
// Speculate stream, on which a verifier starts a session and the draft streams
// proposals while applying verdicts.
//
// It is plumbing around a draft.Scheduler: one goroutine owns the scheduler, its
// model.Batch and kernels.Pool, and runs a batched pass while any session has work;
// per stream one goroutine receives verdicts and one sends proposals. They meet only
// through bounded channels.
package draftsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/specd-dev/specd/draft"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/spec"
)

// Server implements speculationv1.DraftServiceServer.
type Server struct {
	speculationv1.UnimplementedDraftServiceServer
	ready atomic.Pointer[loop] // nil until SetEngine
	cfg   Config
	log   *slog.Logger
	ids   atomic.Uint64
}

// Config tunes the draft service.
type Config struct {
	Depth int // proposals in flight per session (pipelining depth); at least 1
	// Branches is how many alternative continuations a session drafts, from its guesses
	// of the correction, while a round is being verified; 0 drafts none. On two shared
	// vCPUs they cost more than they save: the draft stays busy and answers verdicts
	// later (docs/benchmarks.md).
	Branches int
	Threads  int // kernel threads of the one pool every pass runs on; 0 means 1
	// MaxTokens is the most tokens in one pass (0: 256): sessions beyond it draft in
	// the next pass, in turn.
	MaxTokens int
	// Prefill is the most context tokens fed per pass over all sessions (0: 64), so a
	// long context does not stall the others' drafting.
	Prefill int
	// PrefixCache shares the KV blocks of contexts that sessions have in common, as
	// the verifier's prefix cache does: a session whose context an ended session
	// computed drafts from its last token instead of feeding it all again.
	PrefixCache bool
}

var _ speculationv1.DraftServiceServer = (*Server)(nil)

// errStopping ends the streams of a server that is shutting down.
var errStopping = fmt.Errorf("draft service stopping: %w", services.ErrUnavailable)

// New returns a draft server; it answers UNAVAILABLE until SetEngine.
func New(cfg Config, log *slog.Logger) *Server {
	cfg.Depth = max(cfg.Depth, 1)
	cfg.Branches = max(cfg.Branches, 0)
	cfg.Threads = max(cfg.Threads, 1)
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 256
	}
	if cfg.Prefill <= 0 {
		cfg.Prefill = 64
	}
	cfg.Prefill = min(cfg.Prefill, cfg.MaxTokens)
	return &Server{cfg: cfg, log: log}
}

// SetEngine makes the server serve with eng's model and KV pool, starting the
// scheduler goroutine (stopped by Close): every session shares its passes. It first
// gives the whole KV pool its memory (kvcache.Pool.Reserve), so that the first sessions
// do not stop on page faults. Only the first call has an effect.
func (s *Server) SetEngine(eng *services.Engine) {
	l := newLoop(eng, s.cfg)
	if !s.ready.CompareAndSwap(nil, l) {
		return
	}
	if s.cfg.PrefixCache {
		p, err := eng.KV.NewPrefix(eng.Model.Name + "/" + eng.Model.Tok.Hash())
		if err != nil && s.log != nil { // the pool has one already: drafting works without
			s.log.Warn("draft prefix cache off", "err", err)
		}
		l.prefix = p
	}
	st := eng.KV.Stats()
	eng.KV.Reserve(st.Total * st.BlockTokens)
	go l.run()
}

// Close stops the scheduler goroutine, ending every stream with UNAVAILABLE, and waits
// for it.
func (s *Server) Close() {
	if l := s.ready.Load(); l != nil {
		l.stop()
		<-l.done
	}
}

func (s *Server) loop() (*loop, error) {
	if l := s.ready.Load(); l != nil {
		return l, nil
	}
	return nil, services.ErrNotReady
}

// Info describes the draft model and its capacity; QueueDepth is the number of
// sessions drafting.
func (s *Server) Info(ctx context.Context, _ *speculationv1.InfoRequest) (*speculationv1.InfoResponse, error) {
	l, err := s.loop()
	if err != nil {
		return nil, services.Status(err)
	}
	info := services.Info(l.eng, "draft")
	info.QueueDepth = uint32(l.sessions.Load())
	return info, nil
}

// Speculate runs one draft session: the first message must be Start; proposals flow
// back while verdicts arrive. The stream ends when the verifier closes its side.
func (s *Server) Speculate(stream speculationv1.DraftService_SpeculateServer) error {
	return services.Status(s.speculate(stream))
}

func (s *Server) speculate(stream speculationv1.DraftService_SpeculateServer) error {
	ctx := stream.Context()
	l, err := s.loop()
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	ctxIDs, opt, err := s.parseStart(first.GetStart(), l)
	if err != nil {
		return err
	}
	st := &session{id: s.ids.Add(1), admit: make(chan error, 1), out: make(chan spec.Proposal, 4*(s.cfg.Depth+s.cfg.Branches)+8), end: make(chan error, 1)}
	if err := l.send(ctx, event{id: st.id, start: &start{s: st, context: ctxIDs, opt: opt}}); err != nil {
		return err
	}
	// This goroutine sends proposals; once the session is admitted, one other receives
	// verdicts.
	var recvErr chan error // nil until admitted
	for {
		select {
		case err := <-st.admit:
			if err != nil {
				return err
			}
			errc := make(chan error, 1)
			go func() { errc <- receive(ctx, stream, l, st.id) }()
			recvErr = errc
		case p := <-st.out:
			if err := stream.Send(&speculationv1.SpeculateResponse{Kind: &speculationv1.SpeculateResponse_Proposal{Proposal: services.ProposalToProto(p)}}); err != nil {
				l.cancel(st)
				return err
			}
		case err := <-st.end:
			return err // the scheduler has stopped the session
		case err := <-recvErr:
			l.cancel(st) // nil: the verifier closed its side
			return err
		case <-ctx.Done():
			l.cancel(st)
			return ctx.Err()
		case <-l.done:
			return errStopping
		}
	}
}

// parseStart validates a Start message into the session's context and options.
func (s *Server) parseStart(start *speculationv1.Start, l *loop) ([]int32, spec.Options, error) {
	var opt spec.Options
	if start == nil {
		return nil, opt, services.BadField("start", "the first message of a Speculate stream must be start")
	}
	m := l.eng.Model
	if h := start.GetTokenizerHash(); h != "" && h != m.Tok.Hash() {
		return nil, opt, fmt.Errorf("%w: verifier tokenizer %.12s…, draft %s has %.12s…", services.ErrIncompatible, h, m.Name, m.Tok.Hash())
	}
	ctxIDs := start.GetContextIds()
	if len(ctxIDs) == 0 {
		return nil, opt, services.BadField("start.context_ids", "empty")
	}
	for i, id := range ctxIDs {
		if id < 0 || int(id) >= m.Vocab {
			return nil, opt, services.BadField("start.context_ids", "token %d at %d is outside the vocabulary of %d", id, i, m.Vocab)
		}
	}
	if len(ctxIDs) >= m.Context {
		return nil, opt, services.BadField("start.context_ids", "%d tokens fill the draft's context of %d", len(ctxIDs), m.Context)
	}
	if g := start.GetGamma(); int64(g) > int64(m.Context) {
		return nil, opt, services.BadField("start.gamma", "%d tokens per round: the draft's context holds %d", g, m.Context)
	}
	sp, err := services.SamplingFromProto(start.GetSampling())
	if err != nil {
		return nil, opt, err
	}
	mode := spec.Coupled
	if start.GetMode() == specdv1.VerificationMode_VERIFICATION_MODE_REJECTION {
		mode = spec.Rejection
	}
	maxPos := min(int(start.GetMaxPosition()), m.Context)
	if maxPos == 0 {
		maxPos = m.Context
	}
	if int64(start.GetPromptTokens()) > int64(len(ctxIDs)) {
		return nil, opt, services.BadField("start.prompt_tokens", "%d: more than the %d tokens of context_ids", start.GetPromptTokens(), len(ctxIDs))
	}
	format, err := services.FormatFromProto(start.GetResponseFormat())
	if err != nil {
		return nil, opt, err
	}
	if g := format.Grammar(m.Tok); g != nil {
		sp.Grammar = g
	}
	ends := start.GetEndIds()
	if len(ends) > maxEndIDs {
		return nil, opt, services.BadField("start.end_ids", "%d ids: at most %d", len(ends), maxEndIDs)
	}
	for i, id := range ends {
		if id < 0 || int(id) >= m.Vocab {
			return nil, opt, services.BadField("start.end_ids", "token %d at %d is outside the vocabulary of %d", id, i, m.Vocab)
		}
	}
	return ctxIDs, spec.Options{
		Sampling: sp, Mode: mode, Gamma: int(start.GetGamma()), MaxPosition: maxPos, ProposalTopK: int(start.GetProposalTopK()),
		Branches: s.cfg.Branches, PromptLen: int(start.GetPromptTokens()), Ends: ends,
	}, nil
}

// maxEndIDs bounds Start.end_ids: the vocabulary's end-of-generation ids and a
// request's stop_token_ids (at most services.MaxStopTokenIDs).
const maxEndIDs = 1024

// receive passes the stream's verdicts to the scheduler until the verifier closes its
// side (nil) or the stream fails.
func receive(ctx context.Context, stream speculationv1.DraftService_SpeculateServer, l *loop, id uint64) error {
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		v := msg.GetVerdict()
		if v == nil {
			return services.BadField("verdict", "expected a verdict after start")
		}
		// A round longer than the context is no request a session can honour, and
		// the scheduler reserves KV blocks for rounds of that length.
		if n, most := v.GetNextGamma(), l.eng.Model.Context; int64(n) > int64(most) {
			return services.BadField("verdict.next_gamma", "%d tokens per round: the draft's context holds %d", n, most)
		}
		// Nor can a session follow a sequence past its context: it would never draft
		// again, and would hold the KV reserve of that sequence while it lived.
		if end, most := int64(v.GetPosition())+int64(len(v.GetTokens())), l.eng.Model.Context; end > int64(most) {
			return services.BadField("verdict.tokens", "they end at position %d, past the draft's context of %d", end, most)
		}
		if err := l.send(ctx, event{id: id, verdict: services.VerdictFromProto(v)}); err != nil {
			return err
		}
	}
}

// session is a stream as the scheduler goroutine sees it.
type session struct {
	id    uint64
	admit chan error         // the answer to start (nil: admitted); capacity 1
	out   chan spec.Proposal // proposals to send; bounded: a stream that does not take them fails
	end   chan error         // why the scheduler stopped the session; capacity 1
	// cancelled is set by the stream before it asks the scheduler to stop the session,
	// so that a start the scheduler has not yet seen is not admitted.
	cancelled atomic.Bool
}

// event is a start (start set) or a verdict for session id.
type event struct {
	id      uint64
	start   *start
	verdict spec.Verdict
}

type start struct {
	s       *session
	context []int32
	opt     spec.Options
}

// loop is the scheduler goroutine and what streams use to reach it.
type loop struct {
	eng      *services.Engine
	cfg      Config
	prefix   *kvcache.Prefix // nil: no prefix cache
	events   chan event      // starts and verdicts, bounded
	sessions atomic.Int64

	mu    sync.Mutex
	stops []uint64      // sessions to stop, added without blocking
	wake  chan struct{} // capacity 1: stops were added
	quit  chan struct{} // closed by stop
	once  sync.Once
	done  chan struct{} // closed when the goroutine has ended
}

func newLoop(eng *services.Engine, cfg Config) *loop {
	return &loop{eng: eng, cfg: cfg, events: make(chan event, 1024), wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

func (l *loop) stop() { l.once.Do(func() { close(l.quit) }) }

// send hands the scheduler an event, waiting while its queue is full.
func (l *loop) send(ctx context.Context, ev event) error {
	select {
	case l.events <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.done:
		return errStopping
	}
}

// cancel asks the scheduler to stop st's session (freeing its KV blocks) without
// blocking.
func (l *loop) cancel(st *session) {
	st.cancelled.Store(true)
	l.mu.Lock()
	l.stops = append(l.stops, st.id)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run is the scheduler goroutine: it owns the kernel pool, the batch and every
// session, applies events between passes and runs passes while any session has work.
func (l *loop) run() {
	defer close(l.done)
	pool := kernels.NewPool(l.cfg.Threads)
	defer pool.Close()
	sc := draft.NewScheduler(l.eng.Model.NewBatch(pool, l.cfg.MaxTokens), l.eng.KV, draft.Config{Depth: l.cfg.Depth, Prefill: l.cfg.Prefill, Prefix: l.prefix})
	streams := map[uint64]*session{}
	defer func() {
		for id, st := range streams {
			sc.Stop(id)
			st.end <- errStopping
		}
		l.sessions.Store(0)
	}()
	handle := func(ev event) {
		if ev.start == nil {
			_ = sc.Apply(ev.id, ev.verdict) // ErrUnknownSession: the session has ended
			return
		}
		if ev.start.s.cancelled.Load() {
			return
		}
		err := sc.Start(ev.id, ev.start.context, ev.start.opt)
		if err == nil {
			streams[ev.id] = ev.start.s
		}
		ev.start.s.admit <- err
	}
	stops := func() {
		l.mu.Lock()
		ids := l.stops
		l.stops = nil
		l.mu.Unlock()
		for _, id := range ids {
			sc.Stop(id)
			delete(streams, id)
		}
	}
	for {
		if !sc.Busy() {
			select {
			case ev := <-l.events:
				handle(ev)
			case <-l.wake:
			case <-l.quit:
				return
			}
		}
		stops()
		for drained := false; !drained; {
			select {
			case ev := <-l.events:
				handle(ev)
			case <-l.quit:
				return
			default:
				drained = true
			}
		}
		t0 := time.Now()
		sc.Step()
		for _, o := range sc.Ready(time.Since(t0)) {
			st := streams[o.ID]
			if st == nil {
				continue
			}
			if o.Err != nil {
				delete(streams, o.ID)
				st.end <- o.Err
				continue
			}
			select {
			case st.out <- o.Proposal:
			default:
				sc.Stop(o.ID)
				delete(streams, o.ID)
				st.end <- fmt.Errorf("%w: the verifier does not take the draft's proposals", services.ErrBusy)
			}
		}
		l.sessions.Store(int64(sc.Len()))
	}
}
