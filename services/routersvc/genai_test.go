package routersvc

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/router"
)

// TestRecordGenAIAttributes: how a request ended, as its span shows it — a refusal
// before routing has error.type alone; one that no verifier answered (all at
// capacity) names no response model; a finished one has the conventions' response and
// usage attributes and specd's counts.
func TestRecordGenAIAttributes(t *testing.T) {
	t0 := time.Now()
	finished := &router.Result{IDs: []int32{1, 2, 3}, Final: &router.Final{Reason: generate.EOS, Stats: router.Stats{
		PromptTokens: 5, CompletionTokens: 3, CachedPromptTokens: 2, Rounds: 2, DraftedTokens: 6, AcceptedTokens: 3, AcceptanceRate: 0.5,
		Failovers: 1, Verifier: router.Served{Address: "v:1", Model: "big"}, Draft: router.Served{Address: "d:1", Model: "small"},
		Mode: router.Verification{Greedy: true},
	}}}
	for _, tc := range []struct {
		name  string
		res   *router.Result
		code  codes.Code
		attrs map[string]string // "-": absent
	}{
		{"refused", nil, codes.InvalidArgument, map[string]string{"error.type": "INVALID_ARGUMENT", "gen_ai.response.model": "-", "gen_ai.usage.output_tokens": "-", "specd.drafted_tokens": "-"}},
		{"at capacity", &router.Result{}, codes.ResourceExhausted, map[string]string{"error.type": "RESOURCE_EXHAUSTED", "gen_ai.response.model": "-", "gen_ai.usage.output_tokens": "0"}},
		{"finished", finished, codes.OK, map[string]string{
			"error.type": "-", "gen_ai.response.model": "big", "gen_ai.response.finish_reasons": `["stop"]`,
			"gen_ai.usage.input_tokens": "5", "gen_ai.usage.output_tokens": "3", "specd.cached_prompt_tokens": "2", "specd.rounds": "2",
			"specd.drafted_tokens": "6", "specd.accepted_tokens": "3", "specd.acceptance_rate": "0.5", "specd.failovers": "1",
			"specd.verifier.address": "v:1", "specd.draft.model": "small", "specd.verification_mode": "greedy",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			defer tp.Shutdown(context.Background())
			ctx, span := tp.Tracer("test").Start(context.Background(), "request")
			(&Server{}).recordGenAI(ctx, "text_completion", "", tc.res, "big", tc.code, t0, t0.Add(time.Millisecond), t0.Add(2*time.Millisecond))
			span.End()
			got := map[string]string{}
			for _, kv := range rec.Ended()[0].Attributes() {
				got[string(kv.Key)] = kv.Value.Emit()
			}
			for k, want := range tc.attrs {
				if v, ok := got[k]; want == "-" && ok || want != "-" && v != want {
					t.Errorf("%s = %q (set %v), want %q", k, v, ok, want)
				}
			}
		})
	}
}
