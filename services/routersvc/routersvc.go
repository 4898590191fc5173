// Package routersvc serves specd's public API, specd.v1.GenerationService: it validates
// requests, lets the router core pick a verifier and a draft, relays the verifier's
// stream to the client, and resumes on another verifier when one fails mid-stream.
package routersvc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/telemetry"
)

// Server implements specdv1.GenerationServiceServer.
type Server struct {
	specdv1.UnimplementedGenerationServiceServer
	r   *router.Router
	log *slog.Logger
	tel *telemetry.Telemetry

	conns map[router.Role]*services.Conns // by the role of the endpoints dialled

	mu      sync.Mutex
	healthy map[string]bool // endpoint ID → its last health probe said SERVING
	// silent: endpoint ID → when the run of health probes it left unanswered (no
	// reply within the probe's timeout) began; absent when its last probe had one.
	silent map[string]time.Time
	// attempts: endpoint ID → the cancel functions of the attempts running on it,
	// cancelled with errHung when the endpoint has been silent for HungAfter.
	attempts map[string]map[*stream]context.CancelCauseFunc

	// MaxMessageBytes is the largest message the server sends (its
	// --max-message-bytes; 0: services.MaxMessageBytes): a Complete whose response
	// would be larger is refused, naming it. Set before serving.
	MaxMessageBytes int

	errLog services.LogSampler // failures logged by publicStatus
}

var _ specdv1.GenerationServiceServer = (*Server)(nil)

// HungAfter is how long a verifier may leave every health probe unanswered (a probe
// each health interval, each given up after that interval, at most 2 s) while the
// router has streams on it before those streams are given up and resumed elsewhere. A
// verifier stopped (SIGSTOP) or cut off by a network that drops its packets keeps its
// connections open, so without this its streams would wait for the connection's
// keepalive to fail (30 s of silence, then 10 s for the ping's answer). A verifier
// that refuses connections, or answers NOT_SERVING while it drains, is not silent.
const HungAfter = 3 * time.Second

// errHung cancels the attempts on a verifier silent for HungAfter.
var errHung = fmt.Errorf("no answer to health probes for %v", HungAfter)

// Dials are the options of a router's connections by the role of the endpoint
// dialled. Each role's connections are cached apart, so an address is always dialled
// with the credentials of the role it was found in: with TLS, a verifier's
// connections accept only a verifier's certificate, and a draft (whose address could
// be registered as a verifier's) is never sent a user's prompt.
type Dials struct {
	Verifier, Draft []grpc.DialOption
}

// New returns a router server over r. tel records request metrics and failover
// events (nil: none); dials are the options of its connections to verifiers and drafts.
func New(r *router.Router, log *slog.Logger, tel *telemetry.Telemetry, dials Dials) *Server {
	s := &Server{r: r, log: log, tel: tel, conns: map[router.Role]*services.Conns{
		router.Verifier: services.NewConns(services.ConnLimits{}, dials.Verifier...),
		router.Draft:    services.NewConns(services.ConnLimits{}, dials.Draft...),
	}, errLog: services.LogSampler{Every: services.RefusalLogEvery}}
	r.OnFailover = s.onFailover
	r.Healthy = s.Healthy
	return s
}

// metrics returns the instruments (nil records nothing).
func (s *Server) metrics() *telemetry.Metrics {
	if s.tel == nil {
		return nil
	}
	return s.tel.Metrics
}

// onFailover marks a resume on the request's span and in the log.
func (s *Server) onFailover(ctx context.Context, from router.Endpoint, streamed int, err error) {
	trace.SpanFromContext(ctx).AddEvent("specd.failover", trace.WithAttributes(
		attribute.String("specd.verifier", from.Address), attribute.Int("specd.tokens_streamed", streamed), attribute.String("error", err.Error())))
	if s.log != nil {
		s.log.WarnContext(ctx, "verifier failed mid-stream, resuming on another", "verifier", from.Address, "streamed", streamed, "err", err)
	}
}

// Close closes the client connections.
func (s *Server) Close() {
	for _, c := range s.conns {
		c.Close()
	}
}

// conn returns the connection to addr, an endpoint of role.
func (s *Server) conn(role router.Role, addr string) (*grpc.ClientConn, error) {
	c, ok := s.conns[role]
	if !ok {
		return nil, fmt.Errorf("%s: a router dials no %s", addr, role)
	}
	return c.Get(addr)
}

// Generate streams a generation.
func (s *Server) Generate(req *specdv1.GenerateRequest, stream specdv1.GenerationService_GenerateServer) error {
	_, err := s.relay(stream.Context(), req, func(ev router.Event) error {
		return stream.Send(toResponse(ev))
	})
	return s.publicStatus(stream.Context(), err)
}

// Complete runs a generation and returns it whole.
func (s *Server) Complete(ctx context.Context, req *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
	res, err := s.relay(ctx, req, func(router.Event) error { return nil })
	if err != nil {
		return nil, s.publicStatus(ctx, err)
	}
	out := &specdv1.CompleteResponse{TokenIds: res.IDs, Text: res.Text}
	for _, lp := range res.Logprobs {
		out.Logprobs = append(out.Logprobs, services.LogprobsToProto(lp))
	}
	for _, lp := range res.PromptLogprobs {
		out.PromptLogprobs = append(out.PromptLogprobs, services.LogprobsToProto(lp))
	}
	if res.Final != nil {
		f := services.FinalToProto(res.Final)
		out.FinishReason, out.Stats, out.PromptIds = f.GetFinishReason(), f.GetStats(), res.Final.PromptIDs
		out.EndLogprobs = f.GetEndLogprobs()
	}
	if err := s.fits(req, out); err != nil {
		return nil, services.Status(err)
	}
	return out, nil
}

// fits refuses a Complete response larger than the server may send: grpc-go would
// fail it as RESOURCE_EXHAUSTED, which reads as "busy, retry", while no retry can
// succeed. Only log-probabilities make a response that large (a prompt's, with many
// likeliest tokens each); a stream carries them in pieces.
func (s *Server) fits(req *specdv1.GenerateRequest, out *specdv1.CompleteResponse) error {
	limit := cmp.Or(s.MaxMessageBytes, services.MaxMessageBytes)
	n := proto.Size(out)
	if n <= limit {
		return nil
	}
	field := "logprobs"
	if req.GetPromptLogprobs() {
		field = "prompt_logprobs"
	}
	return services.BadField(field, "the response of %d bytes exceeds the message size limit of %d bytes: stream the request with Generate, which sends log-probabilities in pieces, or ask for fewer top_logprobs", n, limit)
}

func toResponse(ev router.Event) *specdv1.GenerateResponse {
	if ev.Final != nil {
		return &specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: services.FinalToProto(ev.Final)}}
	}
	c := &specdv1.TokenChunk{TokenIds: ev.IDs, Text: ev.Text}
	for _, lp := range ev.PromptLogprobs {
		c.PromptLogprobs = append(c.PromptLogprobs, services.LogprobsToProto(lp))
	}
	for _, p := range ev.Positions {
		c.Positions = append(c.Positions, uint32(p))
	}
	for _, lp := range ev.Logprobs {
		c.Logprobs = append(c.Logprobs, services.LogprobsToProto(lp))
	}
	return &specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: c}}
}

// relay validates req and runs it through the router core.
func (s *Server) relay(ctx context.Context, req *specdv1.GenerateRequest, sink func(router.Event) error) (router.Result, error) {
	t0 := time.Now()
	span := trace.SpanFromContext(ctx)
	op := operation(req)
	q, err := services.ParseRequest(req)
	if err == nil {
		err = s.checkModel(req.GetModel())
	}
	if err != nil {
		// Refused before routing: counted by its code, with no model (no verifier took
		// it, and a client's model names must not become series).
		code := status.Code(services.Status(err))
		s.metrics().RecordRequest(ctx, telemetry.RequestStats{Domain: req.GetDomain(), Code: code})
		span.SetAttributes(attribute.String(attrOperation, op), attribute.String(attrProvider, Provider))
		s.recordGenAI(ctx, op, "", nil, "", code, t0, time.Time{}, time.Now())
		return router.Result{}, err
	}
	span.SetAttributes(requestAttributes(req, q)...)
	// Fix the seed now so that a resumed request continues with the same one.
	req = proto.Clone(req).(*specdv1.GenerateRequest)
	req.Sampling = services.SamplingToProto(q.Sampling)
	key := req.GetSessionKey()
	if key == "" {
		key = promptHead(req)
	}
	b := &backend{s: s, req: req}
	first := true
	var tFirst time.Time
	res, err := s.r.Relay(ctx, key, req.GetModel(), b, func(ev router.Event) error {
		// The ids are the request's now, whatever becomes of it: a key's quota is
		// billed for them even if the client hangs up or its deadline passes.
		services.Charge(ctx, len(ev.IDs))
		if first && len(ev.IDs) > 0 {
			first = false
			tFirst = time.Now()
			s.metrics().RecordTimeToFirstToken(ctx, b.model, tFirst.Sub(t0))
		}
		if ev.Final != nil {
			routerTimes(&ev.Final.Stats, t0, tFirst, time.Now())
		}
		return sink(ev)
	})
	switch {
	case err != nil && ctx.Err() != nil:
		// The client cancelled or its deadline passed: whatever the last attempt
		// reported on the way out (a stream cut as UNAVAILABLE, say), that is the
		// request's end, in its status and in specd_requests_total.
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	case err != nil && errors.Is(err, router.ErrNoVerifier):
		err = fmt.Errorf("%w: %w", services.ErrUnavailable, err)
	}
	rs := telemetry.RequestStats{Model: b.model, Domain: req.GetDomain(), Code: status.Code(services.Status(err)), Generated: len(res.IDs)}
	if f := res.Final; f != nil {
		rs.Drafted, rs.Accepted = f.Stats.DraftedTokens, f.Stats.AcceptedTokens
		rs.Lookup, rs.LookupKept = f.Stats.LookupTokens, f.Stats.LookupAcceptedTokens
		rs.Prompt, rs.CachedPrompt = f.Stats.PromptTokens, f.Stats.CachedPromptTokens
	} else {
		// Ended without a final message: the verifiers still checked what their
		// progress reported.
		p := res.Progress()
		rs.Drafted, rs.Accepted, rs.Lookup, rs.LookupKept = p.DraftedTokens, p.AcceptedTokens, p.LookupTokens, p.LookupAcceptedTokens
	}
	s.metrics().RecordRequest(ctx, rs)
	s.recordGenAI(ctx, op, req.GetModel(), &res, b.model, rs.Code, t0, tFirst, time.Now())
	return res, err
}

// routerTimes sets the durations of a request's final stats from the router's clock —
// the request arrived at t0, its first token went out at first (zero: none), its end
// at end — as the proto defines them. The verifier measured them from when it started:
// after a failover, from the resume, while the client got its first token from the
// verifier that failed, and the rate counted the resumed tokens over the last
// attempt's time alone.
func routerTimes(st *router.Stats, t0, first, end time.Time) {
	st.Total = end.Sub(t0)
	if first.IsZero() {
		return
	}
	st.TimeToFirstToken = first.Sub(t0)
	st.DecodeTokensPerSecond = 0
	if n := st.CompletionTokens; n > 1 && end.After(first) {
		st.DecodeTokensPerSecond = float64(n-1) / end.Sub(first).Seconds()
	}
}

// checkModel rejects a model name no verifier serves.
func (s *Server) checkModel(name string) error {
	if name == "" {
		return nil
	}
	var have []string
	for _, e := range s.r.Discovery.Endpoints(router.Verifier) {
		if e.Model == name {
			return nil
		}
		have = append(have, e.Model)
	}
	sort.Strings(have)
	return fmt.Errorf("%w %q (verifiers serve: %s)", services.ErrUnknownModel, name, strings.Join(slices.Compact(have), ", "))
}

// promptHead is the default affinity key: the first 256 bytes of the prompt (of a
// conversation: of its turns, each as role and content), so a returning conversation
// lands where its prefix is cached.
func promptHead(req *specdv1.GenerateRequest) string {
	const n = 256
	if p := req.GetPrompt(); p != "" {
		return p[:min(len(p), n)]
	}
	if ms := req.GetMessages(); len(ms) > 0 {
		var sb strings.Builder
		for _, m := range ms {
			if sb.Len() >= n {
				break
			}
			fmt.Fprintf(&sb, "%s\x00%s\x00", m.GetRole(), m.GetContent()[:min(len(m.GetContent()), n)])
		}
		return "messages:" + sb.String()[:min(sb.Len(), n)]
	}
	ids := req.GetPromptIds()
	return fmt.Sprint(ids[:min(len(ids), 64)])
}

// backend starts attempts of one request on verifiers over gRPC.
type backend struct {
	s     *Server
	req   *specdv1.GenerateRequest
	model string // the model of the last verifier tried
	// prompt is the prompt a verifier rendered from the request's messages, as its
	// first message reported it; a resumed attempt sends it so that the next verifier
	// continues the very same ids (another template, or strftime_now on another day,
	// could render the conversation otherwise). nil: not a chat request, or nothing
	// received yet.
	prompt []int32
}

var _ router.Backend = (*backend)(nil)

func (b *backend) Start(ctx context.Context, a router.Attempt) (router.Stream, error) {
	b.model = a.Verifier.Model
	cc, err := b.s.conn(router.Verifier, a.Verifier.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", router.ErrUnreachable, a.Verifier.Address, err)
	}
	vr := &speculationv1.GenerateRequest{Request: b.req, ResumeIds: a.Resume, ResumeTextBytes: uint32(a.ResumeText)}
	if len(a.Resume) > 0 {
		vr.PromptIds = b.prompt
	}
	if a.Draft != nil {
		vr.DraftAddress = a.Draft.Address
	}
	// The attempt's own context, which the health probe cancels if the verifier
	// falls silent (see HungAfter).
	actx, cancel := context.WithCancelCause(ctx)
	st, err := speculationv1.NewVerifierServiceClient(cc).Generate(actx, vr)
	if err != nil {
		cancel(nil)
		// No stream, the request still alive: the verifier could not be reached —
		// refused, no answer to the connection attempt, going away (UNAVAILABLE), or
		// the connection closed under the call because Conns replaced it, failing,
		// with a fresh one (CANCELED). Conns redials a connection left failing, so
		// the verifier is down now, not merely behind a stale connection.
		if c := status.Code(err); (c == codes.Unavailable || c == codes.Canceled) && ctx.Err() == nil {
			return nil, fmt.Errorf("%w: %s: %w", router.ErrUnreachable, a.Verifier.Address, err)
		}
		return nil, classify(a.Verifier, err)
	}
	s := &stream{st: st, ep: a.Verifier, b: b, ctx: ctx, actx: actx, cancel: cancel}
	b.s.track(a.Verifier.ID, s, actx, cancel)
	return s, nil
}

type stream struct {
	st     speculationv1.VerifierService_GenerateClient
	ep     router.Endpoint
	b      *backend
	ctx    context.Context // the request's
	actx   context.Context // the attempt's: the request's, or cancelled with errHung
	cancel context.CancelCauseFunc
}

func (s *stream) Recv() (router.Event, error) {
	msg, err := s.st.Recv()
	if err != nil {
		defer s.cancel(nil) // the stream has ended: forget the attempt
		if errors.Is(err, io.EOF) {
			return router.Event{}, io.EOF
		}
		if s.ctx.Err() == nil && errors.Is(context.Cause(s.actx), errHung) {
			return router.Event{}, fmt.Errorf("%w: %s: %w", router.ErrEndpointDown, s.ep.Address, errHung)
		}
		return router.Event{}, classify(s.ep, err)
	}
	if ids := msg.GetPromptIds(); len(ids) > 0 && s.b.prompt == nil {
		s.b.prompt = ids
	}
	switch e := msg.GetEvent().(type) {
	case *speculationv1.GenerateResponse_Chunk:
		ev := router.Event{IDs: e.Chunk.GetTokenIds(), Text: e.Chunk.GetText(), Progress: services.ProgressFromProto(msg.GetProgress())}
		for _, p := range e.Chunk.GetPositions() {
			ev.Positions = append(ev.Positions, int(p))
		}
		for _, lp := range e.Chunk.GetLogprobs() {
			ev.Logprobs = append(ev.Logprobs, services.LogprobsFromProto(lp))
		}
		for _, lp := range e.Chunk.GetPromptLogprobs() {
			ev.PromptLogprobs = append(ev.PromptLogprobs, services.LogprobsFromProto(lp))
		}
		return ev, nil
	case *speculationv1.GenerateResponse_Final:
		f := services.FinalFromProto(e.Final)
		f.PromptIDs = msg.GetPromptIds()
		return router.Event{Final: f, Progress: services.ProgressFromProto(msg.GetProgress())}, nil
	}
	return router.Event{}, fmt.Errorf("%w: %s sent an empty message", router.ErrEndpointDown, s.ep.Address)
}

// classify marks errors that mean the verifier itself failed (so the request may move
// to another one) with router.ErrEndpointDown — a refusal while it loads its model with
// router.ErrUnreachable —, and its refusals for lack of capacity
// with router.ErrAtCapacity; a status from the verifier about the request (a bad
// argument) passes through unchanged.
func classify(ep router.Endpoint, err error) error {
	if services.NotReady(err) {
		// Still loading its model: it refused before starting the request, so the
		// request moves on without spending an attempt, counting a failover or a
		// failure of the verifier's breaker (which would keep a verifier just
		// restarted out of rotation for a cooldown once it has loaded).
		return fmt.Errorf("%w: %s: %w", router.ErrUnreachable, ep.Address, err)
	}
	if services.PeerDown(err) {
		return fmt.Errorf("%w: %s: %w", router.ErrEndpointDown, ep.Address, err)
	}
	switch status.Code(err) {
	case codes.ResourceExhausted:
		// Full: another verifier may have room (the status, with its RetryInfo, is
		// the request's answer when none has).
		return fmt.Errorf("%w: %s: %w", router.ErrAtCapacity, ep.Address, err)
	}
	return err
}

// Healthy reports whether ep answered its last health probe SERVING (see Probe); an
// endpoint not probed yet counts as healthy. It is the router's router.Healthy.
func (s *Server) Healthy(ep router.Endpoint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	up, ok := s.healthy[ep.ID]
	return up || !ok
}

// Probe asks every verifier and draft of the discovery for its gRPC health every
// interval — and at once when kick fires (a breaker changed) — until ctx ends. It
// records the answers for Healthy and calls serving with whether any verifier is
// usable (SERVING, its breaker not open) whenever that changes, first after the
// first round. A verifier that is loading its model, stopped or unreachable is not.
func (s *Server) Probe(ctx context.Context, interval time.Duration, kick <-chan struct{}, serving func(bool)) {
	first := true
	was := false
	round := func() {
		var eps []router.Endpoint
		for _, role := range []router.Role{router.Verifier, router.Draft} {
			eps = append(eps, s.r.Discovery.Endpoints(role)...)
		}
		up, silent := make([]bool, len(eps)), make([]bool, len(eps))
		var wg sync.WaitGroup
		for i, e := range eps {
			wg.Add(1)
			go func() { defer wg.Done(); up[i], silent[i] = s.probe(ctx, e, min(interval, 2*time.Second)) }()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.healthy = make(map[string]bool, len(eps))
		for i, e := range eps {
			s.healthy[e.ID] = up[i]
		}
		s.noteSilence(eps, silent, time.Now())
		s.mu.Unlock()
		usable := false
		for i, e := range eps {
			usable = usable || (e.Role == router.Verifier && up[i] && (s.r.Breakers == nil || s.r.Breakers.Ready(e)))
		}
		if usable != was || first {
			if s.log != nil && !first {
				if usable {
					s.log.Info("a verifier is usable again: health SERVING")
				} else {
					s.log.Warn("no usable verifier: health NOT_SERVING")
				}
			}
			serving(usable)
		}
		first, was = false, usable
	}
	round()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		round()
	}
}

// probe reports whether the endpoint answers its health check SERVING, and whether
// it gave no answer at all within timeout (silent: hung, or cut off) rather than
// refusing or answering otherwise.
func (s *Server) probe(ctx context.Context, e router.Endpoint, timeout time.Duration) (up, silent bool) {
	cc, err := s.conn(e.Role, e.Address)
	if err != nil {
		return false, false
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := healthpb.NewHealthClient(cc).Check(pctx, &healthpb.HealthCheckRequest{})
	return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING, status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil
}

// track registers an attempt running on the endpoint id until its context ends, so
// that it can be given up if the endpoint falls silent.
func (s *Server) track(id string, st *stream, ctx context.Context, cancel context.CancelCauseFunc) {
	s.mu.Lock()
	if s.attempts == nil {
		s.attempts = map[string]map[*stream]context.CancelCauseFunc{}
	}
	if s.attempts[id] == nil {
		s.attempts[id] = map[*stream]context.CancelCauseFunc{}
	}
	s.attempts[id][st] = cancel
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.attempts[id], st)
		if len(s.attempts[id]) == 0 {
			delete(s.attempts, id)
		}
	})
}

// noteSilence records whether each endpoint left its probe unanswered, and gives up
// the attempts on every one silent for HungAfter or longer. Called with s.mu held.
func (s *Server) noteSilence(eps []router.Endpoint, silent []bool, now time.Time) {
	if s.silent == nil {
		s.silent = map[string]time.Time{}
	}
	for i, e := range eps {
		if !silent[i] {
			delete(s.silent, e.ID)
			continue
		}
		since, ok := s.silent[e.ID]
		if !ok {
			s.silent[e.ID] = now
			continue
		}
		if now.Sub(since) < HungAfter || len(s.attempts[e.ID]) == 0 {
			continue
		}
		if s.log != nil {
			s.log.Warn("verifier silent: giving up its streams to resume them elsewhere", "verifier", e.Address, "streams", len(s.attempts[e.ID]), "silent_for", now.Sub(since).Round(time.Millisecond))
		}
		for _, cancel := range s.attempts[e.ID] {
			cancel(errHung)
		}
	}
}

// Tokenize encodes text with a verifier's tokenizer.
func (s *Server) Tokenize(ctx context.Context, req *specdv1.TokenizeRequest) (*specdv1.TokenizeResponse, error) {
	c, v, err := s.tokenizer(ctx, req.GetModel(), req.GetText())
	if err != nil {
		return nil, err
	}
	resp, err := c.Tokenize(ctx, req)
	if err != nil {
		return nil, s.publicStatus(ctx, classify(v, err))
	}
	return resp, nil
}

// Detokenize decodes token ids with a verifier's tokenizer.
func (s *Server) Detokenize(ctx context.Context, req *specdv1.DetokenizeRequest) (*specdv1.DetokenizeResponse, error) {
	c, v, err := s.tokenizer(ctx, req.GetModel(), "")
	if err != nil {
		return nil, err
	}
	resp, err := c.Detokenize(ctx, req)
	if err != nil {
		return nil, s.publicStatus(ctx, classify(v, err))
	}
	return resp, nil
}

// tokenizer returns a client of a verifier of model to tokenize with, and that
// verifier: one last seen up, picked by key as a generation is; any of the model's if
// none is. Its error is a status for the public API.
func (s *Server) tokenizer(ctx context.Context, model, key string) (speculationv1.VerifierServiceClient, router.Endpoint, error) {
	if err := s.checkModel(model); err != nil {
		return nil, router.Endpoint{}, services.Status(err)
	}
	v, _, err := router.Pick(s.r.Discovery, key, nil, s.r.Usable(model))
	if errors.Is(err, router.ErrNoVerifier) {
		v, _, err = router.Pick(s.r.Discovery, key, nil, router.ServesModel(model))
	}
	if err != nil {
		return nil, v, s.publicStatus(ctx, fmt.Errorf("%w: %w", services.ErrUnavailable, err))
	}
	cc, err := s.conn(router.Verifier, v.Address)
	if err != nil {
		return nil, v, s.publicStatus(ctx, fmt.Errorf("%w: %s: %w", services.ErrUnavailable, v.Address, err))
	}
	return speculationv1.NewVerifierServiceClient(cc), v, nil
}

// publicStatus is services.Status(err) as a client of the public API sees it. When the
// router failed the request for its verifiers' sake — every one at capacity, none
// reachable, the last lost mid-stream — or the client went away meanwhile, the message
// says so and no more: the error names verifiers' addresses and repeats what they
// said, which can name the router's own address (a per-peer refusal), and those are
// the cluster's, not the client's. Code and details (a retry hint) stay. The whole
// error goes on the request's span and, one record per code every
// services.RefusalLogEvery, to the log.
func (s *Server) publicStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	// A call the router cancelled because the caller's deadline passed answers
	// Canceled: the caller's answer is its deadline (a Python client saw CANCELLED for
	// a 30 ms deadline, the router's copy of it having passed a moment before its own).
	if status.Code(services.Status(err)) == codes.Canceled && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = context.DeadlineExceeded
	}
	st := status.Convert(services.Status(err))
	var msg string
	switch {
	case errors.Is(err, context.Canceled):
		msg = context.Canceled.Error()
	case errors.Is(err, context.DeadlineExceeded):
		msg = context.DeadlineExceeded.Error()
	case errors.Is(err, router.ErrAtCapacity):
		msg = "every verifier is at capacity: retry later"
	case errors.Is(err, services.ErrTooManyConns):
		msg = "the router is at its limit of connections to verifiers: retry later"
	case errors.Is(err, router.ErrEndpointDown), errors.Is(err, router.ErrNoVerifier), errors.Is(err, services.ErrUnavailable):
		msg = router.ErrNoVerifier.Error()
	case st.Code() == codes.PermissionDenied || st.Code() == codes.Unauthenticated:
		// The router's own checks of keys and certificates run before its handlers, so
		// this is a verifier refusing the router: its message names their identities.
		msg = "a verifier refused the router's credentials"
	default:
		return st.Err()
	}
	if msg == st.Message() {
		return st.Err()
	}
	trace.SpanFromContext(ctx).AddEvent("specd.error", trace.WithAttributes(attribute.String("error", err.Error())))
	if ok, held := s.errLog.Allow(st.Code().String(), time.Now()); ok && s.log != nil {
		s.log.WarnContext(ctx, "request failed", "code", st.Code().String(), "err", err, "failed_unlogged", held)
	}
	p := st.Proto()
	p.Message = msg
	return status.ErrorProto(p)
}

// ListModels reports the models of every known endpoint.
func (s *Server) ListModels(ctx context.Context, _ *specdv1.ListModelsRequest) (*specdv1.ListModelsResponse, error) {
	resp := &specdv1.ListModelsResponse{}
	seen := map[string]bool{}
	for _, role := range []router.Role{router.Verifier, router.Draft} {
		for _, e := range s.r.Discovery.Endpoints(role) {
			k := string(role) + "/" + e.Model + "/" + e.Quant
			if seen[k] || e.Model == "" {
				continue
			}
			seen[k] = true
			resp.Models = append(resp.Models, &specdv1.ModelInfo{Name: e.Model, Role: string(role), Architecture: e.Arch, Quantization: e.Quant,
				ContextLength: uint32(e.Context), VocabSize: uint32(e.Vocab), TokenizerHash: e.TokenizerHash, Parameters: e.Parameters})
		}
	}
	return resp, nil
}

// Refresh keeps a static discovery's metadata current by asking every endpoint for its
// Info every interval until ctx ends. Unreachable endpoints keep their last metadata.
func (s *Server) Refresh(ctx context.Context, st *router.Static, eps []router.Endpoint, interval time.Duration) {
	poll := func() {
		cur := make([]router.Endpoint, len(eps))
		for i, e := range eps {
			cur[i] = e
			cc, err := s.conn(e.Role, e.Address)
			if err != nil {
				continue
			}
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			var info *speculationv1.InfoResponse
			if e.Role == router.Verifier {
				info, err = speculationv1.NewVerifierServiceClient(cc).Info(c, &speculationv1.InfoRequest{})
			} else {
				info, err = speculationv1.NewDraftServiceClient(cc).Info(c, &speculationv1.InfoRequest{})
			}
			cancel()
			if err != nil {
				continue
			}
			m := info.GetModel()
			cur[i].Model, cur[i].TokenizerHash, cur[i].Quant = m.GetName(), m.GetTokenizerHash(), m.GetQuantization()
			cur[i].Arch, cur[i].Vocab, cur[i].Parameters = m.GetArchitecture(), int(m.GetVocabSize()), m.GetParameters()
			cur[i].Context, cur[i].KVFree, cur[i].Load = int(m.GetContextLength()), info.GetKvBlocksFree(), int(info.GetQueueDepth())
			eps[i] = cur[i]
		}
		st.Set(cur...)
	}
	poll()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			poll()
		}
	}
}
