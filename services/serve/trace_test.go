package serve_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
)

// The span names of the trace contract: otelgrpc names RPC spans by full method;
// the verifier names one span per speculation round.
const (
	spanRouterGenerate   = "specd.v1.GenerationService/Generate"
	spanVerifierGenerate = "specd.speculation.v1.VerifierService/Generate"
	spanDraftSpeculate   = "specd.speculation.v1.DraftService/Speculate"
	spanRound            = "speculation.round"
)

// requestTags are tags the router's request span carries for TestTraceAcrossServices's
// request (GenAI conventions and specd's counts): a value, or nil for any.
var requestTags = map[string]any{
	"gen_ai.operation.name": "text_completion", "gen_ai.provider.name": "specd", "gen_ai.request.max_tokens": float64(96),
	"gen_ai.request.temperature": float64(0), "gen_ai.request.seed": float64(1), "gen_ai.usage.output_tokens": float64(96),
	"gen_ai.usage.input_tokens": nil, "gen_ai.response.model": nil, "gen_ai.response.finish_reasons": nil,
	"specd.gamma": float64(4), "specd.rounds": nil, "specd.drafted_tokens": nil, "specd.accepted_tokens": nil,
	"specd.cached_prompt_tokens": nil, "specd.failovers": float64(0), "specd.verifier.address": nil, "specd.draft.address": nil,
}

// checkRequestTags checks the router's request span's tags against requestTags.
func checkRequestTags(t *testing.T, rs traceSpan) {
	t.Helper()
	for k, want := range requestTags {
		got, ok := rs.tag(k)
		switch {
		case !ok:
			t.Errorf("router span has no tag %s", k)
		case want != nil && got != want:
			t.Errorf("router span: %s = %v (%T), want %v", k, got, got, want)
		}
	}
}

// roundAttrs are the attributes every speculation.round span carries.
var roundAttrs = []string{"specd.round", "specd.gamma", "specd.accepted", "specd.drafted", "specd.round_trip_seconds", "specd.drafting_seconds", "specd.verifier.model", "specd.draft.model"}

// TestTraceAcrossServices runs router, verifier and draft as separate `specd`
// processes exporting over OTLP to a real Jaeger (the router over http/protobuf, the
// others over gRPC), sends one gRPC request and one HTTP request continuing a client's
// trace (checkHTTPTrace), stops the services (which flushes their spans), and checks
// in Jaeger's query API that the gRPC request is one trace:
//
//	specd-router   server specd.v1.GenerationService/Generate (with gen_ai.* and specd.* tags)
//	specd-router   client   specd.speculation.v1.VerifierService/Generate
//	specd-verifier server     specd.speculation.v1.VerifierService/Generate
//	specd-verifier              speculation.round … (one per round, with its attributes)
//	specd-verifier client       specd.speculation.v1.DraftService/Speculate
//	specd-draft    server         specd.speculation.v1.DraftService/Speculate
//
// Jaeger comes from tools/jaeger (see traceJaegerBinary); SPECD_SKIP_JAEGER=1 skips.
func TestTraceAcrossServices(t *testing.T) {
	j := traceStartJaeger(t)
	bin := specdBinary(t)
	grpcEnv := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.otlpGRPC, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_BSP_SCHEDULE_DELAY=200"}
	httpEnv := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.otlpHTTP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_BSP_SCHEDULE_DELAY=200"}

	draftAddr, verifierAddr, routerAddr := freePort(t), freePort(t), freePort(t)
	draft := traceStart(t, "specd draft", grpcEnv, bin, "draft", "--listen", draftAddr, "-m", "specd-draft-q8_0", "--threads", "1", "--log-format", "text")
	verifier := traceStart(t, "specd verifier", grpcEnv, bin, "verifier", "--listen", verifierAddr, "--drafts", draftAddr, "-m", "specd-target-q8_0", "--threads", "1", "--log-format", "text")
	traceWaitServing(t, draft, draftAddr)
	traceWaitServing(t, verifier, verifierAddr)
	httpAddr := freePort(t)
	router := traceStart(t, "specd router", httpEnv, bin, "router", "--listen", routerAddr, "--verifiers", verifierAddr, "--drafts", draftAddr, "--refresh", "200ms", "--log-format", "text",
		"--http-listen", httpAddr)

	cc, err := services.Dial(routerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := specdv1.NewGenerationServiceClient(cc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.ListModels(context.Background(), &specdv1.ListModelsRequest{})
		if err == nil && len(resp.GetModels()) == 2 {
			break
		}
		if router.exited() || time.Now().After(deadline) {
			t.Fatalf("router never listed both models: %v %v", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// One greedy request with speculation on: several rounds of γ = 4. Long enough that
	// a draft slowed by a busy machine still gets rounds checked: with 24 tokens, under
	// CI's parallel packages, the verifier once finished before any proposal came.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seed := uint64(1)
	st, err := client.Generate(ctx, &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 96,
		Sampling: &specdv1.SamplingParams{Temperature: 0, Seed: &seed}, Speculation: &specdv1.SpeculationOptions{Gamma: 4}})
	if err != nil {
		t.Fatal(err)
	}
	var final *specdv1.Final
	for final == nil {
		msg, err := st.Recv()
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		final = msg.GetFinal()
	}
	cc.Close()

	// One request over HTTP from a client with a trace of its own (a W3C traceparent).
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/completions",
		strings.NewReader(`{"prompt":"Once upon a time","max_tokens":8,"temperature":0}`))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("traceparent", "00-"+traceHTTPClientTrace+"-"+traceHTTPClientSpan+"-01")
	hresp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	hbody, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/completions: %s %s", hresp.Status, hbody)
	}

	// Stopping a service flushes its spans (Telemetry.Shutdown after the server stops).
	for _, p := range []*traceProc{router, verifier, draft} {
		if err := p.stop(30 * time.Second); err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
	}

	tr := traceWaitTrace(t, j)
	checkTraceShape(t, tr)
	t.Log(tr.describe())
	checkHTTPTrace(t, j)
}

// The client's trace and span of TestTraceAcrossServices's HTTP request.
const (
	traceHTTPClientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceHTTPClientSpan  = "00f067aa0ba902b7"
)

// checkHTTPTrace checks the HTTP request's trace: the client's trace, continued by the
// front door's server span (a child of the client's span, which Jaeger never got),
// with under it the front door's client span, the router's server span and the
// verifier's.
//
//	specd-router   server POST /v1/completions (parent: the client's span)
//	specd-router   client   specd.v1.GenerationService/Generate
//	specd-router   server     specd.v1.GenerationService/Generate
//	specd-router   client       specd.speculation.v1.VerifierService/Generate
//	specd-verifier server         specd.speculation.v1.VerifierService/Generate
func checkHTTPTrace(t *testing.T, j *traceJaeger) {
	t.Helper()
	var tr traceTrace
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		tr, err = j.trace(context.Background(), traceHTTPClientTrace)
		if err == nil && len(tr.find("specd-verifier", spanVerifierGenerate, "server")) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTP request's trace %s never reached Jaeger whole: %v %s", traceHTTPClientTrace, err, tr.describe())
		}
		time.Sleep(250 * time.Millisecond)
	}
	defer func() {
		if t.Failed() {
			t.Log(tr.describe())
		}
	}()
	hs := tr.find("specd-router", "POST /v1/completions", "server")
	if len(hs) != 1 {
		t.Fatalf("%d specd-router server spans POST /v1/completions, want 1", len(hs))
	}
	if p := hs[0].parent(); p != traceHTTPClientSpan {
		t.Errorf("HTTP span's parent = %q, want the client's span %s", p, traceHTTPClientSpan)
	}
	if v, _ := hs[0].tag("http.response.status_code"); v != float64(200) {
		t.Errorf("HTTP span: http.response.status_code = %v, want 200", v)
	}
	parent := hs[0]
	for _, step := range []struct{ service, name, kind string }{
		{"specd-router", spanRouterGenerate, "client"},
		{"specd-router", spanRouterGenerate, "server"},
		{"specd-router", spanVerifierGenerate, "client"},
		{"specd-verifier", spanVerifierGenerate, "server"},
	} {
		var kids []traceSpan
		for _, s := range tr.find(step.service, step.name, step.kind) {
			if s.parent() == parent.SpanID {
				kids = append(kids, s)
			}
		}
		if len(kids) != 1 {
			t.Fatalf("%s %s %s under %s: %d spans, want 1", step.service, step.kind, step.name, parent.OperationName, len(kids))
		}
		parent = kids[0]
	}
}

// traceWaitServing waits until a worker process's health check says SERVING.
func traceWaitServing(t *testing.T, p *traceProc, addr string) {
	t.Helper()
	cc, err := services.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s never became SERVING: %v", p.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// traceWaitTrace finds the request's trace: exactly one trace holds a router
// Generate span, and every verifier Generate and draft Speculate span is in it (none
// started a trace of its own). It polls until the trace holds spans of all three
// services, since the collector stores what it receives asynchronously.
func traceWaitTrace(t *testing.T, j *traceJaeger) traceTrace {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		tr, err := traceFind(ctx, j)
		if err == nil {
			return tr
		}
		last = err.Error()
		if time.Now().After(deadline) {
			t.Fatalf("no complete request trace in Jaeger after 30s: %s", last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func traceFind(ctx context.Context, j *traceJaeger) (traceTrace, error) {
	all, err := j.traces(ctx, "specd-router", spanRouterGenerate)
	if err != nil {
		return traceTrace{}, err
	}
	var found []traceTrace // the gRPC request's: not the HTTP one's (checkHTTPTrace)
	for _, tr := range all {
		if tr.TraceID != traceHTTPClientTrace {
			found = append(found, tr)
		}
	}
	if len(found) != 1 {
		return traceTrace{}, fmt.Errorf("%d traces of specd-router %s, want 1", len(found), spanRouterGenerate)
	}
	id := found[0].TraceID
	tr, err := j.trace(ctx, id)
	if err != nil {
		return traceTrace{}, err
	}
	for _, q := range []struct{ service, op string }{{"specd-verifier", spanVerifierGenerate}, {"specd-draft", spanDraftSpeculate}} {
		others, err := j.traces(ctx, q.service, q.op)
		if err != nil {
			return traceTrace{}, err
		}
		for _, o := range others {
			if o.TraceID != id && o.TraceID != traceHTTPClientTrace {
				return traceTrace{}, fmt.Errorf("%s %s is in trace %s, not the request's %s: context did not propagate", q.service, q.op, o.TraceID, id)
			}
		}
	}
	services := map[string]bool{}
	for _, p := range tr.Processes {
		services[p.ServiceName] = true
	}
	for _, s := range []string{"specd-router", "specd-verifier", "specd-draft"} {
		if !services[s] {
			return traceTrace{}, fmt.Errorf("trace has no spans of %s yet; %s", s, tr.describe())
		}
	}
	return tr, nil
}

// checkTraceShape checks the request's trace against the contract in
// TestTraceAcrossServices's comment.
func checkTraceShape(t *testing.T, tr traceTrace) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Log(tr.describe())
		}
	}()
	// A healthy request looks healthy: no span of it is an error (Jaeger marks a span
	// whose status is an error with the tag error=true).
	for _, sp := range tr.Spans {
		if v, ok := sp.tag("error"); ok && v == true {
			code, _ := sp.tag("rpc.grpc.status_code")
			t.Errorf("%s span %s %s of a successful request is an error (grpc status %v)", tr.service(sp), sp.kind(), sp.OperationName, code)
		}
	}
	for id, p := range tr.Processes {
		switch p.ServiceName {
		case "specd-router", "specd-verifier", "specd-draft":
		default:
			t.Errorf("process %s is service %q, want specd-router, specd-verifier or specd-draft", id, p.ServiceName)
		}
	}
	one := func(what string, spans []traceSpan) (traceSpan, bool) {
		t.Helper()
		if len(spans) != 1 {
			t.Errorf("%s: %d spans, want 1", what, len(spans))
			return traceSpan{}, false
		}
		return spans[0], true
	}
	childOf := func(what string, spans []traceSpan, parent traceSpan) (traceSpan, bool) {
		t.Helper()
		var kids []traceSpan
		for _, s := range spans {
			if s.parent() == parent.SpanID {
				kids = append(kids, s)
			}
		}
		return one(what+" under "+parent.OperationName+" "+parent.SpanID, kids)
	}

	rs, ok := one("specd-router server "+spanRouterGenerate, tr.find("specd-router", spanRouterGenerate, "server"))
	if !ok {
		return
	}
	if p := rs.parent(); p != "" {
		t.Errorf("router server span has parent %s, want it to be the trace's root (the client sent no trace context)", p)
	}
	checkRequestTags(t, rs)
	rc, ok := childOf("specd-router client "+spanVerifierGenerate, tr.find("specd-router", spanVerifierGenerate, "client"), rs)
	if !ok {
		return
	}
	vs, ok := childOf("specd-verifier server "+spanVerifierGenerate, tr.find("specd-verifier", spanVerifierGenerate, "server"), rc)
	if !ok {
		return
	}

	var rounds []traceSpan
	for _, s := range tr.find("specd-verifier", spanRound, "") {
		if tr.descends(s.SpanID, vs.SpanID) {
			rounds = append(rounds, s)
		} else {
			t.Errorf("round span %s is not under the verifier's Generate span %s", s.SpanID, vs.SpanID)
		}
	}
	if len(rounds) == 0 {
		t.Errorf("no %s spans under the verifier's Generate span", spanRound)
	}
	seen := map[float64]bool{}
	for _, s := range rounds {
		for _, k := range roundAttrs {
			v, ok := s.tag(k)
			if !ok {
				t.Errorf("round span %s has no attribute %s (tags %v)", s.SpanID, k, s.Tags)
				continue
			}
			switch {
			case strings.HasSuffix(k, ".model"):
				if str, _ := v.(string); str == "" {
					t.Errorf("round span %s: %s = %v, want a model name", s.SpanID, k, v)
				}
			default:
				if f, isNum := v.(float64); !isNum || f < 0 {
					t.Errorf("round span %s: %s = %v (%T), want a number ≥ 0", s.SpanID, k, v, v)
				}
			}
		}
		round, _ := s.tag("specd.round")
		if r, ok := round.(float64); ok {
			if seen[r] {
				t.Errorf("two round spans with specd.round = %v", r)
			}
			seen[r] = true
		}
		acc, _ := s.tag("specd.accepted")
		dr, _ := s.tag("specd.drafted")
		if a, ok1 := acc.(float64); ok1 {
			if d, ok2 := dr.(float64); ok2 && a > d {
				t.Errorf("round span %s: specd.accepted %v > specd.drafted %v", s.SpanID, a, d)
			}
		}
	}

	var dcs []traceSpan
	for _, s := range tr.find("specd-verifier", spanDraftSpeculate, "client") {
		if tr.descends(s.SpanID, vs.SpanID) {
			dcs = append(dcs, s)
		}
	}
	dc, ok := one("specd-verifier client "+spanDraftSpeculate+" under the verifier's Generate span", dcs)
	if !ok {
		return
	}
	childOf("specd-draft server "+spanDraftSpeculate, tr.find("specd-draft", spanDraftSpeculate, "server"), dc)
}
