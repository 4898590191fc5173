// Package verifiersvc serves the verifier model over gRPC: the VerifierService that the
// router calls for each generation. Per request it opens a Speculate stream to the
// assigned draft, verifies the draft's proposals, streams committed tokens back, and
// decodes plainly whenever no draft is reachable or none is asked for.
package verifiersvc

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"fmt"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/telemetry"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Config tunes the verifier service.
type Config struct {
	Mode        spec.Mode // default verification mode for sampled requests
	ProposalTop int       // rejection mode: draft probabilities sent per token
	Engine      EngineConfig
	// QueueWait is the longest a request waits for admission before it fails with
	// RESOURCE_EXHAUSTED (0: 30 s); its deadline, when sooner, ends it first.
	QueueWait time.Duration
	// StreamInterval is how long committed tokens may wait to be sent with those that
	// follow, in one message (0: one message per pass). A request's first tokens and its
	// last go at once. Alone on the verifier a pass takes under a millisecond, and a
	// message per token across two hops cost a tenth of the throughput of the cores
	// the passes share.
	StreamInterval time.Duration
	// MaxPromptTokens refuses longer prompts (INVALID_ARGUMENT naming the prompt); 0:
	// only the model's context bounds them.
	MaxPromptTokens int
	Address         string             // this verifier's address, reported in stats
	Metrics         *telemetry.Metrics // round-trip and pass histograms; nil records nothing
	// Drafts are the drafts this verifier may dial: its static list or its Consul
	// view. A request's draft_address is a preference among them, matched exactly
	// (host:port as the view spells it); an address outside the view is ignored —
	// never dialled — and the request decodes plainly, with a specd.draft_refused
	// event on its span. nil: no draft, every request decodes plainly.
	Drafts router.Discovery
	// Conns bounds the connections to drafts (zero: services.ConnLimits' defaults).
	Conns services.ConnLimits
	// ChatTemplate renders requests' messages, in place of the model's own
	// tokenizer.chat_template (llama-server's --chat-template-file); nil: the model's.
	ChatTemplate *chat.Template
	// MaxMessageBytes is the largest message the verifier sends (its
	// --max-message-bytes; 0: services.MaxMessageBytes). A prompt's log-probabilities
	// go out in chunks of at most a quarter of it, and at most MaxPromptChunkBytes.
	MaxMessageBytes int
}

// MaxPromptChunkBytes bounds the prompt log-probabilities one message carries: a
// quarter of grpc-go's default receive limit, so that a client that never raised it
// reads them too. (Those of a prompt of 45,000 tokens with top_logprobs 20 exceed 16
// MiB, the default limit of every specd service.)
const MaxPromptChunkBytes = 1 << 20

// Server implements speculationv1.VerifierServiceServer.
type Server struct {
	speculationv1.UnimplementedVerifierServiceServer
	ready atomic.Pointer[services.Engine] // nil until the model is loaded
	eng   atomic.Pointer[engine]
	chat  atomic.Pointer[chatTemplate] // set with the engine
	cfg   Config
	log   *slog.Logger

	conns *services.Conns // to drafts

	mu          sync.Mutex
	draftModels map[string]string // draft address → its model name, for spans and metrics

	refused       atomic.Int64 // requests naming a draft outside the view, since the last warning
	refusedLogged atomic.Int64 // when that warning was logged, Unix nanoseconds
}

var _ speculationv1.VerifierServiceServer = (*Server)(nil)

// New returns a verifier server; it answers UNAVAILABLE until SetEngine. dial are the
// options of its connections to drafts (telemetry).
func New(cfg Config, log *slog.Logger, dial ...grpc.DialOption) *Server {
	if cfg.Mode == 0 {
		cfg.Mode = spec.Coupled
	}
	if cfg.ProposalTop <= 0 {
		cfg.ProposalTop = 64
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = 30 * time.Second
	}
	return &Server{cfg: cfg, log: log, conns: services.NewConns(cfg.Conns, dial...), draftModels: map[string]string{}}
}

// SetEngine makes the server serve with eng's model and KV pool: it starts the
// batching engine (timing its passes first) and then answers requests.
func (s *Server) SetEngine(eng *services.Engine) error {
	e, err := newEngine(eng, s.cfg.Engine, s.log, s.cfg.Metrics)
	if err != nil {
		return err
	}
	s.chat.Store(s.chatTemplate(eng.Model))
	eng.SetLoad(e.load)
	s.eng.Store(e)
	s.ready.Store(eng)
	return nil
}

func (s *Server) engines() (*services.Engine, *engine, error) {
	if e, en := s.ready.Load(), s.eng.Load(); e != nil && en != nil {
		return e, en, nil
	}
	return nil, nil, services.ErrNotReady
}

// Stop stops the engine: requests still running fail as UNAVAILABLE. It must come
// before the model is closed. Stop is idempotent.
func (s *Server) Stop() {
	if e := s.eng.Swap(nil); e != nil {
		s.ready.Store(nil)
		e.close()
	}
}

// Close stops the engine and closes the client connections.
func (s *Server) Close() {
	s.Stop()
	s.conns.Close()
}

// Info describes the verifier model and its capacity.
func (s *Server) Info(ctx context.Context, _ *speculationv1.InfoRequest) (*speculationv1.InfoResponse, error) {
	eng, _, err := s.engines()
	if err != nil {
		return nil, services.Status(err)
	}
	return services.Info(eng, "verifier"), nil
}

// Tokenize encodes text with the verifier's tokenizer.
func (s *Server) Tokenize(ctx context.Context, r *specdv1.TokenizeRequest) (*specdv1.TokenizeResponse, error) {
	eng, e, err := s.serving(r.GetModel())
	if err != nil {
		return nil, services.Status(err)
	}
	// A text longer than any prompt this verifier takes could spell is refused by its
	// length, as a prompt is: tokenizing costs about a second of CPU and 45 MB per MB
	// of text. What it does tokenize stops when the client goes.
	limit := s.promptLimit(eng.Model)
	if n, most := len(r.GetText()), limit*e.textPerToken; n > most {
		return nil, services.Status(services.BadField("text", "%d bytes: at most %d (the %d tokens of this verifier's longest prompt, at most %d bytes each)", n, most, limit, e.textPerToken))
	}
	tok := eng.Model.Tok
	// With add_bos, the ids a text prompt gets (tok.Prompt): BOS and EOS as the
	// vocabulary asks; without, neither.
	ids, err := tok.TokenizeContext(ctx, r.GetText(), r.GetAddBos(), false)
	if err != nil {
		return nil, services.Status(err)
	}
	resp := &specdv1.TokenizeResponse{TokenIds: ids}
	for _, id := range ids {
		resp.Pieces = append(resp.Pieces, tok.Piece(id))
	}
	return resp, nil
}

// Detokenize decodes token ids with the verifier's tokenizer.
func (s *Server) Detokenize(ctx context.Context, r *specdv1.DetokenizeRequest) (*specdv1.DetokenizeResponse, error) {
	eng, _, err := s.serving(r.GetModel())
	if err != nil {
		return nil, services.Status(err)
	}
	tok := eng.Model.Tok
	ids := r.GetTokenIds()
	for i, id := range ids {
		if id < 0 || int(id) >= tok.VocabSize() {
			return nil, services.Status(services.BadField("token_ids", "id %d at index %d is outside the vocabulary of %d", id, i, tok.VocabSize()))
		}
	}
	if r.GetSkipSpecialTokens() {
		return &specdv1.DetokenizeResponse{Text: tok.Decode(ids)}, nil
	}
	return &specdv1.DetokenizeResponse{Text: tok.DecodeSpecial(ids)}, nil
}

// serving returns the verifier's engines, if model (empty: any) names its model.
func (s *Server) serving(model string) (*services.Engine, *engine, error) {
	eng, e, err := s.engines()
	if err != nil {
		return nil, nil, err
	}
	if model != "" && model != eng.Model.Name {
		return nil, nil, fmt.Errorf("%w %q (this verifier serves %q)", services.ErrUnknownModel, model, eng.Model.Name)
	}
	return eng, e, nil
}

// promptLimit is the most tokens a prompt of this verifier may have: its context less
// one, or --max-prompt-tokens when lower.
func (s *Server) promptLimit(m *model.Model) int {
	limit := m.Context - 1
	if lim := s.cfg.MaxPromptTokens; lim > 0 {
		limit = min(limit, lim)
	}
	return limit
}

// Generate runs one generation and streams its tokens, then a final message.
func (s *Server) Generate(req *speculationv1.GenerateRequest, stream speculationv1.VerifierService_GenerateServer) error {
	return services.Status(s.generate(stream.Context(), req, stream))
}

func (s *Server) generate(ctx context.Context, req *speculationv1.GenerateRequest, stream speculationv1.VerifierService_GenerateServer) error {
	t0 := time.Now()
	eng, e, err := s.engines()
	if err != nil {
		return err
	}
	q, err := services.ParseRequest(req.GetRequest())
	if err != nil {
		return err
	}
	m := eng.Model
	if name := req.GetRequest().GetModel(); name != "" && name != m.Name {
		return fmt.Errorf("%w %q (this verifier serves %q)", services.ErrUnknownModel, name, m.Name)
	}
	prompt := req.GetPromptIds()
	if len(prompt) == 0 {
		prompt = q.PromptIDs
	}
	// A rendered conversation's ids go out with the first message too, so that the
	// router resumes it elsewhere with these ids instead of rendering it again.
	// A text too long to fit whatever it tokenizes to is refused by its length:
	// tokenizing a long one takes seconds and far more memory than the text.
	limit := s.promptLimit(m)
	tooLong := func(field string, n int) error {
		if n <= limit*e.textPerToken {
			return nil
		}
		return services.BadField(field, "%d bytes of text: more than %d tokens (this verifier's limit) can spell, at most %d bytes each", n, limit, e.textPerToken)
	}
	rendered := false
	if len(prompt) == 0 && len(q.Messages) > 0 {
		if prompt, err = s.chat.Load().prompt(ctx, m.Tok, &q, tooLong); err != nil {
			return err
		}
		rendered = true
	}
	if len(prompt) == 0 {
		if err := tooLong("prompt", len(q.Prompt)); err != nil {
			return err
		}
		if prompt, err = m.Tok.TokenizeContext(ctx, q.Prompt, true, false); err != nil { // m.Tok.Prompt, stopping with ctx
			return err
		}
	}
	for i, id := range append(prompt, req.GetResumeIds()...) {
		if id < 0 || int(id) >= m.Vocab {
			return services.BadField("prompt_ids", "token %d at index %d is outside the vocabulary of %d", id, i, m.Vocab)
		}
	}
	if len(prompt) >= m.Context {
		return services.BadField("prompt", "%d tokens leave no room in the context of %d", len(prompt), m.Context)
	}
	if lim := s.cfg.MaxPromptTokens; lim > 0 && len(prompt) > lim {
		return services.BadField("prompt", "%d tokens: more than this verifier takes (--max-prompt-tokens %d)", len(prompt), lim)
	}
	if q.MaxTokens == 0 {
		q.MaxTokens = m.Context - len(prompt) // up to the context: ends with FINISH_REASON_CONTEXT
	}
	if len(prompt)+q.MaxTokens > m.Context {
		return services.BadField("max_tokens", "%d new tokens after a prompt of %d exceed the context of %d", q.MaxTokens, len(prompt), m.Context)
	}
	resumed := len(req.GetResumeIds())
	// All of them streamed: the verifier that streamed them failed before its final
	// message, and this one ends the request at once.
	if resumed > q.MaxTokens {
		return services.BadField("resume_ids", "%d tokens already streamed of max_tokens %d", resumed, q.MaxTokens)
	}
	for i, id := range q.StopTokenIDs {
		if int(id) >= m.Vocab {
			return services.BadField("stop_token_ids", "token %d at index %d is outside the vocabulary of %d", id, i, m.Vocab)
		}
	}
	for _, b := range q.Sampling.LogitBias {
		if int(b.ID) >= m.Vocab {
			return services.BadField("sampling.logit_bias", "token %d is outside the vocabulary of %d", b.ID, m.Vocab)
		}
	}
	committed := append(append([]int32(nil), prompt...), req.GetResumeIds()...)
	mode := q.Mode
	if mode == 0 {
		mode = s.cfg.Mode
	}
	job := verifier.Job{
		Request: verifier.Request{
			Prompt: prompt, Resume: req.GetResumeIds(), ResumeText: int(req.GetResumeTextBytes()),
			Sampling: q.Sampling, Mode: mode, Logprobs: q.Logprobs, TopLogprobs: q.TopLogprobs, PromptLogprobs: q.PromptLogprobs,
			Limits: generate.Limits{MaxTokens: q.MaxTokens, Context: m.Context, Stop: q.Stop, ToolCall: q.ToolCall},
		},
		Spec: q.Spec, MaxGamma: q.MaxGamma, Gamma: q.Gamma,
	}
	job.Limits.EndAt(m.Tok.EOG(), m.Tok.BOS(), m.StopAtBOS, q.StopTokenIDs, q.IgnoreEOS)
	if g := q.Format.Grammar(m.Tok); g != nil {
		job.Sampling.Grammar = g
	}
	r := &run{s: s, e: e, ctx: ctx, model: m.Name, tracer: trace.SpanFromContext(ctx).TracerProvider().Tracer(telemetry.ScopeName), stream: stream, t0: t0}
	r.vocab, r.dists = m.Vocab, mode == spec.Rejection && !q.Sampling.Greedy()
	r.stats.PromptTokens = uint32(len(prompt))
	r.prompt, r.promptFirst = prompt, rendered
	r.stats.Verifier = &specdv1.Endpoint{Address: s.cfg.Address, Model: m.Name}
	r.stats.Mode = services.ModeToProto(mode)
	if q.Sampling.Greedy() {
		r.stats.Mode = specdv1.VerificationMode_VERIFICATION_MODE_GREEDY
	}
	// The draft's stream opens when the engine admits the request, as its pass starts,
	// so that the draft prefills the same context while the verifier does; a request
	// refused, or still waiting, costs the draft nothing. It opens unless the engine
	// measures plain decoding faster at the moment (verifier.Scheduler.DraftsOn): a
	// draft that is not checked still costs a stream, a prefill and its first rounds.
	// A request that fixed γ always gets its draft. One left without its draft still
	// tells the engine's switch what plain decoding gives (Job.Draftable). One with a
	// single token left takes it from its prompt's pass, where no proposal is checked:
	// it has no use for a draft.
	addr := req.GetDraftAddress()
	if addr != "" && !s.knownDraft(addr) {
		s.refuseDraft(ctx, addr)
		addr = ""
	}
	job.Draftable = addr != "" && q.Spec && q.MaxTokens-resumed > 1
	if job.Draftable {
		r.connect = func() {
			if !e.speculating.Load() && q.Gamma == 0 {
				return
			}
			// max_tokens counts resumed tokens: the request ends at the same position.
			link, err := s.openDraft(ctx, addr, committed, len(prompt), len(prompt)-1+q.MaxTokens, m.Tok.Hash(), q, job.Limits.Ends(), mode, job.FirstGamma(e.maxGamma))
			if err != nil {
				r.fallback(err)
				return
			}
			r.link = link
			r.draftModel = s.draftModel(ctx, addr)
			r.stats.Draft = &specdv1.Endpoint{Address: addr, Model: r.draftModel}
		}
	}
	defer func() {
		if r.link != nil {
			r.link.close()
		}
	}()
	id, sk, err := e.Submit(ctx, job)
	if err != nil {
		switch {
		case errors.Is(err, verifier.ErrQueueFull):
			return &services.BusyError{Err: err, RetryAfter: e.retryAfter()}
		case errors.Is(err, verifier.ErrTooLarge):
			// No retry would serve it: the client must ask for less.
			return services.BadField("max_tokens", "%d new tokens after a prompt of %d: %v", q.MaxTokens, len(committed), err)
		}
		return err
	}
	defer e.cancel(id)
	r.id = id
	return r.loop(sk)
}

// run is the state of one Generate call on its own goroutine: it streams the engine's
// updates to the client and carries proposals and verdicts between the engine and the
// draft.
type run struct {
	s           *Server
	e           *engine
	id          verifier.ID
	ctx         context.Context
	stream      speculationv1.VerifierService_GenerateServer
	link        *draftLink
	connect     func() // opens the draft's stream on admission; nil: no draft
	tracer      trace.Tracer
	model       string  // the verifier's model
	prompt      []int32 // as taken: sent back with the final message
	promptFirst bool    // send prompt with the first message too (a rendered conversation)
	draftModel  string
	vocab       int  // the verifier's vocabulary: a proposal's tokens lie below it
	dists       bool // rejection sampling: proposals carry a distribution per token
	t0          time.Time
	admitted    time.Time
	first       time.Time
	// Proposals sent to the engine and perhaps still queued there, oldest first: the
	// engine verifies them in this order and keeps at most verifier.MaxProposals, so
	// no more are kept here.
	arrivals    []roundArrival
	roundTrips  time.Duration // summed draft round trips of fresh rounds
	freshRounds int
	stats       specdv1.Stats
	counts      verifier.Stats  // the engine's counts of the request so far
	reported    router.Progress // the progress last sent to the router
	// Committed tokens not sent yet (see Config.StreamInterval), and the timer that
	// sends them, armed when the first of them was held back.
	pending []generate.Token
	flush   *time.Timer
}

func (r *run) loop(sk *sink) error {
	wait := time.NewTimer(r.s.cfg.QueueWait)
	defer wait.Stop()
	r.flush = time.NewTimer(time.Hour)
	r.flush.Stop()
	defer r.flush.Stop()
	for {
		var props <-chan arrival
		if r.link != nil {
			props = r.link.proposals
		}
		select {
		case <-sk.notify:
			for _, u := range sk.take() {
				done, err := r.update(u, wait)
				if err != nil || done {
					return err
				}
			}
		case a, ok := <-props:
			if !ok {
				r.fallback(r.link.err())
				continue
			}
			if err := checkProposal(a.p, r.vocab, r.dists); err != nil {
				r.fallback(err)
				continue
			}
			rtt := r.link.roundTrip(a)
			if rtt > 0 {
				r.roundTrips += rtt
				r.freshRounds++
				r.s.cfg.Metrics.RecordRoundTrip(r.ctx, r.model, r.draftModel, rtt)
			}
			if len(r.arrivals) == verifier.MaxProposals {
				r.arrivals = r.arrivals[1:] // the engine drops its oldest too
			}
			r.arrivals = append(r.arrivals, roundArrival{a.p.Round, a.at, rtt})
			if err := r.e.send(r.ctx, event{id: r.id, proposal: &a}); err != nil {
				return err
			}
		case <-r.flush.C:
			if err := r.send(); err != nil {
				return err
			}
		case <-wait.C:
			// Only the engine knows whether it has admitted the request meanwhile: it
			// ends the request (errNotAdmitted) unless it has, and update says which.
			if r.admitted.IsZero() {
				if err := r.e.send(r.ctx, event{id: r.id, withdraw: true}); err != nil {
					return err
				}
			}
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
}

// roundArrival is when a proposal of a round arrived and its round trip (0: not a
// fresh round).
type roundArrival struct {
	round uint64
	at    time.Time
	rtt   time.Duration
}

// update acts on one engine update; done reports the end of the request.
func (r *run) update(u verifier.Update, wait *time.Timer) (done bool, err error) {
	if u.Admitted {
		r.admitted = time.Now()
		wait.Stop()
		r.stats.CachedPromptTokens = uint32(u.CachedPrompt)
		r.stats.QueueWait = services.Duration(r.admitted.Sub(r.t0))
		if r.connect != nil {
			r.connect()
			r.connect = nil
		}
	}
	r.counts = u.Stats
	if u.PromptLogprobs != nil {
		if err := r.sendPromptLogprobs(u.PromptLogprobs); err != nil {
			return true, err
		}
	}
	if err := r.emit(u.Tokens, u.Done); err != nil {
		return true, err
	}
	for _, rd := range u.Rounds {
		r.roundSpan(rd)
	}
	for _, v := range u.Verdicts {
		if r.link == nil {
			break
		}
		if err := r.link.send(v); err != nil {
			r.fallback(err)
		}
	}
	if !u.Done {
		return false, nil
	}
	if errors.Is(u.Err, errNotAdmitted) {
		return true, &services.BusyError{Err: fmt.Errorf("%w: not admitted within %v", services.ErrBusy, r.s.cfg.QueueWait), RetryAfter: r.e.retryAfter()}
	}
	if u.Err != nil {
		return true, u.Err
	}
	return true, r.finish(u)
}

// roundSpan records one verified round as a span under the request's span, from the
// proposal's arrival to its verdict; rtt is the draft's round trip when it was a fresh
// round (drafted after a verdict), else 0.
func (r *run) roundSpan(rd verifier.Round) {
	var a roundArrival
	// Proposals before the verified one were dropped unverified.
	if i := slices.IndexFunc(r.arrivals, func(x roundArrival) bool { return x.round == rd.Round }); i >= 0 {
		a = r.arrivals[i]
		r.arrivals = r.arrivals[i+1:]
	}
	_, span := r.tracer.Start(r.ctx, "speculation.round", trace.WithTimestamp(cmp.Or(a.at, time.Now())), trace.WithAttributes(
		attribute.Int64("specd.round", int64(rd.Round)),
		attribute.Int("specd.gamma", rd.Gamma),
		attribute.Int("specd.drafted", rd.Drafted),
		attribute.Int("specd.accepted", rd.Accepted),
		attribute.Int("specd.next_gamma", rd.Next),
		attribute.Int("specd.start_position", rd.Start),
		attribute.Float64("specd.round_trip_seconds", a.rtt.Seconds()),
		attribute.Float64("specd.drafting_seconds", rd.Drafting.Seconds()),
		attribute.String("specd.verifier.model", r.model),
		attribute.String("specd.draft.model", r.draftModel),
	))
	span.End()
}

// fallback drops the draft after a failure or its refusal of the session (a status
// that is not services.PeerDown: full, say); the request continues plainly, and the
// engine, told so, no longer holds it waiting for the draft's proposals. A failure
// counts as a fallback, a refusal as a draft refusal: the router's breaker of the
// draft counts only the former.
func (r *run) fallback(err error) {
	if r.link != nil {
		r.link.close()
		r.link = nil
	}
	r.arrivals = nil // the engine drops them too
	if r.ctx.Err() != nil {
		// The request itself is ending (its client cancelled, its deadline passed),
		// which ended the draft's stream with it: not the draft's failure or refusal,
		// and no stats will be sent.
		return
	}
	if r.id != 0 {
		// Only when the request's own context has ended does this fail; then the
		// request is ending anyway.
		_ = r.e.send(r.ctx, event{id: r.id, dropDraft: true})
	}
	refused := err != nil && !services.PeerDown(err)
	if refused {
		r.stats.DraftRefusals++
	} else {
		r.stats.Fallbacks++
	}
	reason := "draft unavailable"
	if err != nil {
		reason = err.Error()
	}
	trace.SpanFromContext(r.ctx).AddEvent("specd.fallback", trace.WithAttributes(attribute.String("specd.reason", reason), attribute.Bool("specd.refused", refused)))
	switch {
	case r.s.log == nil || err == nil || errors.Is(err, context.Canceled):
	case refused:
		r.s.log.InfoContext(r.ctx, "draft refused the session, decoding plainly", "err", err)
	default:
		r.s.log.WarnContext(r.ctx, "draft unavailable, decoding plainly", "err", err)
	}
}

// emit queues committed tokens and sends what is queued when the request ends, when
// nothing was sent yet, or when StreamInterval has passed since the oldest queued token;
// otherwise the flush timer sends them.
func (r *run) emit(toks []generate.Token, last bool) error {
	held := len(r.pending) > 0
	r.pending = append(r.pending, toks...)
	switch {
	case len(r.pending) == 0:
		return nil
	case last || r.first.IsZero() || r.s.cfg.StreamInterval <= 0:
		return r.send()
	case !held:
		r.flush.Reset(r.s.cfg.StreamInterval)
	}
	return nil
}

// send streams the queued tokens as one chunk.
func (r *run) send() error {
	toks := r.pending
	r.pending = r.pending[:0]
	r.flush.Stop()
	if len(toks) == 0 {
		return nil
	}
	c := &specdv1.TokenChunk{}
	for _, t := range toks {
		if t.ID >= 0 {
			c.TokenIds = append(c.TokenIds, t.ID)
			c.Positions = append(c.Positions, uint32(t.Pos))
			if t.Logprobs != nil {
				c.Logprobs = append(c.Logprobs, services.LogprobsToProto(t.Logprobs))
			}
		}
		c.Text += t.Text
	}
	if len(c.TokenIds) > 0 && r.first.IsZero() {
		r.first = time.Now()
	}
	return r.sendChunk(c)
}

// sendPromptLogprobs streams the prompt's log-probabilities, after what is queued
// and in as many chunks as keep each under the chunk bound (see Config.MaxMessageBytes).
func (r *run) sendPromptLogprobs(lps []*generate.Logprobs) error {
	if err := r.send(); err != nil {
		return err
	}
	for _, c := range promptChunks(lps, min(cmp.Or(r.s.cfg.MaxMessageBytes, services.MaxMessageBytes)/4, MaxPromptChunkBytes)) {
		if err := r.sendChunk(c); err != nil {
			return err
		}
	}
	return nil
}

// promptChunks cuts a prompt's log-probabilities into chunks of at most bound bytes
// each (one entry larger than that alone in its chunk).
func promptChunks(lps []*generate.Logprobs, bound int) []*specdv1.TokenChunk {
	c, size := &specdv1.TokenChunk{}, 0
	out := []*specdv1.TokenChunk{c}
	for _, lp := range lps {
		p := services.LogprobsToProto(lp)
		n := protowire.SizeTag(5) + protowire.SizeBytes(proto.Size(p)) // the entry with its field's tag and length
		if len(c.PromptLogprobs) > 0 && size+n > bound {
			c, size = &specdv1.TokenChunk{}, 0
			out = append(out, c)
		}
		c.PromptLogprobs = append(c.PromptLogprobs, p)
		size += n
	}
	return out
}

// sendChunk sends c, with the rendered prompt's ids on the first message and the
// progress when it changed.
func (r *run) sendChunk(c *specdv1.TokenChunk) error {
	msg := &speculationv1.GenerateResponse{Event: &speculationv1.GenerateResponse_Chunk{Chunk: c}}
	if r.promptFirst {
		msg.PromptIds, r.promptFirst = r.prompt, false
	}
	if p := r.progress(); p != r.reported {
		msg.Progress, r.reported = services.ProgressToProto(p), p
	}
	return r.stream.Send(msg)
}

// progress is what the attempt has done so far, for the router to carry over to the
// attempt that finishes the request should this one fail.
func (r *run) progress() router.Progress {
	c := r.counts
	return router.Progress{
		Rounds: c.Rounds, DraftedTokens: c.Drafted, AcceptedTokens: c.Accepted,
		LookupTokens: c.Guessed, LookupAcceptedTokens: c.GuessAccepted,
		Fallbacks: int(r.stats.Fallbacks), DraftRefusals: int(r.stats.DraftRefusals),
		RoundTrips: r.freshRounds, RoundTripTotal: r.roundTrips, QueueWait: r.stats.QueueWait.AsDuration(),
	}
}

func (r *run) finish(u verifier.Update) error {
	// End the draft's stream first, so that the final message is the last thing this
	// request waits for: the router reads this stream's end right after it.
	if r.link != nil {
		r.link.close()
	}
	st := &r.stats
	out := u.Output
	ss := u.Stats
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
			"plain", ss.Plain, "lookup", ss.Guessed, "lookup_accepted", ss.GuessAccepted, "stale", ss.Stale, "branches", ss.Branches,
			"cached_prompt", st.CachedPromptTokens, "fallbacks", st.Fallbacks, "draft_refusals", st.DraftRefusals)
	}
	f := &specdv1.Final{FinishReason: services.FinishToProto(out.Reason), Stats: st}
	if u.EndLogprobs != nil {
		f.EndLogprobs = services.LogprobsToProto(u.EndLogprobs)
	}
	return r.stream.Send(&speculationv1.GenerateResponse{PromptIds: r.prompt, Progress: services.ProgressToProto(r.progress()),
		Event: &speculationv1.GenerateResponse_Final{Final: f}})
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

// knownDraft reports whether addr is a draft in this verifier's view (Config.Drafts).
func (s *Server) knownDraft(addr string) bool {
	if s.cfg.Drafts == nil {
		return false
	}
	for _, e := range s.cfg.Drafts.Endpoints(router.Draft) {
		if e.Address == addr {
			return true
		}
	}
	return false
}

// refuseDraft records that a request named a draft outside this verifier's view: the
// router's view and this one disagree (a misconfiguration, or Consul catching up), or
// the caller is not the router.
// The warning is logged at most once per refuseLogEvery, with the count since the
// last one, so that a caller naming addresses cannot flood the log.
func (s *Server) refuseDraft(ctx context.Context, addr string) {
	trace.SpanFromContext(ctx).AddEvent("specd.draft_refused", trace.WithAttributes(attribute.String("specd.draft.address", addr)))
	n := s.refused.Add(1)
	now := time.Now().UnixNano()
	last := s.refusedLogged.Load()
	if s.log == nil || now-last < int64(refuseLogEvery) || !s.refusedLogged.CompareAndSwap(last, now) {
		return
	}
	s.refused.Add(-n)
	s.log.WarnContext(ctx, "request names a draft outside this verifier's view; decoding plainly", "draft_address", addr, "refused", n)
}

// refuseLogEvery spaces the warnings of refuseDraft.
const refuseLogEvery = 10 * time.Second

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

// openDraft opens a Speculate stream to the draft at addr for a request whose
// committed sequence is committed, of which the first promptLen are the prompt. maxPos
// is the request's last position, whose token is the verifier's own whatever was
// drafted: the draft proposes before it.
func (s *Server) openDraft(ctx context.Context, addr string, committed []int32, promptLen, maxPos int, tokHash string, q services.Request, ends []int32, mode spec.Mode, gamma int) (*draftLink, error) {
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
		Gamma: uint32(gamma), MaxPosition: uint32(maxPos), TokenizerHash: tokHash,
		ProposalTopK: uint32(topK), PromptTokens: uint32(promptLen),
		ResponseFormat: services.FormatToProto(q.Format), EndIds: ends,
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

// errBadProposal: a draft sent a proposal the verifier cannot check.
var errBadProposal = errors.New("draft sent a malformed proposal")

// checkProposal returns an error wrapping errBadProposal when p cannot be checked: a
// token outside the vocabulary of vocab ids (it would fail the whole batched pass,
// every request in it), or, when dists, a distribution missing or malformed (ids and
// probabilities of different lengths, an id outside the vocabulary, more ids than it
// has, a probability that is not a number in [0, 1]),
// which rejection sampling would read out of range or judge by. The draft that sent
// it has failed; the request drops it.
func checkProposal(p spec.Proposal, vocab int, dists bool) error {
	for i, t := range p.Tokens {
		if t < 0 || int(t) >= vocab {
			return fmt.Errorf("%w: round %d token %d is %d, outside the vocabulary of %d", errBadProposal, p.Round, i, t, vocab)
		}
	}
	if !dists {
		return nil
	}
	if len(p.Dists) != len(p.Tokens) {
		return fmt.Errorf("%w: round %d has %d distributions for %d tokens", errBadProposal, p.Round, len(p.Dists), len(p.Tokens))
	}
	for i, d := range p.Dists {
		if len(d.IDs) != len(d.Probs) {
			return fmt.Errorf("%w: round %d distribution %d has %d ids and %d probabilities", errBadProposal, p.Round, i, len(d.IDs), len(d.Probs))
		}
		// Rejection sampling looks each of the target's ids up in the support: one
		// larger than the vocabulary (ids repeated) would cost the pass that much.
		if len(d.IDs) > vocab {
			return fmt.Errorf("%w: round %d distribution %d has %d ids, more than the vocabulary of %d", errBadProposal, p.Round, i, len(d.IDs), vocab)
		}
		for _, id := range d.IDs {
			if id < 0 || int(id) >= vocab {
				return fmt.Errorf("%w: round %d distribution %d has id %d, outside the vocabulary of %d", errBadProposal, p.Round, i, id, vocab)
			}
		}
		for _, q := range d.Probs {
			if !(q >= 0 && q <= 1) {
				return fmt.Errorf("%w: round %d distribution %d has probability %v", errBadProposal, p.Round, i, q)
			}
		}
	}
	return nil
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

// send sends verdict v. When the draft has ended the stream, it returns the stream's
// status (a refusal, say), which its receiver reads, rather than the io.EOF of a send
// on an ended stream: the request tells a refusal from a failure by it. Proposals not
// yet taken are dropped then.
func (l *draftLink) send(v spec.Verdict) error {
	l.sent[v.Seq] = time.Now()
	err := l.stream.Send(&speculationv1.SpeculateRequest{Kind: &speculationv1.SpeculateRequest_Verdict{Verdict: services.VerdictToProto(v)}})
	if errors.Is(err, io.EOF) {
		for range l.proposals { // the stream has ended: its receiver ends too
		}
		if rerr := l.err(); rerr != nil {
			return rerr
		}
	}
	return err
}

func (l *draftLink) err() error {
	select {
	case err := <-l.errc:
		return err
	default:
		return nil
	}
}

// closeWait bounds how long closing a draft stream waits for the draft to end it.
const closeWait = 500 * time.Millisecond

// close ends the stream: the draft sees the end of verdicts and ends its side, which
// the receiver reads as the stream's end; proposals still in flight are dropped. A
// stream ended so closes with the draft's status — cancelling it instead would mark
// every request's draft span failed. A draft that has not ended it within closeWait
// (or a request already cancelled) is cut off.
func (l *draftLink) close() {
	l.once.Do(func() {
		l.stream.CloseSend()
		cut := time.AfterFunc(closeWait, l.cancel)
		for range l.proposals {
		}
		cut.Stop()
		l.cancel()
	})
}
