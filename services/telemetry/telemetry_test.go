package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clearOTelEnv makes the test independent of the OTEL_* variables of whoever runs it.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	} {
		t.Setenv(k, "")
	}
}

// setup starts telemetry and shuts it down (checking the error) at cleanup.
func setup(t *testing.T, cfg telemetry.Config) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Setup(%+v) = %v", cfg, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	})
	return tel
}

// scrape fetches and parses the Prometheus text exposition at addr.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// find returns the sample of family name whose labels include want.
func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, want map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		var names []string
		for n := range fams {
			if strings.HasPrefix(n, "specd_") {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		t.Fatalf("no metric %s on /metrics; specd metrics there: %v", name, names)
	}
	if f.GetType() != typ {
		t.Errorf("%s type = %v, want %v", name, f.GetType(), typ)
	}
next:
	for _, m := range f.GetMetric() {
		got := labels(m)
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	var all []map[string]string
	for _, m := range f.GetMetric() {
		all = append(all, labels(m))
	}
	t.Fatalf("%s has no sample with labels %v; samples: %v", name, want, all)
	return nil
}

func TestMetricsExposedNames(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard})
	ctx := context.Background()
	m := tel.Metrics
	m.RecordRequest(ctx, telemetry.RequestStats{Model: "target", Domain: "code", Code: codes.OK, Generated: 10, Drafted: 8, Accepted: 6, Lookup: 5, LookupKept: 2, Prompt: 70, CachedPrompt: 64})
	m.RecordRequest(ctx, telemetry.RequestStats{Model: "target", Domain: "chat", Code: codes.Unavailable, Generated: 3})
	m.RecordRequest(ctx, telemetry.RequestStats{Model: "target", Domain: "code", Code: codes.OK, Generated: 1, Prompt: 9})
	m.RecordRoundTrip(ctx, "target", "draft", 3*time.Millisecond)
	m.RecordTimeToFirstToken(ctx, "target", 120*time.Millisecond)
	m.RecordPass(ctx, "target", 17, 3*time.Millisecond)
	m.RecordPass(ctx, "target", 1, 700*time.Microsecond)
	stops := []func(){
		m.ObserveQueueDepth(func() int64 { return 3 }),
		m.ObserveKVBlocks(func() (int64, int64, int64) { return 5, 2, 25 }),
		m.ObserveBreakers(func() map[string]int64 {
			return map[string]int64{"v1": telemetry.BreakerOpen, "d1": telemetry.BreakerClosed}
		}),
		m.ObserveDiscoveryStale(func() bool { return true }),
	}
	fams := scrape(t, tel.MetricsAddr())

	counter := func(name string, lbl map[string]string, want float64) {
		t.Helper()
		if got := find(t, fams, name, dto.MetricType_COUNTER, lbl).GetCounter().GetValue(); got != want {
			t.Errorf("%s%v = %v, want %v", name, lbl, got, want)
		}
	}
	gauge := func(name string, lbl map[string]string, want float64) {
		t.Helper()
		if got := find(t, fams, name, dto.MetricType_GAUGE, lbl).GetGauge().GetValue(); got != want {
			t.Errorf("%s%v = %v, want %v", name, lbl, got, want)
		}
	}
	histCount := func(name string, lbl map[string]string, want uint64) *dto.Histogram {
		t.Helper()
		h := find(t, fams, name, dto.MetricType_HISTOGRAM, lbl).GetHistogram()
		if got := h.GetSampleCount(); got != want {
			t.Errorf("%s%v count = %v, want %v", name, lbl, got, want)
		}
		return h
	}

	counter("specd_tokens_generated_total", map[string]string{"model": "target", "domain": "code"}, 11)
	counter("specd_prompt_tokens_total", map[string]string{"model": "target", "domain": "code"}, 79)
	counter("specd_prompt_tokens_cached_total", map[string]string{"model": "target", "domain": "code"}, 64)
	counter("specd_tokens_generated_total", map[string]string{"model": "target", "domain": "chat"}, 3)
	counter("specd_tokens_drafted_total", map[string]string{"model": "target", "domain": "code"}, 8)
	counter("specd_tokens_accepted_total", map[string]string{"model": "target", "domain": "code"}, 6)
	counter("specd_tokens_lookup_total", map[string]string{"model": "target", "domain": "code"}, 5)
	counter("specd_tokens_lookup_accepted_total", map[string]string{"model": "target", "domain": "code"}, 2)
	counter("specd_requests_total", map[string]string{"model": "target", "code": "OK"}, 2)
	counter("specd_requests_total", map[string]string{"model": "target", "code": "Unavailable"}, 1)

	// One observation (the speculating request), 0.75, in the (0.7, 0.8] bucket.
	h := histCount("specd_acceptance_ratio", map[string]string{"model": "target", "domain": "code"}, 1)
	var bounds []float64
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		if want := uint64(0); b.GetUpperBound() >= 0.8 {
			want = 1
			if b.GetCumulativeCount() != want {
				t.Errorf("acceptance bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		} else if b.GetUpperBound() < 0.75 && b.GetCumulativeCount() != want {
			t.Errorf("acceptance bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if want := []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}; !slices.Equal(bounds[:len(want)], want) {
		t.Errorf("acceptance buckets = %v, want %v (+Inf)", bounds, want)
	}
	histCount("specd_round_trip_seconds", map[string]string{"model": "target", "draft_model": "draft"}, 1)
	histCount("specd_time_to_first_token_seconds", map[string]string{"model": "target"}, 1)
	if h := histCount("specd_pass_tokens", map[string]string{"model": "target"}, 2); h.GetSampleSum() != 18 {
		t.Errorf("specd_pass_tokens sum = %v, want 18", h.GetSampleSum())
	}
	histCount("specd_pass_seconds", map[string]string{"model": "target"}, 2)

	gauge("specd_queue_depth_requests", nil, 3)
	gauge("specd_kv_blocks", map[string]string{"state": "used"}, 5)
	gauge("specd_kv_blocks", map[string]string{"state": "cached"}, 2)
	gauge("specd_kv_blocks", map[string]string{"state": "free"}, 25)
	gauge("specd_breaker_state", map[string]string{"endpoint": "v1"}, 2)
	gauge("specd_breaker_state", map[string]string{"endpoint": "d1"}, 0)
	gauge("specd_discovery_stale", nil, 1)

	// No name gained a second unit or _total.
	for n := range fams {
		if strings.Contains(n, "_total_total") || strings.Contains(n, "seconds_seconds") || strings.HasSuffix(n, "_ratio_ratio") {
			t.Errorf("exposed name %s has a doubled suffix", n)
		}
	}
	if _, ok := fams["target_info"]; !ok {
		t.Errorf("no target_info on /metrics")
	}

	// A stopped observer no longer reports.
	for _, stop := range stops {
		stop()
	}
	if _, ok := scrape(t, tel.MetricsAddr())["specd_queue_depth_requests"]; ok {
		t.Errorf("specd_queue_depth_requests still exposed after its observer stopped")
	}
}

func TestDomainLabelBounded(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard})
	for i := range 100 {
		tel.Metrics.RecordRequest(context.Background(), telemetry.RequestStats{Model: "m", Domain: strings.Repeat("d", i+1), Generated: 1})
	}
	f := scrape(t, tel.MetricsAddr())["specd_tokens_generated_total"]
	if got, want := len(f.GetMetric()), 33; got != want {
		t.Errorf("specd_tokens_generated_total series = %d, want %d (32 domains + other)", got, want)
	}
	find(t, map[string]*dto.MetricFamily{"f": f}, "f", dto.MetricType_COUNTER, map[string]string{"domain": "other"})
}

func TestHealthz(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + tel.MetricsAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz = %s, want 200", resp.Status)
	}
}

func TestNilRecordsNothing(t *testing.T) {
	var tel *telemetry.Telemetry
	if tel.ServerOptions() != nil || tel.DialOptions() != nil || tel.MetricsAddr() != "" || tel.Shutdown(context.Background()) != nil {
		t.Errorf("a nil Telemetry gave options, an address or a Shutdown error")
	}
	var m *telemetry.Metrics
	m.RecordRequest(context.Background(), telemetry.RequestStats{Generated: 1, Drafted: 1})
	m.RecordRoundTrip(context.Background(), "a", "b", time.Second)
	m.RecordTimeToFirstToken(context.Background(), "a", time.Second)
	m.ObserveQueueDepth(func() int64 { return 1 })()
	m.ObserveKVBlocks(func() (int64, int64, int64) { return 1, 0, 1 })()
	m.ObserveBreakers(func() map[string]int64 { return nil })()
	m.ObserveDiscoveryStale(func() bool { return false })()
}

// syncBuffer is a log destination safe for the server goroutines writing to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(s.b.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestLogCarriesTraceIDs(t *testing.T) {
	clearOTelEnv(t)
	var buf syncBuffer
	tel := setup(t, telemetry.Config{Service: "specd-test", Log: &buf})
	ctx, span := tel.Tracer.Start(context.Background(), "work")
	tel.Log.InfoContext(ctx, "inside")
	tel.Log.With("k", "v").InfoContext(ctx, "inside with attrs")
	span.End()
	tel.Log.InfoContext(context.Background(), "outside")

	sc := span.SpanContext()
	lines := buf.lines(t)
	if len(lines) != 3 {
		t.Fatalf("got %d log lines, want 3: %v", len(lines), lines)
	}
	for _, l := range lines[:2] {
		if l["trace_id"] != sc.TraceID().String() || l["span_id"] != sc.SpanID().String() {
			t.Errorf("log %q: trace_id, span_id = %v, %v, want %s, %s", l["msg"], l["trace_id"], l["span_id"], sc.TraceID(), sc.SpanID())
		}
	}
	if _, ok := lines[2]["trace_id"]; ok {
		t.Errorf("log outside a span has trace_id %v", lines[2]["trace_id"])
	}
}

func TestTextLogFormat(t *testing.T) {
	clearOTelEnv(t)
	var buf syncBuffer
	tel := setup(t, telemetry.Config{Service: "specd-test", Log: &buf, LogFormat: "text", LogLevel: slog.LevelWarn})
	ctx, span := tel.Tracer.Start(context.Background(), "work")
	defer span.End()
	tel.Log.InfoContext(ctx, "dropped")
	tel.Log.WarnContext(ctx, "kept")
	got := buf.b.String()
	if strings.Contains(got, "dropped") || !strings.Contains(got, "msg=kept") || !strings.Contains(got, "trace_id="+span.SpanContext().TraceID().String()) {
		t.Errorf("text log = %q, want only the warning, with its trace_id", got)
	}
}

// tokenizeServer answers Tokenize, logging with the RPC's context and reporting the
// span it ran in. (Not Info: Info polls are kept out of traces.)
type tokenizeServer struct {
	speculationv1.UnimplementedVerifierServiceServer
	log  *slog.Logger
	seen chan trace.SpanContext
}

func (s *tokenizeServer) Tokenize(ctx context.Context, _ *specdv1.TokenizeRequest) (*specdv1.TokenizeResponse, error) {
	s.log.InfoContext(ctx, "tokenize")
	s.seen <- trace.SpanContextFromContext(ctx)
	return &specdv1.TokenizeResponse{}, nil
}

// TestGRPCPropagation runs a real gRPC server and client, each instrumented by its own
// Telemetry (as two services would be), and checks that the server's span joins the
// client's trace and that the server's log line carries it.
func TestGRPCPropagation(t *testing.T) {
	clearOTelEnv(t)
	var serverLog syncBuffer
	client := setup(t, telemetry.Config{Service: "specd-client", Log: io.Discard})
	server := setup(t, telemetry.Config{Service: "specd-server", Log: &serverLog})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(server.ServerOptions()...)
	is := &tokenizeServer{log: server.Log, seen: make(chan trace.SpanContext, 1)}
	speculationv1.RegisterVerifierServiceServer(srv, is)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	defer func() { srv.Stop(); <-done }()

	cc, err := grpc.NewClient(lis.Addr().String(), append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, span := client.Tracer.Start(context.Background(), "caller")
	if _, err := speculationv1.NewVerifierServiceClient(cc).Tokenize(ctx, &specdv1.TokenizeRequest{}); err != nil {
		t.Fatal(err)
	}
	span.End()
	got := <-is.seen
	if !got.IsValid() || got.TraceID() != span.SpanContext().TraceID() {
		t.Fatalf("server span context = %v, want one in trace %s", got, span.SpanContext().TraceID())
	}
	if got.SpanID() == span.SpanContext().SpanID() {
		t.Errorf("server span id = caller's %s, want a span of its own", got.SpanID())
	}
	lines := serverLog.lines(t)
	if len(lines) != 1 || lines[0]["trace_id"] != got.TraceID().String() || lines[0]["span_id"] != got.SpanID().String() {
		t.Errorf("server log = %v, want one line with trace_id %s span_id %s", lines, got.TraceID(), got.SpanID())
	}
}

func TestSetupRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		cfg  telemetry.Config
	}{
		{"traces exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, telemetry.Config{}},
		{"none with otlp", map[string]string{"OTEL_TRACES_EXPORTER": "none,otlp"}, telemetry.Config{}},
		{"metrics exporter", map[string]string{"OTEL_METRICS_EXPORTER": "console"}, telemetry.Config{}},
		{"protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, telemetry.Config{}},
		{"traces protocol", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, telemetry.Config{}},
		{"sampler", map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, telemetry.Config{}},
		{"sampler arg", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, telemetry.Config{}},
		{"log format", nil, telemetry.Config{LogFormat: "xml"}},
		{"metrics addr", nil, telemetry.Config{MetricsAddr: "127.0.0.1:notaport"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tt.cfg.Service, tt.cfg.Log = "specd-test", io.Discard
			if tel, err := telemetry.Setup(context.Background(), tt.cfg); err == nil {
				tel.Shutdown(context.Background())
				t.Errorf("Setup(%+v) with %v = nil error, want one", tt.cfg, tt.env)
			}
		})
	}
}

func TestSetupExporters(t *testing.T) {
	// Exporters pointed at a loopback port nobody listens on: Setup must not block
	// on them, and Shutdown must stop them (goleak checks at the end of the run).
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"nothing set", nil},
		{"traces none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + dead}},
		{"grpc endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + dead}},
		{"http traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://" + dead + "/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}},
		{"otlp metrics", map[string]string{"OTEL_METRICS_EXPORTER": "otlp,prometheus", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + dead}},
		{"sampler", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard})
			if err != nil {
				t.Fatalf("Setup with %v = %v", tt.env, err)
			}
			_, span := tel.Tracer.Start(context.Background(), "s")
			span.End()
			// Flushing to a dead endpoint fails; Shutdown must still return by its deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err = tel.Shutdown(ctx)
			if tt.env == nil && err != nil {
				t.Errorf("Shutdown with nothing to export = %v", err)
			}
			if again := tel.Shutdown(ctx); !errors.Is(again, err) && again != err {
				t.Errorf("second Shutdown = %v, want the first's %v", again, err)
			}
		})
	}
}

func TestServiceNameFromEnv(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SERVICE_NAME", "overridden")
	tel := setup(t, telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard})
	ti := find(t, scrape(t, tel.MetricsAddr()), "target_info", dto.MetricType_GAUGE, nil)
	if got := labels(ti)["service_name"]; got != "overridden" {
		t.Errorf("service.name = %q, want OTEL_SERVICE_NAME's %q", got, "overridden")
	}
}

// TestResourceIdentifiesInstance: the resource names the host and a random
// service.instance.id, so that the spans and metrics of two replicas of a service tell
// them apart; OTEL_RESOURCE_ATTRIBUTES overrides both.
func TestResourceIdentifiesInstance(t *testing.T) {
	clearOTelEnv(t)
	a := labels(find(t, scrape(t, setup(t, telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard}).MetricsAddr()), "target_info", dto.MetricType_GAUGE, nil))
	b := labels(find(t, scrape(t, setup(t, telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard}).MetricsAddr()), "target_info", dto.MetricType_GAUGE, nil))
	if a["host_name"] == "" {
		t.Errorf("no host.name in the resource: %v", a)
	}
	if id := a["service_instance_id"]; len(id) != 36 || id == b["service_instance_id"] {
		t.Errorf("service.instance.id = %q and %q, want two different UUIDs", id, b["service_instance_id"])
	}
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-7,host.name=node-3")
	c := labels(find(t, scrape(t, setup(t, telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard}).MetricsAddr()), "target_info", dto.MetricType_GAUGE, nil))
	if c["service_instance_id"] != "pod-7" || c["host_name"] != "node-3" {
		t.Errorf("with OTEL_RESOURCE_ATTRIBUTES: instance %q host %q, want pod-7 and node-3", c["service_instance_id"], c["host_name"])
	}
}

// TestKeyLabel: a request recorded with an API key's context carries the key's name
// on specd_requests_total and specd_tokens_generated_total, bounded like the domain;
// one without a key has no key label.
func TestKeyLabel(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, telemetry.Config{Service: "specd-test", MetricsAddr: "127.0.0.1:0", Log: io.Discard})
	ctx := context.Background()
	tel.Metrics.RecordRequest(telemetry.WithKey(ctx, "alice"), telemetry.RequestStats{Model: "m", Code: codes.OK, Generated: 7})
	tel.Metrics.RecordRequest(telemetry.WithKey(ctx, "alice"), telemetry.RequestStats{Model: "m", Code: codes.ResourceExhausted})
	tel.Metrics.RecordRequest(ctx, telemetry.RequestStats{Model: "m", Code: codes.OK, Generated: 1})
	for i := range 200 {
		tel.Metrics.RecordRequest(telemetry.WithKey(ctx, fmt.Sprintf("k%d", i)), telemetry.RequestStats{Model: "m", Code: codes.OK, Generated: 1})
	}
	fams := scrape(t, tel.MetricsAddr())
	for _, c := range []struct {
		name string
		lbl  map[string]string
		want float64
	}{
		{"specd_requests_total", map[string]string{"key": "alice", "code": "OK"}, 1},
		{"specd_requests_total", map[string]string{"key": "alice", "code": "ResourceExhausted"}, 1},
		{"specd_tokens_generated_total", map[string]string{"key": "alice"}, 7},
		{"specd_tokens_generated_total", map[string]string{"key": "other"}, 200 - 127},
	} {
		if got := find(t, fams, c.name, dto.MetricType_COUNTER, c.lbl).GetCounter().GetValue(); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.lbl, got, c.want)
		}
	}
	keyless := 0
	for _, m := range fams["specd_requests_total"].GetMetric() {
		if _, ok := labels(m)["key"]; !ok {
			keyless++
		}
	}
	if keyless != 1 {
		t.Errorf("specd_requests_total series without a key label = %d, want 1", keyless)
	}
	if n := len(fams["specd_tokens_generated_total"].GetMetric()); n != 1+128+1 {
		t.Errorf("specd_tokens_generated_total series = %d, want 130 (no key, 128 keys, other)", n)
	}
}

// TestLogCarriesKey: a record logged with a key's context names the key.
func TestLogCarriesKey(t *testing.T) {
	clearOTelEnv(t)
	var buf syncBuffer
	tel := setup(t, telemetry.Config{Service: "specd-test", Log: &buf})
	tel.Log.InfoContext(telemetry.WithKey(context.Background(), "alice"), "with key")
	tel.Log.InfoContext(context.Background(), "without")
	lines := buf.lines(t)
	if len(lines) != 2 || lines[0]["key"] != "alice" {
		t.Fatalf("log lines %v: want the first with key alice", lines)
	}
	if _, ok := lines[1]["key"]; ok {
		t.Errorf("a record without a key has key %v", lines[1]["key"])
	}
}
