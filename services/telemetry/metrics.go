package telemetry

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
)

// Metric names, as exposed on /metrics (each ends in its unit, counters in _total).
const (
	NameTokensGenerated  = "specd_tokens_generated_total"
	NameTokensDrafted    = "specd_tokens_drafted_total"
	NameTokensAccepted   = "specd_tokens_accepted_total"
	NameTokensLookup     = "specd_tokens_lookup_total"
	NamePromptTokens     = "specd_prompt_tokens_total"
	NamePromptCached     = "specd_prompt_tokens_cached_total"
	NameLookupAccepted   = "specd_tokens_lookup_accepted_total"
	NameAcceptanceRatio  = "specd_acceptance_ratio"
	NameRoundTrip        = "specd_round_trip_seconds"
	NameTimeToFirstToken = "specd_time_to_first_token_seconds"
	NamePassTokens       = "specd_pass_tokens"
	NamePassSeconds      = "specd_pass_seconds"
	NameRequests         = "specd_requests_total"
	NameSendStalls       = "specd_send_stalls_total"
	NameQueueDepth       = "specd_queue_depth_requests"
	NameKVBlocks         = "specd_kv_blocks"
	NameBreakerState     = "specd_breaker_state"
	NameDiscoveryStale   = "specd_discovery_stale"

	// The OpenTelemetry GenAI semantic conventions' model server metrics, under their
	// own names (the Prometheus endpoint adds the unit: gen_ai_server_request_duration_seconds).
	NameGenAIRequestDuration = "gen_ai.server.request.duration"
	NameGenAITimeToFirst     = "gen_ai.server.time_to_first_token"
	NameGenAITimePerToken    = "gen_ai.server.time_per_output_token"
)

// Attribute keys of specd's metrics.
const (
	AttrModel      = "model"       // the model that produced the tokens (the verifier's)
	AttrDraftModel = "draft_model" // the draft model of a speculation round
	AttrDomain     = "domain"      // the request's domain (GenerateRequest.domain), bounded
	AttrCode       = "code"        // a gRPC status code name: OK, Unavailable, …
	AttrState      = "state"       // of KV blocks: used, cached or free
	AttrEndpoint   = "endpoint"    // a verifier or draft endpoint id
	AttrKey        = "key"         // the name of the API key a request was made with (WithKey), bounded
)

// Breaker states as specd_breaker_state reports them.
const (
	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

// maxDomains bounds the domain label: a client names the domain, so past this many
// distinct values the rest are counted as "other".
const maxDomains = 32

// maxKeys bounds the key label: the operator names the keys, but a key file may hold
// thousands; past this many distinct names the rest are counted as "other".
const maxKeys = 128

// Metrics are specd's instruments on one service's MeterProvider, created once at
// Setup. A nil *Metrics records nothing, so code paths without telemetry (tests,
// tools) need no special case. Which service records what (so that nothing is
// counted twice across processes): the router records each finished request
// (RecordRequest, from its Final stats) and time to first token, its breakers and
// discovery; the verifier records round trips; verifier and draft each report their
// queue and KV use.
type Metrics struct {
	meter metric.Meter

	tokensGenerated, tokensDrafted, tokensAccepted metric.Int64Counter
	tokensLookup, lookupAccepted                   metric.Int64Counter
	promptTokens, promptCached                     metric.Int64Counter
	requests, sendStalls                           metric.Int64Counter
	acceptance, roundTrip, ttft                    metric.Float64Histogram
	passTokens, passSeconds                        metric.Float64Histogram
	genAIDuration, genAITTFT, genAITPOT            metric.Float64Histogram
	queueDepth, kvBlocks, breakers, stale          metric.Int64ObservableGauge

	mu      sync.Mutex
	domains map[string]bool // domain label values seen so far
	keys    map[string]bool // key label values seen so far
}

// Bucket boundaries: acceptance in tenths; a round trip from half a millisecond
// (loopback) to seconds; time to first token from 10 ms to a minute (long prompts).
var (
	acceptanceBuckets = []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}
	roundTripBuckets  = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	ttftBuckets       = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	passTokenBuckets  = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
	passBuckets       = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1}

	// The boundaries the GenAI conventions ask for, each metric its own.
	genAIDurationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	genAITTFTBuckets     = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	genAITPOTBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5}
)

func newMetrics(m metric.Meter) (*Metrics, error) {
	ms := &Metrics{meter: m, domains: map[string]bool{}, keys: map[string]bool{}}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	hist := func(name, unit, desc string, buckets []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	ms.tokensGenerated = counter(NameTokensGenerated, "{token}", "Tokens returned to clients.")
	ms.tokensDrafted = counter(NameTokensDrafted, "{token}", "Tokens proposed by drafts and checked by the verifier.")
	ms.tokensAccepted = counter(NameTokensAccepted, "{token}", "Drafted tokens the verifier accepted.")
	ms.tokensLookup = counter(NameTokensLookup, "{token}", "Tokens the verifier guessed by prompt lookup and checked in steps without a proposal.")
	ms.lookupAccepted = counter(NameLookupAccepted, "{token}", "Prompt-lookup tokens the verifier accepted.")
	ms.promptTokens = counter(NamePromptTokens, "{token}", "Prompt tokens of finished requests.")
	ms.promptCached = counter(NamePromptCached, "{token}", "Prompt tokens found in the verifier's prefix cache, not computed; over specd_prompt_tokens_total, the cache's hit rate.")
	ms.requests = counter(NameRequests, "{request}", "Finished generation requests by gRPC status code.")
	ms.sendStalls = counter(NameSendStalls, "{stream}", "Streams ended because their client accepted no message for --send-stall-timeout, by gRPC method.")
	ms.acceptance = hist(NameAcceptanceRatio, "1", "Accepted over drafted tokens, one observation per request that speculated.", acceptanceBuckets)
	ms.roundTrip = hist(NameRoundTrip, "s", "Draft round trip of a fresh speculation round: from sending a verdict to receiving the first proposal drafted after it.", roundTripBuckets)
	ms.ttft = hist(NameTimeToFirstToken, "s", "Time from receiving a request to sending its first token.", ttftBuckets)
	ms.passTokens = hist(NamePassTokens, "{token}", "Tokens of each batched forward pass of the verifier: prompt chunks, decode steps and tokens to verify, of every request in the pass.", passTokenBuckets)
	ms.passSeconds = hist(NamePassSeconds, "s", "Duration of each batched forward pass of the verifier.", passBuckets)
	ms.genAIDuration = hist(NameGenAIRequestDuration, "s", "Generative AI server request duration, arrival to last output token (GenAI semantic conventions).", genAIDurationBuckets)
	ms.genAITTFT = hist(NameGenAITimeToFirst, "s", "Time to generate the first token, for successful responses (GenAI semantic conventions).", genAITTFTBuckets)
	ms.genAITPOT = hist(NameGenAITimePerToken, "s", "Time per output token after the first, for successful responses (GenAI semantic conventions).", genAITPOTBuckets)
	ms.queueDepth = gauge(NameQueueDepth, "{request}", "Sessions computing or waiting for a slot.")
	ms.kvBlocks = gauge(NameKVBlocks, "{block}", "KV cache blocks, by state: used (held by requests), cached (held only by the prefix cache, given up when needed) or free.")
	ms.breakers = gauge(NameBreakerState, "", "Circuit breaker state per endpoint: 0 closed, 1 half-open, 2 open.")
	ms.stale = gauge(NameDiscoveryStale, "", "1 while the router serves a discovery view it could not refresh.")
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("telemetry instruments: %w", err)
		}
	}
	return ms, nil
}

// RequestStats are one finished generation request's counts.
type RequestStats struct {
	Model, Domain string
	Code          codes.Code // the status the request ended with
	Generated     int        // tokens returned to the client
	Drafted       int        // tokens proposed by drafts (0: decoded plainly)
	Accepted      int        // drafted tokens accepted
	Lookup        int        // tokens guessed by the verifier's prompt lookup
	LookupKept    int        // of them, accepted
	Prompt        int        // prompt tokens (0: the request never reached a verifier)
	CachedPrompt  int        // of them, found in the verifier's prefix cache
}

// RecordRequest counts a finished request: specd_requests_total{model,code}, the
// token counters {model,domain} (prompt, draft and lookup tokens when there were any) and, when
// a draft took part, specd_acceptance_ratio. A request made with an API key (ctx from
// WithKey) adds {key} to specd_requests_total and specd_tokens_generated_total.
func (m *Metrics) RecordRequest(ctx context.Context, r RequestStats) {
	if m == nil {
		return
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrModel, r.Model), attribute.String(AttrDomain, m.domain(r.Domain))))
	reqAttrs := []attribute.KeyValue{attribute.String(AttrModel, r.Model), attribute.String(AttrCode, r.Code.String())}
	genAttrs := attrs
	if key := m.key(KeyFrom(ctx)); key != "" {
		reqAttrs = append(reqAttrs, attribute.String(AttrKey, key))
		genAttrs = metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrModel, r.Model), attribute.String(AttrDomain, m.domain(r.Domain)), attribute.String(AttrKey, key)))
	}
	m.requests.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(reqAttrs...)))
	m.tokensGenerated.Add(ctx, int64(r.Generated), genAttrs)
	if r.Drafted > 0 {
		m.tokensDrafted.Add(ctx, int64(r.Drafted), attrs)
		m.tokensAccepted.Add(ctx, int64(r.Accepted), attrs)
		m.acceptance.Record(ctx, float64(r.Accepted)/float64(r.Drafted), attrs)
	}
	if r.Prompt > 0 {
		m.promptTokens.Add(ctx, int64(r.Prompt), attrs)
		m.promptCached.Add(ctx, int64(r.CachedPrompt), attrs)
	}
	if r.Lookup > 0 {
		m.tokensLookup.Add(ctx, int64(r.Lookup), attrs)
		m.lookupAccepted.Add(ctx, int64(r.LookupKept), attrs)
	}
}

// ServerRequest is one finished request as the GenAI conventions' model server
// metrics see it.
type ServerRequest struct {
	Operation     string // gen_ai.operation.name: chat or text_completion
	Provider      string // gen_ai.provider.name
	RequestModel  string // the model the request named, if one served ("": none, or refused)
	ResponseModel string // the model that answered ("": none did)
	ErrorType     string // error.type: the gRPC code name of a failed request (INVALID_ARGUMENT, …) ("": it succeeded)
	Duration      time.Duration
	// TimeToFirstToken and TimePerOutputToken are recorded when positive: for a
	// successful request with a first token, and with more than one token.
	TimeToFirstToken, TimePerOutputToken time.Duration
}

// RecordServerRequest records gen_ai.server.request.duration and, when set,
// gen_ai.server.time_to_first_token and gen_ai.server.time_per_output_token.
func (m *Metrics) RecordServerRequest(ctx context.Context, r ServerRequest) {
	if m == nil {
		return
	}
	kv := []attribute.KeyValue{attribute.String("gen_ai.operation.name", r.Operation), attribute.String("gen_ai.provider.name", r.Provider)}
	if r.RequestModel != "" {
		kv = append(kv, attribute.String("gen_ai.request.model", r.RequestModel))
	}
	if r.ResponseModel != "" {
		kv = append(kv, attribute.String("gen_ai.response.model", r.ResponseModel))
	}
	ok := metric.WithAttributeSet(attribute.NewSet(kv...))
	all := ok
	if r.ErrorType != "" {
		all = metric.WithAttributeSet(attribute.NewSet(append(kv, attribute.String("error.type", r.ErrorType))...))
	}
	m.genAIDuration.Record(ctx, r.Duration.Seconds(), all)
	if r.TimeToFirstToken > 0 {
		m.genAITTFT.Record(ctx, r.TimeToFirstToken.Seconds(), ok)
	}
	if r.TimePerOutputToken > 0 {
		m.genAITPOT.Record(ctx, r.TimePerOutputToken.Seconds(), ok)
	}
}

// RecordSendStall counts a stream of method ended by the send-stall timeout
// (services.Limits.SendStalled).
func (m *Metrics) RecordSendStall(ctx context.Context, method string) {
	if m == nil {
		return
	}
	m.sendStalls.Add(ctx, 1, metric.WithAttributes(attribute.String("method", method)))
}

// RecordRoundTrip records the draft's round trip for one fresh round: from sending a
// verdict to receiving the first proposal drafted after it.
func (m *Metrics) RecordRoundTrip(ctx context.Context, model, draftModel string, d time.Duration) {
	if m == nil {
		return
	}
	m.roundTrip.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String(AttrModel, model), attribute.String(AttrDraftModel, draftModel)))
}

// RecordPass records one batched forward pass of the verifier: its tokens and how long
// it took.
func (m *Metrics) RecordPass(ctx context.Context, model string, tokens int, d time.Duration) {
	if m == nil {
		return
	}
	attrs := metric.WithAttributes(attribute.String(AttrModel, model))
	m.passTokens.Record(ctx, float64(tokens), attrs)
	m.passSeconds.Record(ctx, d.Seconds(), attrs)
}

// RecordTimeToFirstToken records the time from a request's arrival to its first
// token.
func (m *Metrics) RecordTimeToFirstToken(ctx context.Context, model string, d time.Duration) {
	if m == nil {
		return
	}
	m.ttft.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String(AttrModel, model)))
}

// domain bounds the domain label's values.
func (m *Metrics) domain(d string) string { return m.bounded(m.domains, maxDomains, d) }

// key bounds the key label's values.
func (m *Metrics) key(k string) string { return m.bounded(m.keys, maxKeys, k) }

// bounded returns v if it is among the first most values of a label seen (in seen),
// "other" past them, and "" for "".
func (m *Metrics) bounded(seen map[string]bool, most int, v string) string {
	if v == "" {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if seen[v] {
		return v
	}
	if len(seen) >= most || len(v) > 64 {
		return "other"
	}
	seen[v] = true
	return v
}

// ObserveQueueDepth reports f() as specd_queue_depth_requests at each collection.
// Register once per service; the returned function stops the reporting.
func (m *Metrics) ObserveQueueDepth(f func() int64) (stop func()) {
	if m == nil {
		return func() {}
	}
	return m.observe(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(m.queueDepth, f())
		return nil
	}, m.queueDepth)
}

// ObserveKVBlocks reports specd_kv_blocks{state="used"|"cached"|"free"} from f at
// each collection. Register once per service; the returned function stops the reporting.
func (m *Metrics) ObserveKVBlocks(f func() (used, cached, free int64)) (stop func()) {
	if m == nil {
		return func() {}
	}
	sets := [3]metric.ObserveOption{}
	for i, st := range []string{"used", "cached", "free"} {
		sets[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrState, st)))
	}
	return m.observe(func(_ context.Context, o metric.Observer) error {
		used, cached, free := f()
		for i, n := range []int64{used, cached, free} {
			o.ObserveInt64(m.kvBlocks, n, sets[i])
		}
		return nil
	}, m.kvBlocks)
}

// ObserveBreakers reports specd_breaker_state{endpoint} from f, a map from endpoint
// id to BreakerClosed, BreakerHalfOpen or BreakerOpen. Register once per service;
// the returned function stops the reporting.
func (m *Metrics) ObserveBreakers(f func() map[string]int64) (stop func()) {
	if m == nil {
		return func() {}
	}
	return m.observe(func(_ context.Context, o metric.Observer) error {
		for ep, st := range f() {
			o.ObserveInt64(m.breakers, st, metric.WithAttributes(attribute.String(AttrEndpoint, ep)))
		}
		return nil
	}, m.breakers)
}

// ObserveDiscoveryStale reports specd_discovery_stale as 1 while f() is true.
// Register once per service; the returned function stops the reporting.
func (m *Metrics) ObserveDiscoveryStale(f func() bool) (stop func()) {
	if m == nil {
		return func() {}
	}
	return m.observe(func(_ context.Context, o metric.Observer) error {
		var v int64
		if f() {
			v = 1
		}
		o.ObserveInt64(m.stale, v)
		return nil
	}, m.stale)
}

// observe registers cb for inst. The instruments all come from m.meter, so
// registration cannot fail short of a broken invariant.
func (m *Metrics) observe(cb metric.Callback, inst metric.Observable) (stop func()) {
	reg, err := m.meter.RegisterCallback(cb, inst)
	if err != nil {
		panic(fmt.Sprintf("telemetry: registering a callback on the meter's own instrument: %v", err))
	}
	return func() { reg.Unregister() }
}
