package telemetry

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HTTPHandler gives each request to h (an HTTP front door) a server span, so that one
// HTTP request is one trace however many gRPC calls it makes (the n choices of a
// completion, Ollama's Tokenize before its Generate): its root, or the child of the
// caller's span when the request carries a W3C traceparent (and baggage). The span
// follows the HTTP server conventions: named "{method} {http.route}" (the pattern of
// the net/http.ServeMux that served it, so names stay few whatever the paths; a method
// not in RFC 9110 is _OTHER, named HTTP), with http.request.method, http.route,
// url.path, url.scheme, http.response.status_code, client.address and
// user_agent.original (the client's strings cut to 256 bytes); an error only for a
// 5xx answer (a 4xx is the client's mistake, not the server's). Probes — GET /health
// and GET / — make no span, as gRPC health checks make none. A nil Telemetry returns h.
func (t *Telemetry) HTTPHandler(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/health" || r.URL.Path == "/") {
			h.ServeHTTP(w, r)
			return
		}
		ctx := t.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		method, name := r.Method, r.Method
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
			http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		default: // a client's own method must not become span names
			method, name = "_OTHER", "HTTP"
		}
		attrs := []attribute.KeyValue{
			attribute.String("http.request.method", method),
			attribute.String("url.path", clip(r.URL.Path)),
			attribute.String("url.scheme", scheme),
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			attrs = append(attrs, attribute.String("client.address", host))
		}
		if ua := r.UserAgent(); ua != "" {
			attrs = append(attrs, attribute.String("user_agent.original", clip(ua)))
		}
		ctx, span := t.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w}
		r = r.WithContext(ctx)
		h.ServeHTTP(sw, r)
		// Each ServeMux on the way set r.Pattern, the innermost last: the route.
		if route := patternPath(r.Pattern); route != "" {
			span.SetName(name + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
		code := sw.code
		if code == 0 {
			code = http.StatusOK // nothing written: net/http answers 200
		}
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(code)))
			span.SetStatus(codes.Error, http.StatusText(code))
		}
	})
}

// maxHTTPAttr bounds the client-chosen strings put on a span (a path, a user agent):
// a header may be up to a megabyte, and every exported span would carry it.
const maxHTTPAttr = 256

// clip cuts s to maxHTTPAttr bytes, on a UTF-8 boundary.
func clip(s string) string {
	if len(s) <= maxHTTPAttr {
		return s
	}
	return strings.ToValidUTF8(s[:maxHTTPAttr], "")
}

// patternPath is the path of a ServeMux pattern: "POST /v1/completions" →
// "/v1/completions", "/api/" → "/api/", "GET /{$}" → "/".
func patternPath(p string) string {
	if i := strings.IndexByte(p, ' '); i >= 0 {
		p = p[i+1:]
	}
	if i := strings.IndexByte(p, '/'); i > 0 { // a host before the path
		p = p[i:]
	}
	return strings.TrimSuffix(p, "{$}")
}

// statusWriter records the status code of an answer. Flushes and write deadlines
// reach the server's writer through Unwrap (http.ResponseController).
type statusWriter struct {
	http.ResponseWriter
	code int // 0 until the header is written
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 { // 1xx answers are informational, not the status
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
