package routersvc

import (
	"context"
	"math"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	"github.com/specd-dev/specd/generate"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/telemetry"
)

// The OpenTelemetry GenAI semantic conventions' attributes the router puts on a
// request's span (its gRPC server span, Generate or Complete). No prompt or completion
// text: the conventions make capturing content opt-in, and specd does not offer it.
const (
	attrOperation     = "gen_ai.operation.name"
	attrProvider      = "gen_ai.provider.name"
	attrRequestModel  = "gen_ai.request.model"
	attrMaxTokens     = "gen_ai.request.max_tokens"
	attrTemperature   = "gen_ai.request.temperature"
	attrTopP          = "gen_ai.request.top_p"
	attrTopK          = "gen_ai.request.top_k"
	attrSeed          = "gen_ai.request.seed"
	attrFinishReasons = "gen_ai.response.finish_reasons"
	attrResponseModel = "gen_ai.response.model"
	attrInputTokens   = "gen_ai.usage.input_tokens"
	attrOutputTokens  = "gen_ai.usage.output_tokens"
	attrErrorType     = "error.type"
)

// Provider is gen_ai.provider.name on specd's spans and metrics: the conventions have
// no well-known value for a self-hosted server, and allow a custom one.
const Provider = "specd"

// operation is gen_ai.operation.name of a request: chat for a conversation rendered
// with the model's template, text_completion for a prompt.
func operation(req *specdv1.GenerateRequest) string {
	if len(req.GetMessages()) > 0 {
		return "chat"
	}
	return "text_completion"
}

// finishReason is a finish reason in the words of the OpenAI API, which the GenAI
// conventions' examples use.
func finishReason(f generate.Finish) string {
	switch f {
	case generate.EOS, generate.StopString:
		return "stop"
	case generate.Length, generate.Context:
		return "length"
	case generate.ToolCall:
		return "tool_calls"
	}
	return f.String()
}

// codeNames are the gRPC status codes' names as the gRPC specification writes them
// and rpc.response.status_code carries them (Go's codes.Code.String differs).
var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// codeName is error.type for a request that ended with code: its gRPC name, the same
// as the span's rpc.response.status_code.
func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "_OTHER"
}

// f32 widens x to the float64 of its shortest decimal form, so that 0.9 reads 0.9 on a
// span, not 0.8999999761581421.
func f32(x float32) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	return f
}

// requestAttributes are a parsed request's gen_ai.request.* attributes (with the
// seed the router fixed) and specd's own: the γ it asked for, whether it speculates.
func requestAttributes(req *specdv1.GenerateRequest, q services.Request) []attribute.KeyValue {
	a := []attribute.KeyValue{
		attribute.String(attrOperation, operation(req)),
		attribute.String(attrProvider, Provider),
		attribute.Float64(attrTemperature, f32(q.Sampling.Temperature)),
		attribute.Float64(attrTopP, f32(q.Sampling.TopP)),
		attribute.Bool("specd.speculation", q.Spec),
	}
	// The conventions type the seed as an int; a seed past the int64 range (the
	// router draws them from all of uint64) goes in specd.seed, in decimal, instead.
	if sd := q.Sampling.Seed; sd <= math.MaxInt64 {
		a = append(a, attribute.Int64(attrSeed, int64(sd)))
	} else {
		a = append(a, attribute.String("specd.seed", strconv.FormatUint(sd, 10)))
	}
	if m := req.GetModel(); m != "" {
		a = append(a, attribute.String(attrRequestModel, m))
	}
	if q.MaxTokens > 0 {
		a = append(a, attribute.Int(attrMaxTokens, q.MaxTokens))
	}
	if q.Sampling.TopK > 0 {
		a = append(a, attribute.Int(attrTopK, q.Sampling.TopK))
	}
	if q.Gamma > 0 {
		a = append(a, attribute.Int("specd.gamma", q.Gamma))
	}
	if q.MaxGamma > 0 {
		a = append(a, attribute.Int("specd.max_gamma", q.MaxGamma))
	}
	return a
}

// resultAttributes are how a request ended, for its span: the gen_ai.response.* and
// gen_ai.usage.* attributes, error.type (the gRPC code) when it failed, and specd's
// speculation counts — from the final stats, or the verifiers' progress when the
// request ended without them.
// A request refused before routing (res nil) has error.type alone.
func resultAttributes(res *router.Result, model string, code codes.Code) []attribute.KeyValue {
	var a []attribute.KeyValue
	if code != codes.OK {
		a = append(a, attribute.String(attrErrorType, codeName(code)))
	}
	if res == nil {
		return a
	}
	if model != "" {
		a = append(a, attribute.String(attrResponseModel, model))
	}
	f := res.Final
	if f == nil {
		p := res.Progress()
		return append(a,
			attribute.Int(attrOutputTokens, len(res.IDs)),
			attribute.Int("specd.drafted_tokens", p.DraftedTokens),
			attribute.Int("specd.accepted_tokens", p.AcceptedTokens),
			attribute.Int("specd.lookup_tokens", p.LookupTokens),
			attribute.Int("specd.lookup_accepted_tokens", p.LookupAcceptedTokens))
	}
	st := f.Stats
	a = append(a,
		attribute.StringSlice(attrFinishReasons, []string{finishReason(f.Reason)}),
		attribute.Int(attrInputTokens, st.PromptTokens),
		attribute.Int(attrOutputTokens, st.CompletionTokens),
		attribute.Int("specd.cached_prompt_tokens", st.CachedPromptTokens),
		attribute.Int("specd.rounds", st.Rounds),
		attribute.Int("specd.drafted_tokens", st.DraftedTokens),
		attribute.Int("specd.accepted_tokens", st.AcceptedTokens),
		attribute.Int("specd.lookup_tokens", st.LookupTokens),
		attribute.Int("specd.lookup_accepted_tokens", st.LookupAcceptedTokens),
		attribute.Int("specd.failovers", st.Failovers),
		attribute.Int("specd.fallbacks", st.Fallbacks),
		attribute.Int("specd.draft_refusals", st.DraftRefusals),
		attribute.String("specd.verifier.address", st.Verifier.Address),
		attribute.String("specd.verifier.model", st.Verifier.Model),
		attribute.Float64("specd.queue_wait_seconds", st.QueueWait.Seconds()),
		attribute.Float64("specd.time_to_first_token_seconds", st.TimeToFirstToken.Seconds()),
	)
	if st.DraftedTokens > 0 {
		a = append(a, attribute.Float64("specd.acceptance_rate", float64(st.AcceptanceRate)))
	}
	if st.MeanRoundTrip > 0 {
		a = append(a, attribute.Float64("specd.mean_round_trip_seconds", st.MeanRoundTrip.Seconds()))
	}
	if st.Draft.Address != "" {
		a = append(a, attribute.String("specd.draft.address", st.Draft.Address), attribute.String("specd.draft.model", st.Draft.Model))
	}
	switch {
	case st.Mode.Greedy:
		a = append(a, attribute.String("specd.verification_mode", "greedy"))
	case st.Mode.Mode != 0:
		a = append(a, attribute.String("specd.verification_mode", st.Mode.Mode.String()))
	}
	return a
}

// recordGenAI puts a finished request on its span and in the gen_ai.server.*
// metrics. op is its gen_ai.operation.name; requestModel is the model it named, if
// one a verifier serves (a refused request's name could be anything: it must not
// become a series); t0, first and end are its arrival, first token (zero: none) and
// end on the router's clock; res is nil for a request refused before routing; model is
// the last verifier's, the response model once it has sent something.
func (s *Server) recordGenAI(ctx context.Context, op, requestModel string, res *router.Result, model string, code codes.Code, t0, first, end time.Time) {
	if res == nil || (res.Final == nil && len(res.IDs) == 0) {
		model = "" // no verifier answered: a refusal (at capacity, say) has no response model
	}
	trace.SpanFromContext(ctx).SetAttributes(resultAttributes(res, model, code)...)
	r := telemetry.ServerRequest{Operation: op, Provider: Provider, RequestModel: requestModel, ResponseModel: model, Duration: end.Sub(t0)}
	if code != codes.OK {
		r.ErrorType = codeName(code)
	}
	if !first.IsZero() && code == codes.OK {
		r.TimeToFirstToken = first.Sub(t0)
		if res != nil && len(res.IDs) > 1 {
			r.TimePerOutputToken = end.Sub(first) / time.Duration(len(res.IDs)-1)
		}
	}
	s.metrics().RecordServerRequest(ctx, r)
}
