// Package verifiersvc serves the verifier model over gRPC: the VerifierService that the
// router calls for each generation. Per request it opens a Speculate stream to the
// assigned draft, verifies the draft's proposals, streams committed tokens back, and
// decodes plainly whenever no draft is reachable or none is asked for.
package verifiersvc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/specd-dev/specd/generate"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/telemetry"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Config tunes the verifier service.
type Config struct {
	Mode        spec.Mode     // default verification mode for sampled requests
	MaxGamma    int           // cap on adaptive γ
	ProposalTop int           // rejection mode: draft probabilities sent per token
	DraftWait   time.Duration // longest wait for a proposal before decoding a token plainly; 0 never waits
	// Lookup is the most tokens an own step guesses by prompt lookup (verifier.Session.Own)
	// in a request that speculates; 0 guesses none.
	Lookup  int
	Address string             // this verifier's address, reported in stats
	Metrics *telemetry.Metrics // round-trip histogram; nil records nothing
}

// Server implements speculationv1.VerifierServiceServer.
type Server struct {
	speculationv1.UnimplementedVerifierServiceServer
	ready atomic.Pointer[services.Engines] // nil until the model is loaded
	cfg   Config
	log   *slog.Logger

	conns *services.Conns // to drafts

	mu          sync.Mutex
	draftModels map[string]string // draft address → its model name, for spans and metrics
}

var _ speculationv1.VerifierServiceServer = (*Server)(nil)

// New returns a verifier server; it answers UNAVAILABLE until SetEngines. dial are the
// options of its connections to drafts (telemetry).
func New(cfg Config, log *slog.Logger, dial ...grpc.DialOption) *Server {
	if cfg.Mode == 0 {
		cfg.Mode = spec.Coupled
	}
	if cfg.MaxGamma <= 0 {
		cfg.MaxGamma = 8
	}
	if cfg.ProposalTop <= 0 {
		cfg.ProposalTop = 64
	}
	return &Server{cfg: cfg, log: log, conns: services.NewConns(dial...), draftModels: map[string]string{}}
}

// SetEngines makes the server serve with eng (its model is loaded).
func (s *Server) SetEngines(eng *services.Engines) { s.ready.Store(eng) }

func (s *Server) engines() (*services.Engines, error) {
	if e := s.ready.Load(); e != nil {
		return e, nil
	}
	return nil, services.ErrNotReady
}

// Close closes the client connections.
func (s *Server) Close() { s.conns.Close() }

// Info describes the verifier model and its capacity.
func (s *Server) Info(ctx context.Context, _ *speculationv1.InfoRequest) (*speculationv1.InfoResponse, error) {
	eng, err := s.engines()
	if err != nil {
		return nil, services.Status(err)
	}
	return services.Info(eng, "verifier"), nil
}

// Tokenize encodes text with the verifier's tokenizer.
func (s *Server) Tokenize(ctx context.Context, r *specdv1.TokenizeRequest) (*specdv1.TokenizeResponse, error) {
	eng, err := s.engines()
	if err != nil {
		return nil, services.Status(err)
	}
	if r.GetModel() != "" && r.GetModel() != eng.Model.Name {
		return nil, services.Status(services.BadField("model", "unknown model %q (this verifier serves %q)", r.GetModel(), eng.Model.Name))
	}
	tok := eng.Model.Tok
	ids := tok.Encode(r.GetText(), r.GetAddBos())
	resp := &specdv1.TokenizeResponse{TokenIds: ids}
	for _, id := range ids {
		resp.Pieces = append(resp.Pieces, tok.Piece(id))
	}
	return resp, nil
}

// Generate runs one generation and streams its tokens, then a final message.
func (s *Server) Generate(req *speculationv1.GenerateRequest, stream speculationv1.VerifierService_GenerateServer) error {
	return services.Status(s.generate(stream.Context(), req, stream))
}

func (s *Server) generate(ctx context.Context, req *speculationv1.GenerateRequest, stream speculationv1.VerifierService_GenerateServer) error {
	t0 := time.Now()
	eng, err := s.engines()
	if err != nil {
		return err
	}
	q, err := services.ParseRequest(req.GetRequest())
	if err != nil {
		return err
	}
	m := eng.Model
	if name := req.GetRequest().GetModel(); name != "" && name != m.Name {
		return services.BadField("model", "unknown model %q (this verifier serves %q)", name, m.Name)
	}
	prompt := req.GetPromptIds()
	if len(prompt) == 0 {
		prompt = q.PromptIDs
	}
	if len(prompt) == 0 {
		prompt = m.Tok.Encode(q.Prompt, true)
	}
	for i, id := range append(prompt, req.GetResumeIds()...) {
		if id < 0 || int(id) >= m.Vocab {
			return services.BadField("prompt_ids", "token %d at index %d is outside the vocabulary of %d", id, i, m.Vocab)
		}
	}
	if len(prompt)+q.MaxTokens > m.Context {
		return services.BadField("max_tokens", "%d new tokens after a prompt of %d exceed the context of %d", q.MaxTokens, len(prompt), m.Context)
	}
	resumed := len(req.GetResumeIds())
	if resumed >= q.MaxTokens {
		return services.BadField("resume_ids", "%d tokens already streamed of max_tokens %d", resumed, q.MaxTokens)
	}
	committed := append(append([]int32(nil), prompt...), req.GetResumeIds()...)
	mode := q.Mode
	if mode == 0 {
		mode = s.cfg.Mode
	}
	st, release, err := eng.Acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	gamma := verifier.NewGamma(s.cfg.MaxGamma, q.Gamma)
	gamma.Waits = s.cfg.DraftWait > 0
	gamma.Seed(eng.Timing.Step, eng.Timing.Block5)
	if q.MaxGamma > 0 {
		gamma.Max = q.MaxGamma
	}
	// Open the draft's stream before prefilling, so that the draft prefills the same
	// context at the same time and its first proposal is ready sooner.
	var link *draftLink
	var linkErr error
	addr := req.GetDraftAddress()
	if addr != "" && q.Spec {
		link, linkErr = s.openDraft(ctx, addr, committed, m.Tok.Hash(), q, mode, gamma.Next())
		if linkErr == nil {
			defer link.close()
		}
	}
	sess, err := verifier.NewSession(st, verifier.Request{
		Prompt: prompt, Resume: req.GetResumeIds(), ResumeText: int(req.GetResumeTextBytes()),
		Sampling: q.Sampling, Mode: mode,
		Limits: generate.Limits{MaxTokens: q.MaxTokens, Context: m.Context, Stop: q.Stop,
			EOS: m.Tok.EOS(), BOS: m.Tok.BOS(), StopAtBOS: m.StopAtBOS},
	})
	if err != nil {
		return err
	}
	r := &run{s: s, ctx: ctx, lookup: s.cfg.Lookup, model: m.Name, tracer: trace.SpanFromContext(ctx).TracerProvider().Tracer(telemetry.ScopeName), sess: sess, stream: stream, t0: t0, gamma: gamma}
	if !q.Spec {
		r.lookup = 0
	}
	r.stats.PromptTokens = uint32(len(prompt))
	r.stats.Verifier = &specdv1.Endpoint{Address: s.cfg.Address, Model: m.Name}
	r.stats.Mode = services.ModeToProto(mode)
	if q.Sampling.Greedy() {
		r.stats.Mode = specdv1.VerificationMode_VERIFICATION_MODE_GREEDY
	}
	switch {
	case linkErr != nil:
		r.fallback(linkErr)
	case link != nil:
		r.link = link
		r.draftModel = s.draftModel(ctx, addr)
		r.stats.Draft = &specdv1.Endpoint{Address: addr, Model: r.draftModel}
	}
	return r.loop()
}

// run is the state of one Generate call.
type run struct {
	s           *Server
	ctx         context.Context
	sess        *verifier.Session
	stream      speculationv1.VerifierService_GenerateServer
	link        *draftLink
	gamma       *verifier.Gamma
	tracer      trace.Tracer
	model       string // the verifier's model
	draftModel  string
	t0          time.Time
	first       time.Time
	waited      time.Duration
	lookup      int           // most tokens an own step guesses (Config.Lookup; 0 without speculation)
	plainRun    int           // plain steps to take before verifying again
	pauseLen    int           // length of the next pause (0: plainPause)
	unpriced    time.Duration // waited since the last verified round, for Gamma.ObserveRate
	behind      int           // tokens decoded without waiting since a proposal was last used
	roundTrips  time.Duration // summed draft round trips of fresh rounds
	freshRounds int
	stats       specdv1.Stats
}

func (r *run) loop() error {
	for !r.sess.Done() {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		step, err := r.next()
		if err != nil {
			return err
		}
		if err := r.emit(step.Tokens); err != nil {
			return err
		}
	}
	return r.finish()
}

// A verifier that does not wait for proposals (Config.DraftWait 0) still waits, up to
// catchUpSteps of its steps and at least minCatchUp, once per maxBehind tokens it
// decodes on its own without using a proposal.
const (
	maxBehind    = 16
	catchUpSteps = 4
	minCatchUp   = 2 * time.Millisecond
)

// plainPause is how many tokens the verifier first decodes plainly when speculation
// does not pay, before it verifies proposals again to see whether the draft has caught
// on; each pause that follows the shortest measurement doubles it, up to maxPause.
const (
	plainPause = 16
	maxPause   = 128
)

// next takes one step: it verifies a proposal when the draft has one ready (or within
// the wait budget), else decodes a token plainly. A stale proposal commits nothing.
func (r *run) next() (verifier.Step, error) {
	if r.link == nil {
		return r.own()
	}
	if r.plainRun > 0 {
		// Speculation does not pay at the moment (see verifier.Gamma.PlainPays): decode
		// plainly for a while, then verify the draft's next proposal to measure again.
		r.plainRun--
		return r.own()
	}
	var a arrival
	var ok bool
	var wait time.Duration
	roundStart := time.Now()
	select {
	case a, ok = <-r.link.proposals:
	default:
		// No proposal at hand. By default the verifier does not wait: it decodes its
		// own next token, which the proposal on its way must then start with (see
		// DraftWait).
		budget := r.s.cfg.DraftWait
		if budget == 0 {
			if r.behind < maxBehind {
				r.behind++
				return r.own()
			}
			// No proposal has been used for maxBehind tokens: each one arrives after
			// the verifier has moved past its first tokens (a slow or distant draft).
			// Wait for the next one, once per maxBehind tokens, so that speculation
			// catches up without a dead-slow draft costing a wait every token.
			r.behind = 0
			budget = max(catchUpSteps*r.gamma.StepTime(), minCatchUp)
		}
		t := time.NewTimer(budget)
		w0 := time.Now()
		select {
		case a, ok = <-r.link.proposals:
			t.Stop()
			wait = time.Since(w0)
			r.waited += wait
			r.unpriced += wait
			r.gamma.ObserveWait(wait)
		case <-t.C:
			r.waited += budget
			r.unpriced += budget
			return r.own()
		case <-r.ctx.Done():
			t.Stop()
			return verifier.Step{}, r.ctx.Err()
		}
	}
	if !ok {
		r.fallback(r.link.err())
		return r.own()
	}
	p := a.p
	before, committed := r.sess.Stats, r.sess.Len()
	t := time.Now()
	step, err := r.sess.Verify(p)
	if err != nil {
		return step, err
	}
	var rtt time.Duration
	if step.Used {
		drafted := r.sess.Stats.Drafted - before.Drafted
		pass := time.Since(t)
		r.gamma.ObservePass(step.Pass, pass)
		r.gamma.ObserveRound(drafted, r.sess.Stats.Accepted-before.Accepted)
		r.gamma.ObserveRate(r.sess.Len()-committed, r.unpriced+pass)
		r.unpriced, r.behind = 0, 0
		rtt = r.link.roundTrip(a)
		r.gamma.ObserveDraft(p.Drafting, len(p.Tokens), rtt)
		r.pause()
	}
	if v := step.Verdict; v != nil && !r.sess.Done() {
		v.NextGamma, v.FirstGamma = r.gamma.Next(), r.gamma.First()
		if err := r.link.send(*v); err != nil {
			r.fallback(err)
		}
	}
	if step.Used {
		r.roundSpan(p, roundStart, wait, rtt, r.sess.Stats.Drafted-before.Drafted, r.sess.Stats.Accepted-before.Accepted)
	}
	return step, nil // a stale proposal commits nothing; the loop takes the next one
}

// pause starts a plain run when speculation has not paid (verifier.Gamma.PlainPays).
// A pause right after the shortest measurement doubles the next one; a measurement
// that finds speculation paying resets it.
func (r *run) pause() {
	if !r.gamma.PlainPays() {
		if r.gamma.Measured() {
			r.pauseLen = plainPause
		}
		return
	}
	if r.pauseLen == 0 {
		r.pauseLen = plainPause
	}
	r.plainRun = r.pauseLen
	r.pauseLen = min(2*r.pauseLen, maxPause)
	r.gamma.Paused()
	trace.SpanFromContext(r.ctx).AddEvent("specd.speculation_paused", trace.WithAttributes(
		attribute.Int("specd.plain_tokens", r.plainRun),
		attribute.Float64("specd.acceptance_estimate", r.gamma.Alpha())))
}

// roundSpan records one verified round as a span under the request's span, and the
// draft's round trip, when the proposal was a fresh round, in the round-trip histogram.
func (r *run) roundSpan(p spec.Proposal, start time.Time, wait, rtt time.Duration, drafted, accepted int) {
	_, span := r.tracer.Start(r.ctx, "speculation.round", trace.WithTimestamp(start), trace.WithAttributes(
		attribute.Int64("specd.round", int64(p.Round)),
		attribute.Int("specd.gamma", len(p.Tokens)),
		attribute.Int("specd.drafted", drafted),
		attribute.Int("specd.accepted", accepted),
		attribute.Float64("specd.round_trip_seconds", rtt.Seconds()),
		attribute.Float64("specd.wait_seconds", wait.Seconds()),
		attribute.Float64("specd.drafting_seconds", p.Drafting.Seconds()),
		attribute.Int("specd.start_position", p.Start),
		attribute.String("specd.verifier.model", r.model),
		attribute.String("specd.draft.model", r.draftModel),
	))
	span.End()
	if rtt > 0 {
		r.roundTrips += rtt
		r.freshRounds++
		r.s.cfg.Metrics.RecordRoundTrip(r.ctx, r.model, r.draftModel, rtt)
	}
}

// own decodes the verifier's own next token, checking a prompt-lookup guess with it.
func (r *run) own() (verifier.Step, error) {
	t := time.Now()
	before := r.sess.Stats
	step, err := r.sess.Own(r.gamma.Lookup(r.lookup))
	if err == nil {
		r.gamma.ObservePass(step.Pass, time.Since(t))
		r.gamma.ObserveGuess(r.sess.Stats.Guessed-before.Guessed, r.sess.Stats.GuessAccepted-before.GuessAccepted)
	}
	return step, err
}

// fallback drops the draft after a failure; the request continues plainly.
func (r *run) fallback(err error) {
	if r.link != nil {
		r.link.close()
		r.link = nil
	}
	r.stats.Fallbacks++
	reason := "draft unavailable"
	if err != nil {
		reason = err.Error()
	}
	trace.SpanFromContext(r.ctx).AddEvent("specd.fallback", trace.WithAttributes(attribute.String("specd.reason", reason)))
	if r.s.log != nil && err != nil && !errors.Is(err, context.Canceled) {
		r.s.log.WarnContext(r.ctx, "draft unavailable, decoding plainly", "err", err)
	}
}

// emit streams committed tokens as one chunk.
func (r *run) emit(toks []generate.Token) error {
	if len(toks) == 0 {
		return nil
	}
	c := &specdv1.TokenChunk{}
	for _, t := range toks {
		if t.ID >= 0 {
			c.TokenIds = append(c.TokenIds, t.ID)
			c.Positions = append(c.Positions, uint32(t.Pos))
		}
		c.Text += t.Text
	}
	if len(c.TokenIds) > 0 && r.first.IsZero() {
		r.first = time.Now()
	}
	return r.stream.Send(&speculationv1.GenerateResponse{Event: &speculationv1.GenerateResponse_Chunk{Chunk: c}})
}

func (r *run) finish() error {
	st := &r.stats
	out := r.sess.Output()
	ss := r.sess.Stats
	st.CompletionTokens = uint32(len(out.IDs))
	st.Rounds, st.DraftedTokens, st.AcceptedTokens = uint32(ss.Rounds), uint32(ss.Drafted), uint32(ss.Accepted)
	st.LookupTokens, st.LookupAcceptedTokens = uint32(ss.Guessed), uint32(ss.GuessAccepted)
	if ss.Drafted > 0 {
		st.AcceptanceRate = float32(ss.Accepted) / float32(ss.Drafted)
	}
	if ss.Rounds > 0 {
		st.MeanAcceptedPerRound = float32(ss.Accepted) / float32(ss.Rounds)
	}
	if r.freshRounds > 0 {
		st.MeanRoundTrip = services.Duration(r.roundTrips / time.Duration(r.freshRounds))
	}
	end := time.Now()
	if !r.first.IsZero() {
		st.TimeToFirstToken = services.Duration(r.first.Sub(r.t0))
		if n := len(out.IDs); n > 1 {
			st.DecodeTokensPerSecond = float64(n-1) / end.Sub(r.first).Seconds()
		}
	}
	st.TotalDuration = services.Duration(end.Sub(r.t0))
	if r.s.log != nil {
		r.s.log.DebugContext(r.ctx, "generation done", "rounds", ss.Rounds, "drafted", ss.Drafted, "accepted", ss.Accepted,
			"plain", ss.Plain, "lookup", ss.Guessed, "lookup_accepted", ss.GuessAccepted, "stale", ss.Stale, "branches", ss.Branches, "waited", r.waited, "fallbacks", st.Fallbacks)
	}
	return r.stream.Send(&speculationv1.GenerateResponse{Event: &speculationv1.GenerateResponse_Final{Final: &specdv1.Final{
		FinishReason: services.FinishToProto(out.Reason), Stats: st,
	}}})
}

// draftLink is one Speculate stream to a draft: this goroutine sends, one goroutine
// receives proposals into a buffered channel.
type draftLink struct {
	stream    speculationv1.DraftService_SpeculateClient
	proposals chan arrival
	// sent holds when each verdict (by Seq; 0 for the start) still unanswered by a fresh
	// round was sent. Only the sending goroutine touches it.
	sent   map[uint64]time.Time
	errc   chan error
	cancel context.CancelFunc
	once   sync.Once
}

// draftModel returns the model name of the draft at addr (asked once, then cached).
func (s *Server) draftModel(ctx context.Context, addr string) string {
	s.mu.Lock()
	name, ok := s.draftModels[addr]
	s.mu.Unlock()
	if ok {
		return name
	}
	cc, err := s.conns.Get(addr)
	if err != nil {
		return ""
	}
	ictx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := speculationv1.NewDraftServiceClient(cc).Info(ictx, &speculationv1.InfoRequest{})
	if err != nil {
		return ""
	}
	name = info.GetModel().GetName()
	s.mu.Lock()
	s.draftModels[addr] = name
	s.mu.Unlock()
	return name
}

func (s *Server) openDraft(ctx context.Context, addr string, committed []int32, tokHash string, q services.Request, mode spec.Mode, gamma int) (*draftLink, error) {
	cc, err := s.conns.Get(addr)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithCancel(ctx)
	stream, err := speculationv1.NewDraftServiceClient(cc).Speculate(dctx)
	if err != nil {
		cancel()
		return nil, err
	}
	topK := 0
	if mode == spec.Rejection && !q.Sampling.Greedy() {
		topK = s.cfg.ProposalTop
	}
	start := &speculationv1.Start{
		ContextIds: committed, Sampling: services.SamplingToProto(q.Sampling), Mode: services.ModeToProto(mode),
		Gamma: uint32(gamma), MaxPosition: uint32(len(committed) - 1 + (q.MaxTokens)), TokenizerHash: tokHash,
		ProposalTopK: uint32(topK),
	}
	if err := stream.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Start{Start: start}}); err != nil {
		cancel()
		return nil, err
	}
	l := &draftLink{stream: stream, proposals: make(chan arrival, 16), errc: make(chan error, 1), cancel: cancel,
		sent: map[uint64]time.Time{0: time.Now()}}
	go func() {
		defer close(l.proposals)
		for {
			msg, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("draft closed the stream")
				}
				l.errc <- err
				return
			}
			p := msg.GetProposal()
			if p == nil {
				continue
			}
			select {
			case l.proposals <- arrival{services.ProposalFromProto(p), time.Now()}:
			case <-dctx.Done():
				l.errc <- dctx.Err()
				return
			}
		}
	}()
	return l, nil
}

// arrival is a proposal and when it was received.
type arrival struct {
	p  spec.Proposal
	at time.Time
}

// roundTrip returns the draft's round trip for a verified proposal: from sending the
// verdict it was drafted after (its Base) to receiving it. Only a fresh round, the first
// proposal after that verdict, has one; proposals drafted ahead return 0.
func (l *draftLink) roundTrip(a arrival) time.Duration {
	t, ok := l.sent[a.p.Base]
	for seq := range l.sent {
		if seq <= a.p.Base {
			delete(l.sent, seq)
		}
	}
	if !ok {
		return 0
	}
	return a.at.Sub(t)
}

func (l *draftLink) send(v spec.Verdict) error {
	l.sent[v.Seq] = time.Now()
	return l.stream.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Verdict{Verdict: services.VerdictToProto(v)}})
}

func (l *draftLink) err() error {
	select {
	case err := <-l.errc:
		return err
	default:
		return nil
	}
}

// close ends the stream: the draft sees the end of verdicts; the receiver stops.
func (l *draftLink) close() {
	l.once.Do(func() {
		l.stream.CloseSend()
		l.cancel()
		for range l.proposals {
		}
	})
}
