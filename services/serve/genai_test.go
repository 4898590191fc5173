package serve_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestRequestSpanGenAI: the router's request span carries the OpenTelemetry GenAI
// semantic conventions' attributes (operation, provider, request parameters, finish
// reasons, response model, token usage) and specd's speculation counts, for a
// streamed and a whole request, a chat over HTTP and a refused one; no prompt or
// completion text is on any span. The gen_ai.server.* metrics count them.
func TestRequestSpanGenAI(t *testing.T) {
	rtel, rspans := recordSpans(t, "specd-router")
	tmpl, _ := qwen3Template(t)
	s := startStackWith(t, stackOptions{rtel: rtel, http: true, chat: tmpl})
	const prompt = "Once upon a time"
	ctx := context.Background()
	type want map[string]string // attribute → value ("*": any value, "-": absent)
	for _, tc := range []struct {
		name  string
		run   func(t *testing.T)
		span  string // the router's server span
		attrs want
	}{
		{"Generate", func(t *testing.T) {
			// The counts are there whether or not the draft kept up (under -race on a
			// busy machine it may propose nothing in time); their values are the
			// final stats', which TestRecordGenAIAttributes checks.
			if _, err := s.generate(ctx, request(prompt, 24, 0, 7, 4)); err != nil {
				t.Fatal(err)
			}
		}, spanRouterGenerate, want{
			"gen_ai.operation.name": "text_completion", "gen_ai.provider.name": "specd", "gen_ai.request.max_tokens": "24",
			"gen_ai.request.temperature": "0", "gen_ai.request.seed": "7", "gen_ai.response.model": "specd-target",
			"gen_ai.response.finish_reasons": `["length"]`, "gen_ai.usage.input_tokens": "5", "gen_ai.usage.output_tokens": "24",
			"gen_ai.request.model": "-", "error.type": "-",
			"specd.gamma": "4", "specd.rounds": "*", "specd.drafted_tokens": "*", "specd.accepted_tokens": "*", "specd.cached_prompt_tokens": "*",
			"specd.failovers": "0", "specd.verifier.address": s.verifier, "specd.verifier.model": "specd-target",
			"specd.verification_mode": "greedy", "specd.speculation": "true",
		}},
		{"Complete", func(t *testing.T) {
			req := request(prompt, 8, 0.8, 3, 0)
			req.Model = "specd-target"
			topP := float32(0.9)
			req.Sampling.TopK, req.Sampling.TopP = 40, &topP
			if _, err := s.client.Complete(ctx, req); err != nil {
				t.Fatal(err)
			}
		}, "specd.v1.GenerationService/Complete", want{
			"gen_ai.operation.name": "text_completion", "gen_ai.request.model": "specd-target", "gen_ai.request.top_k": "40",
			"gen_ai.request.top_p": "0.9", "gen_ai.request.seed": "3", "gen_ai.usage.output_tokens": "8", "specd.gamma": "-",
		}},
		{"HTTP chat", func(t *testing.T) {
			body := `{"model":"specd-target","messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":6,"temperature":0}`
			resp, err := http.Post(s.http+"/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("chat: %s %s", resp.Status, b)
			}
		}, spanRouterGenerate, want{
			"gen_ai.operation.name": "chat", "gen_ai.request.model": "specd-target", "gen_ai.usage.output_tokens": "*",
			"gen_ai.usage.input_tokens": "*", "gen_ai.response.finish_reasons": "*",
		}},
		{"refused", func(t *testing.T) {
			r := request(prompt, 8, 0, 0, 0)
			r.Sampling.Temperature = -1
			if _, err := s.generate(ctx, r); err == nil {
				t.Fatal("a negative temperature was accepted")
			}
		}, spanRouterGenerate, want{
			"gen_ai.operation.name": "text_completion", "gen_ai.provider.name": "specd", "error.type": "INVALID_ARGUMENT",
			"gen_ai.response.model": "-", "gen_ai.usage.output_tokens": "-",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rspans.Reset()
			tc.run(t)
			sp := waitSpan(t, rspans, func(sp sdktrace.ReadOnlySpan) bool {
				return sp.SpanKind() == trace.SpanKindServer && sp.Name() == tc.span && attr(sp, "gen_ai.operation.name") != ""
			})
			if sp == nil {
				t.Fatalf("no server span %s with gen_ai attributes among %v", tc.span, spanNames(rspans.Ended()))
			}
			for k, v := range tc.attrs {
				got := attr(sp, k)
				switch {
				case v == "-" && got != "":
					t.Errorf("%s = %q, want it absent", k, got)
				case v == "*" && got == "":
					t.Errorf("%s absent", k)
				case v != "-" && v != "*" && got != v:
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, s := range rspans.Ended() {
				for _, kv := range s.Attributes() {
					if v := kv.Value.Emit(); strings.Contains(v, prompt) || strings.Contains(v, "Tell me a story") {
						t.Errorf("span %s attribute %s holds the prompt: %q", s.Name(), kv.Key, v)
					}
				}
			}
		})
	}

	rec := httptest.NewRecorder()
	rtel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	metrics := rec.Body.String()

	// Scraped as OpenMetrics (as Prometheus does), the histograms carry exemplars
	// naming a request's trace, for Grafana's link from a latency to its trace.
	om := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	rtel.MetricsHandler().ServeHTTP(om, req)
	traces := map[string]bool{}
	for _, sp := range rspans.Ended() {
		traces[sp.SpanContext().TraceID().String()] = true
	}
	linked := false
	for _, l := range strings.Split(om.Body.String(), "\n") {
		if !strings.HasPrefix(l, "gen_ai_server_request_duration_seconds_bucket") {
			continue
		}
		if _, ex, ok := strings.Cut(l, `trace_id="`); ok && len(ex) >= 32 && traces[ex[:32]] {
			linked = true
		}
	}
	if !linked {
		t.Errorf("no gen_ai_server_request_duration_seconds bucket has an exemplar of a request's trace:\n%s", grepLines(om.Body.String(), "gen_ai_server_request_duration_seconds_bucket"))
	}
	for _, w := range []string{
		`gen_ai_server_request_duration_seconds_count{error_type="INVALID_ARGUMENT",gen_ai_operation_name="text_completion",gen_ai_provider_name="specd"} 1`,
		`gen_ai_server_request_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="specd",gen_ai_request_model="specd-target",gen_ai_response_model="specd-target"} 1`,
		`gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name="text_completion",gen_ai_provider_name="specd",gen_ai_response_model="specd-target"} 1`,
		`gen_ai_server_time_per_output_token_seconds_count{gen_ai_operation_name="text_completion",gen_ai_provider_name="specd",gen_ai_request_model="specd-target",gen_ai_response_model="specd-target"} 1`,
	} {
		if !strings.Contains(metrics, w) {
			t.Errorf("/metrics has no line %s; gen_ai lines:\n%s", w, grepLines(metrics, "gen_ai_server"))
		}
	}
}
