package serve_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestHTTPRequestIsOneTrace: a request to the HTTP front door is one trace whose root
// is an HTTP server span named "{method} {route}", with every gRPC call the front door
// makes for it (the n choices' streams, Ollama's Tokenize before its Generate) under
// it. Before the front door had a span of its own, each of those calls was the root
// of a trace of its own: one HTTP request with n = 2 was two traces in Jaeger, and an
// Ollama generate with a context two. A client's W3C traceparent continues into it:
// the HTTP span is the child of the client's span, in the client's trace.
func TestHTTPRequestIsOneTrace(t *testing.T) {
	rtel, rspans := recordSpans(t, "specd-router")
	s := startStackWith(t, stackOptions{rtel: rtel, http: true})
	const clientTrace, clientSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	for _, tc := range []struct {
		name, path, body string
		traceparent      bool
		route            string // the span's http.route
		calls            int    // gRPC Generate calls (client spans) the request makes, at least
	}{
		{"openai n=2", "/v1/completions", `{"prompt":"Once upon a time","max_tokens":4,"n":2,"temperature":0}`, false, "/v1/completions", 2},
		{"openai stream n=2", "/v1/completions", `{"prompt":"Once upon a time","max_tokens":4,"n":2,"temperature":0,"stream":true}`, false, "/v1/completions", 2},
		{"openai traceparent", "/v1/completions", `{"prompt":"Once upon a time","max_tokens":4}`, true, "/v1/completions", 1},
		{"ollama context", "/api/generate", `{"model":"specd-target","prompt":"Once","context":[1,2],"stream":false,"options":{"temperature":0,"num_predict":4}}`, false, "/api/generate", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now() // spans of earlier cases, ending late, started before
			req, err := http.NewRequest(http.MethodPost, strings.TrimSuffix(s.http, "/v1")+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.traceparent {
				req.Header.Set("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST %s = %s %s", tc.path, resp.Status, body)
			}
			mine := func(sp sdktrace.ReadOnlySpan) bool { return !sp.StartTime().Before(start) }
			root := waitSpan(t, rspans, func(sp sdktrace.ReadOnlySpan) bool {
				return mine(sp) && sp.SpanKind() == trace.SpanKindServer && sp.Name() == "POST "+tc.route
			})
			if root == nil {
				t.Fatalf("no HTTP server span POST %s among %v", tc.route, spanNames(rspans.Ended()))
			}
			if got, want := attr(root, "http.route"), tc.route; got != want {
				t.Errorf("http.route = %q, want %q", got, want)
			}
			if strings.HasPrefix(tc.path, "/v1/") {
				// The id the client got finds the trace.
				id := attr(root, "gen_ai.response.id")
				if !strings.HasPrefix(id, "cmpl-") || !strings.Contains(string(body), `"id":"`+id+`"`) {
					t.Errorf("gen_ai.response.id = %q, want the response's id (body %.200s)", id, body)
				}
			}
			if got := attr(root, "http.response.status_code"); got != "200" {
				t.Errorf("http.response.status_code = %q, want 200", got)
			}
			if tc.traceparent {
				if got := root.SpanContext().TraceID().String(); got != clientTrace {
					t.Errorf("HTTP span's trace = %s, want the client's %s", got, clientTrace)
				}
				if got := root.Parent().SpanID().String(); got != clientSpan || !root.Parent().IsRemote() {
					t.Errorf("HTTP span's parent = %s (remote %v), want the client's span %s", got, root.Parent().IsRemote(), clientSpan)
				}
			} else if root.Parent().IsValid() {
				t.Errorf("HTTP span has parent %s, want none", root.Parent().SpanID())
			}
			isCall := func(sp sdktrace.ReadOnlySpan) bool {
				return mine(sp) && sp.SpanKind() == trace.SpanKindClient && sp.Name() == spanRouterGenerate
			}
			// The client spans end with their streams, which may be just after the handler.
			waitSpans(t, rspans, tc.calls, isCall)
			calls := 0
			for _, sp := range rspans.Ended() {
				if !mine(sp) {
					continue
				}
				if sp.SpanContext().TraceID() != root.SpanContext().TraceID() {
					t.Errorf("span %v %s is in trace %s, not the request's %s", sp.SpanKind(), sp.Name(), sp.SpanContext().TraceID(), root.SpanContext().TraceID())
				}
				if isCall(sp) {
					calls++
					if sp.Parent().SpanID() != root.SpanContext().SpanID() {
						t.Errorf("front door's client span %s has parent %s, want the HTTP span %s", sp.Name(), sp.Parent().SpanID(), root.SpanContext().SpanID())
					}
				}
			}
			if calls < tc.calls {
				t.Errorf("%d client spans %s in the trace, want %d", calls, spanRouterGenerate, tc.calls)
			}
		})
	}
}

// TestHTTPPollsAreNotTraced: GET /health (a load balancer's or kubelet's probe) and
// Ollama's probe of / make no spans, as gRPC health checks make none.
func TestHTTPPollsAreNotTraced(t *testing.T) {
	rtel, rspans := recordSpans(t, "specd-router")
	s := startStackWith(t, stackOptions{rtel: rtel, http: true})
	base := strings.TrimSuffix(s.http, "/v1")
	for _, p := range []string{"/health", "/"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// A traced request after the polls: once its span has ended, the polls' would have.
	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if waitSpan(t, rspans, func(sp sdktrace.ReadOnlySpan) bool { return sp.Name() == "GET /v1/models" }) == nil {
		t.Fatalf("no span GET /v1/models among %v: the front door is not traced, the test checks nothing", spanNames(rspans.Ended()))
	}
	for _, sp := range rspans.Ended() {
		if r := attr(sp, "http.route"); r == "/health" || r == "/" || sp.Name() == "GET /health" || sp.Name() == "GET /" {
			t.Errorf("span %s: a probe was traced", sp.Name())
		}
	}
}

// waitSpan waits (5 s at most) for an ended span that match accepts.
func waitSpan(t *testing.T, rec *tracetest.SpanRecorder, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	if got := waitSpans(t, rec, 1, match); len(got) > 0 {
		return got[0]
	}
	return nil
}

// waitSpans waits (5 s at most) for n ended spans that match accepts and returns those
// there are.
func waitSpans(t *testing.T, rec *tracetest.SpanRecorder, n int, match func(sdktrace.ReadOnlySpan) bool) []sdktrace.ReadOnlySpan {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		var got []sdktrace.ReadOnlySpan
		for _, sp := range rec.Ended() {
			if match(sp) {
				got = append(got, sp)
			}
		}
		if len(got) >= n {
			return got
		}
		select {
		case <-ctx.Done():
			return got
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// attr is a span attribute's value as text ("" when absent).
func attr(sp sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// spanNames lists spans as "kind name", for failure messages.
func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, sp := range spans {
		out = append(out, sp.SpanKind().String()+" "+sp.Name())
	}
	return out
}
