package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/specd-dev/specd/services/telemetry"
)

// TestHTTPHandlerSpans: the front door's server span is named by the innermost
// ServeMux pattern that served the request, carries its status, and is an error only
// for a 5xx answer (HTTP server conventions: a 4xx is the client's mistake); probes
// make none.
func TestHTTPHandlerSpans(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, telemetry.Config{Service: "specd-router", Log: io.Discard})
	rec := tracetest.NewSpanRecorder()
	tel.TracerProvider.RegisterSpanProcessor(rec)
	inner := http.NewServeMux()
	inner.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) {
		if !trace.SpanContextFromContext(r.Context()).IsValid() {
			t.Error("the handler's context has no span")
		}
		io.WriteString(w, "{}")
	})
	inner.HandleFunc("POST /v1/fail", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	inner.HandleFunc("POST /v1/bad", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) })
	inner.HandleFunc("GET /health", func(http.ResponseWriter, *http.Request) {})
	outer := http.NewServeMux()
	outer.Handle("/", inner)
	outer.HandleFunc("GET /{$}", func(http.ResponseWriter, *http.Request) {})
	srv := httptest.NewServer(tel.HTTPHandler(outer))
	defer srv.Close()

	for _, tc := range []struct {
		method, path string
		name         string // the span's name; "" for no span
		code         string
		err          bool
	}{
		{"POST", "/v1/completions", "POST /v1/completions", "200", false},
		{"POST", "/v1/fail", "POST /v1/fail", "503", true},
		{"POST", "/v1/bad", "POST /v1/bad", "400", false},
		{"GET", "/v1/nothing", "GET", "404", false},         // no route matched: the method alone
		{"FOOBAR", "/v1/completions", "HTTP", "405", false}, // a method of the client's own: _OTHER
		{"GET", "/health", "", "", false},
		{"GET", "/", "", "", false},
	} {
		rec.Reset()
		req, _ := http.NewRequestWithContext(context.Background(), tc.method, srv.URL+tc.path, nil)
		req.Header.Set("User-Agent", strings.Repeat("é", 1000))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		spans := rec.Ended()
		if tc.name == "" {
			if len(spans) != 0 {
				t.Errorf("%s %s: %d spans, want none (a probe)", tc.method, tc.path, len(spans))
			}
			continue
		}
		if len(spans) != 1 {
			t.Errorf("%s %s: %d spans, want 1", tc.method, tc.path, len(spans))
			continue
		}
		sp := spans[0]
		got := map[string]string{}
		for _, kv := range sp.Attributes() {
			got[string(kv.Key)] = kv.Value.Emit()
		}
		if sp.Name() != tc.name || sp.SpanKind() != trace.SpanKindServer {
			t.Errorf("%s %s: span %v %q, want server %q", tc.method, tc.path, sp.SpanKind(), sp.Name(), tc.name)
		}
		method := tc.method
		if method == "FOOBAR" {
			method = "_OTHER"
		}
		if got["http.response.status_code"] != tc.code || got["http.request.method"] != method || got["url.path"] != tc.path {
			t.Errorf("%s %s: attributes %v, want status %s", tc.method, tc.path, got, tc.code)
		}
		if ua := got["user_agent.original"]; len(ua) > 256 || !utf8.ValidString(ua) || ua == "" {
			t.Errorf("%s %s: user_agent.original of %d bytes (valid UTF-8 %v), want it cut to at most 256", tc.method, tc.path, len(ua), utf8.ValidString(ua))
		}
		if isErr := sp.Status().Code == codes.Error; isErr != tc.err {
			t.Errorf("%s %s: status %v, want error %v", tc.method, tc.path, sp.Status(), tc.err)
		}
	}
}
