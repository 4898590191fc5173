package deploy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specd-dev/specd/internal/consultest"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TestManifestsServe runs the three services as each manifest starts them — its
// flags and its environment — and generates through the router. What a container
// platform provides is replaced: addresses become free loopback ports, the model
// directory is the shared one, a Consul agent is internal/consultest running the
// registered gRPC checks for real, and the OpenTelemetry Collector is a sink that
// speaks OTLP/gRPC. Everything else is as written: the health service names the
// manifests check are asked of the live servers, the router finds the verifier and
// the draft the way the manifest says (static addresses or Consul), the verifier
// reaches the draft at the address the router hands it, and with tracing sampled the
// spans arrive under each manifest's OTEL_SERVICE_NAME.
func TestManifestsServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts specd processes")
	}
	sources := []struct {
		name string
		runs func(t *testing.T) map[string]parsed
	}{
		{"kubernetes", func(t *testing.T) map[string]parsed {
			dir := kustomizations[0]
			var objs kubeObjects
			for _, r := range readKustomization(t, dir).Resources {
				if err := decodeKube(readFile(t, filepath.Join(dir, r)), &objs); err != nil {
					t.Fatal(err)
				}
			}
			out := map[string]parsed{}
			for r, kl := range kubeLaunches(t, dir, objs) {
				out[r] = kl.parsed
			}
			return out
		}},
		{"compose", func(t *testing.T) map[string]parsed { return composeLaunches(t, loadCompose(t)) }},
		{"nomad", func(t *testing.T) map[string]parsed { _, runs := nomadRuns(t, "nomad/specd.nomad.hcl"); return runs }},
		{"systemd", systemdLaunches},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			runs := src.runs(t)
			if t.Failed() {
				t.FailNow()
			}
			serveStack(t, runs)
		})
	}
	t.Run("Dockerfile", func(t *testing.T) {
		p := checkLaunch(t, launch{where: "Dockerfile CMD", args: dockerfileCmd(t), env: map[string]string{"SPECD_MODELS": "/models"}, modelsMount: "/models"})
		if t.Failed() {
			t.FailNow()
		}
		addr := freeAddr(t)
		over, certs := map[string]string{"listen": addr}, ""
		if p.hasTLS() {
			certs = makeCerts(t)
			tlsOver(over, certs, "router")
		}
		pr := startSpecd(t, p, over, "")
		waitServing(t, pr, addr, roles["router"].health, tlsDial(t, certs, "client", "router"))
		generateThrough(t, addr, tlsDial(t, certs, "client", "router"))
		pr.stop(t)
	})
}

// serveStack starts verifier, draft and router as runs say, generates through the
// router, stops them and checks what reached the OTLP sink.
func serveStack(t *testing.T, runs map[string]parsed) {
	t.Helper()
	sink := startOTLPSink(t)
	// Certificates from tls/make-certs.sh stand in for the mounted Secrets.
	certs := ""
	for _, p := range runs {
		if p.hasTLS() && certs == "" {
			certs = makeCerts(t)
		}
	}
	var agent *consultest.Server
	for _, p := range runs {
		if _, ok := p.get("consul"); ok && agent == nil {
			agent = consultest.New(t, consultest.Options{DialChecks: true, TLS: agentTLS(t, certs)})
		}
	}
	// The verifier dials only the drafts it knows: with static discovery on both
	// sides, it must know them by the names the router passes on.
	if v, r := runs["verifier"], runs["router"]; v.value(t, "draft-discovery") == "static" && r.value(t, "discovery") == "static" {
		if vd, rd := v.value(t, "drafts"), r.value(t, "drafts"); vd != rd {
			t.Errorf("verifier --drafts=%s, router --drafts=%s: the verifier would refuse every draft the router names", vd, rd)
		}
	}
	addrs := map[string]string{}
	// Every address is known before anything starts: the verifier names the draft.
	listen := map[string]string{}
	for _, r := range roleNames {
		listen[r] = freeAddr(t)
	}
	var procs []*specdProc
	for _, r := range roleNames {
		p, ok := runs[r]
		if !ok {
			t.Fatalf("no %s", r)
		}
		addr := listen[r]
		over := map[string]string{"listen": addr}
		if _, ok := p.get("drafts"); ok && r == "verifier" {
			over["drafts"] = listen["draft"]
		}
		metrics := ""
		if _, ok := p.get("metrics-listen"); ok {
			metrics = freeAddr(t)
			over["metrics-listen"] = metrics
		}
		if _, ok := p.get("consul"); ok {
			over["consul"] = agent.Addr()
		}
		if _, ok := p.get("advertise"); ok {
			over["advertise"] = addr
		}
		if r == "router" && p.value(t, "discovery") == "static" {
			over["verifiers"], over["drafts"] = addrs["verifier"], addrs["draft"]
		}
		mine := ""
		if p.hasTLS() {
			mine = certs
			tlsOver(over, certs, r)
		}
		pr := startSpecd(t, p, over, sink.addr)
		procs = append(procs, pr)
		waitServing(t, pr, addr, roles[r].health, tlsDial(t, mine, r, r))
		runProbes(t, pr, p, addr, certs, r)
		if metrics != "" {
			for _, path := range []string{"/healthz", "/metrics"} {
				checkHTTP(t, pr, "http://"+metrics+path)
			}
		}
		addrs[r] = addr
	}
	rcerts := ""
	if runs["router"].hasTLS() {
		rcerts = certs
	}
	generateThrough(t, addrs["router"], tlsDial(t, rcerts, "client", "router"))
	for _, pr := range slices.Backward(procs) {
		pr.stop(t)
	}

	// Spans and metrics reach the collector under each service's name when the
	// manifest samples every trace and asks for OTLP metrics.
	for _, r := range roleNames {
		env := runs[r].env
		name := env["OTEL_SERVICE_NAME"]
		if env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" || env["OTEL_TRACES_EXPORTER"] == "none" {
			continue
		}
		if s := env["OTEL_TRACES_SAMPLER"]; s == "" || s == "parentbased_always_on" || s == "always_on" {
			if sink.spans(name) == 0 {
				t.Errorf("%s: no spans from service.name %q reached the collector", runs[r].where, name)
			}
		}
		if slices.Contains(strings.Split(env["OTEL_METRICS_EXPORTER"], ","), "otlp") && sink.metrics(name) == 0 {
			t.Errorf("%s: no metrics from service.name %q reached the collector", runs[r].where, name)
		}
	}
}

// tlsOver points a launch's TLS flags at role's certificates from make-certs.sh.
func tlsOver(over map[string]string, certs, role string) {
	for flag, base := range tlsFiles {
		over[flag] = filepath.Join(certs, role, base)
	}
}

// agentTLS is the fake Consul agent's TLS configuration, as a real agent's tls stanza
// would be in an mTLS deployment: the client certificate, and the CA (nil without
// certificates).
func agentTLS(t *testing.T, certs string) *tls.Config {
	t.Helper()
	if certs == "" {
		return nil
	}
	f := roleFiles(certs, "client")
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(readFile(t, f.CA))
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots}
}

// runProbes runs a launch's exec probes as the kubelet would inside the container,
// with the addresses and TLS files moved as the process's were; each must pass.
func runProbes(t *testing.T, pr *specdProc, p parsed, addr, certs, role string) {
	t.Helper()
	for _, cmd := range p.probes {
		if len(cmd) < 2 || cmd[0] != "/specd" {
			pr.fatal(t, "probe %v: not /specd", cmd)
		}
		args := []string{cmd[1]}
		for _, a := range cmd[2:] {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			switch base, isTLS := tlsFiles[name]; {
			case name == "addr":
				a = "--addr=" + addr
			case isTLS:
				a = "--" + name + "=" + filepath.Join(certs, role, base)
			}
			args = append(args, a)
		}
		if out, err := exec.Command(specdBin, args...).CombinedOutput(); err != nil {
			pr.fatal(t, "probe specd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// specdProc is a running specd.
type specdProc struct {
	where string
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan struct{}
	err   error // of Wait, once done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startSpecd starts a launch with some flags replaced (over), the model
// directory moved to the shared one and the OTLP endpoint to the sink. The process
// gets only the launch's environment (and PATH, HOME), not the test's.
func startSpecd(t *testing.T, p parsed, over map[string]string, otlp string) *specdProc {
	t.Helper()
	args := []string{p.sub}
	seen := map[string]bool{}
	for _, f := range p.flags {
		v, ok := over[f.name]
		switch {
		case f.name == "models":
			v = sharedModels(t)
		case !ok:
			v = f.value
		}
		seen[f.name] = true
		args = append(args, "--"+f.name+"="+v)
	}
	for _, k := range slices.Sorted(maps.Keys(over)) {
		if !seen[k] {
			args = append(args, "--"+k+"="+over[k])
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range p.env {
		switch {
		case k == "SPECD_MODELS":
			v = sharedModels(t)
		case k == "OTEL_EXPORTER_OTLP_ENDPOINT":
			v = "http://" + otlp
		}
		env = append(env, k+"="+v)
	}
	pr := &specdProc{where: p.where, cmd: exec.Command(specdBin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	pr.cmd.Env = env
	pr.cmd.Stdout, pr.cmd.Stderr = pr.out, pr.out
	if err := pr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pr.err = pr.cmd.Wait(); close(pr.done) }()
	t.Cleanup(func() {
		select {
		case <-pr.done:
		default:
			pr.cmd.Process.Kill()
			<-pr.done
		}
	})
	t.Logf("%s: specd %s", p.where, strings.Join(args, " "))
	return pr
}

// fatal ends the test with the process's output.
func (pr *specdProc) fatal(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s: %s\noutput:\n%s", pr.where, fmt.Sprintf(format, args...), pr.out.String())
}

// stop sends SIGTERM, as every platform here does, and requires a clean exit in time.
func (pr *specdProc) stop(t *testing.T) {
	t.Helper()
	if err := pr.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		pr.fatal(t, "SIGTERM: %v", err)
	}
	select {
	case <-pr.done:
	case <-time.After(30 * time.Second):
		pr.fatal(t, "still running 30 s after SIGTERM (the manifests allow 20–30 s)")
	}
	if pr.err != nil {
		pr.fatal(t, "exit after SIGTERM: %v", pr.err)
	}
}

// waitServing waits until the process answers SERVING for a health service name.
func waitServing(t *testing.T, pr *specdProc, addr, service string, creds grpc.DialOption) {
	t.Helper()
	cc, err := grpc.NewClient(addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-pr.done:
			pr.fatal(t, "exited before serving: %v", pr.err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		last = fmt.Sprint(resp.GetStatus(), err)
		time.Sleep(100 * time.Millisecond)
	}
	pr.fatal(t, "grpc.health.v1 Check(%q) on %s never SERVING (last: %s)", service, addr, last)
}

// checkHTTP requires a 200 from a metrics endpoint.
func checkHTTP(t *testing.T, pr *specdProc, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		pr.fatal(t, "GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		pr.fatal(t, "GET %s: %s", url, resp.Status)
	}
}

// generateThrough generates greedy tokens through the router, retrying while the router
// has not yet found a verifier (Consul discovery takes a moment), and requires that the
// draft took part. The request is long enough for the draft to be heard: a verifier never
// idles for proposals, so on a loaded machine, with a draft dialled for the first time,
// a 16-token request finished before the first proposal arrived (0 drafted); after 16
// tokens decoded on its own the verifier waits once for the draft.
func generateThrough(t *testing.T, addr string, creds grpc.DialOption) {
	t.Helper()
	cc, err := grpc.NewClient(addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := specdv1.NewGenerationServiceClient(cc)
	// A request may finish before a draft that has just started proposes (on a busy
	// machine its first passes are slow); within the deadline one must see its draft.
	deadline := time.Now().Add(60 * time.Second)
	for {
		stats, err := generateOnce(client)
		if err == nil && stats.GetCompletionTokens() == 0 {
			t.Fatalf("Generate via %s: no tokens", addr)
		}
		if err == nil && stats.GetDraftedTokens() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Generate via %s: %v; last stats %v: want tokens, with the draft proposing", addr, err, stats)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func generateOnce(client specdv1.GenerationServiceClient) (*specdv1.Stats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := client.Generate(ctx, &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 64, Sampling: &specdv1.SamplingParams{Temperature: 0}})
	if err != nil {
		return nil, err
	}
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("stream ended without a final message")
		}
		if err != nil {
			return nil, err
		}
		if f := msg.GetFinal(); f != nil {
			return f.GetStats(), nil
		}
	}
}

// otlpSink is an OpenTelemetry Collector as far as specd can tell: OTLP/gRPC trace and
// metrics services that count what arrives per service.name.
type otlpSink struct {
	addr string
	mu   sync.Mutex
	span map[string]int
	mets map[string]int
}

func (s *otlpSink) count(m map[string]int, res *resourcepb.Resource, n int) {
	name := ""
	for _, kv := range res.GetAttributes() {
		if kv.GetKey() == "service.name" {
			name = kv.GetValue().GetStringValue()
		}
	}
	s.mu.Lock()
	m[name] += n
	s.mu.Unlock()
}

func (s *otlpSink) spans(name string) int   { s.mu.Lock(); defer s.mu.Unlock(); return s.span[name] }
func (s *otlpSink) metrics(name string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.mets[name] }

type traceSink struct {
	coltracepb.UnimplementedTraceServiceServer
	s *otlpSink
}

func (t traceSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		n := 0
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
		t.s.count(t.s.span, rs.GetResource(), n)
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type metricSink struct {
	colmetricpb.UnimplementedMetricsServiceServer
	s *otlpSink
}

func (m metricSink) Export(_ context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	for _, rm := range req.GetResourceMetrics() {
		n := 0
		for _, sm := range rm.GetScopeMetrics() {
			n += len(sm.GetMetrics())
		}
		m.s.count(m.s.mets, rm.GetResource(), n)
	}
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

func startOTLPSink(t *testing.T) *otlpSink {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &otlpSink{addr: lis.Addr().String(), span: map[string]int{}, mets: map[string]int{}}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, traceSink{s: s})
	colmetricpb.RegisterMetricsServiceServer(srv, metricSink{s: s})
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return s
}
