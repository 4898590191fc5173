package serve_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/specd-dev/specd/services/telemetry"
)

// recordSpans sets up a service's telemetry with an in-memory span recorder.
func recordSpans(t *testing.T, service string) (*telemetry.Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: service, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	tel.TracerProvider.RegisterSpanProcessor(spans)
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	return tel, spans
}

// TestHealthySpansAreNotErrors: a successful speculative request leaves no span in
// error — in particular the router's client span to the verifier and the verifier's
// client span to the draft end with the streams' own OK status, not CANCELLED (they
// used to be cancelled after the last message instead of closed).
func TestHealthySpansAreNotErrors(t *testing.T) {
	rtel, rspans := recordSpans(t, "specd-router")
	vtel, vspans := recordSpans(t, "specd-verifier")
	s := startStackWith(t, stackOptions{rtel: rtel, vtel: vtel})
	// Long enough that a draft slowed by a busy machine still gets tokens checked.
	r, err := s.generate(context.Background(), request("Once upon a time", 96, 0, 0, 4))
	if err != nil {
		t.Fatal(err)
	}
	if r.final.GetStats().GetDraftedTokens() == 0 {
		t.Fatal("no token drafted: the verifier's draft stream went untested")
	}
	// The client spans end when their streams do, just around the final message.
	want := []struct {
		spans *tracetest.SpanRecorder
		name  string
		kind  trace.SpanKind
	}{
		{rspans, spanRouterGenerate, trace.SpanKindServer},
		{rspans, spanVerifierGenerate, trace.SpanKindClient},
		{vspans, spanVerifierGenerate, trace.SpanKindServer},
		{vspans, spanDraftSpeculate, trace.SpanKindClient},
	}
	find := func(rec *tracetest.SpanRecorder, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
		for _, sp := range rec.Ended() {
			if sp.Name() == name && sp.SpanKind() == kind {
				return sp
			}
		}
		return nil
	}
	for _, w := range want {
		var sp sdktrace.ReadOnlySpan
		for deadline := time.Now().Add(5 * time.Second); sp == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			sp = find(w.spans, w.name, w.kind)
		}
		if sp == nil {
			t.Errorf("no %v span %s ended", w.kind, w.name)
		}
	}
	for _, rec := range []*tracetest.SpanRecorder{rspans, vspans} {
		for _, sp := range rec.Ended() {
			if st := sp.Status(); st.Code == codes.Error {
				t.Errorf("%v span %s of a successful request: status %v %q, want not an error", sp.SpanKind(), sp.Name(), st.Code, st.Description)
			}
		}
	}
}

// TestInfoPollsAreNotTraced: the router asks every static endpoint for its Info every
// 2 s, and a verifier asks a draft once for its model's name; like health checks,
// those polls make no spans. They made two traces of their own every 2 s on an idle
// specd up with an OTLP endpoint set, crowding the requests' traces out of a trace
// viewer's list.
func TestInfoPollsAreNotTraced(t *testing.T) {
	rtel, rspans := recordSpans(t, "specd-router")
	vtel, vspans := recordSpans(t, "specd-verifier")
	s := startStackWith(t, stackOptions{rtel: rtel, vtel: vtel})
	if _, err := s.generate(context.Background(), request("Once upon a time", 32, 0, 0, 4)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		names = names[:0]
		for _, rec := range []*tracetest.SpanRecorder{rspans, vspans} {
			for _, sp := range rec.Ended() {
				names = append(names, sp.Name())
			}
		}
		if slices.Contains(names, spanVerifierGenerate) && slices.Contains(names, spanRouterGenerate) {
			break
		}
	}
	if !slices.Contains(names, spanRouterGenerate) {
		t.Fatalf("no %s span among %q: tracing is off, the test checks nothing", spanRouterGenerate, names)
	}
	for _, n := range names {
		if strings.HasSuffix(n, "/Info") {
			t.Errorf("span %s: an Info poll was traced (spans %q)", n, names)
		}
	}
}
