package serve_test

// Helpers of the trace test (trace_test.go): Jaeger built from tools/jaeger and run
// on loopback ports with an in-memory store, specd services run as processes, and a
// client for Jaeger's query API.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// traceJaegerFlag names a prebuilt Jaeger binary, skipping the build.
var traceJaegerFlag = flag.String("jaeger", "", "path of a prebuilt Jaeger (v2, OTel collector based) binary for the trace test; empty builds tools/jaeger")

// traceSkipJaegerEnv, set to exactly "1", skips the tests that need Jaeger. Without it
// a Jaeger that cannot be built or started fails them: CI must not pass by skipping.
const traceSkipJaegerEnv = "SPECD_SKIP_JAEGER"

// traceJaegerModule is the tool module that pins Jaeger, relative to this package.
const traceJaegerModule = "../../tools/jaeger"

var (
	traceJaegerOnce sync.Once
	traceJaegerPath string
	traceJaegerErr  error
)

// traceJaegerBinary returns a Jaeger binary: the -jaeger flag's, else the one cached
// at traceJaegerCachePath, else one built there now from tools/jaeger (about ten
// minutes with a cold Go build cache, a link with a warm one). It skips the test
// when SPECD_SKIP_JAEGER=1 and fails it when Jaeger cannot be had otherwise.
func traceJaegerBinary(t *testing.T) string {
	t.Helper()
	if os.Getenv(traceSkipJaegerEnv) == "1" {
		t.Skipf("%s=1: skipping the test that needs Jaeger", traceSkipJaegerEnv)
	}
	traceJaegerOnce.Do(func() {
		if *traceJaegerFlag != "" {
			traceJaegerPath = *traceJaegerFlag
			return
		}
		traceJaegerPath, traceJaegerErr = traceBuildJaeger()
	})
	if traceJaegerErr != nil {
		t.Fatalf("Jaeger: %v (set %s=1 to skip this test explicitly)", traceJaegerErr, traceSkipJaegerEnv)
	}
	return traceJaegerPath
}

// traceJaegerCachePath is where the Jaeger of tools/jaeger is cached between runs:
// $TMPDIR/specd-jaeger-<version>/jaeger, the version read from tools/jaeger/go.mod
// (a module version names its source for good, so the path never goes stale).
func traceJaegerCachePath() (string, error) {
	gomod, err := os.ReadFile(filepath.Join(traceJaegerModule, "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/jaegertracing/jaeger\s+(v\S+)`).FindSubmatch(gomod)
	if m == nil {
		return "", fmt.Errorf("%s/go.mod does not require github.com/jaegertracing/jaeger", traceJaegerModule)
	}
	return filepath.Join(os.TempDir(), "specd-jaeger-"+string(m[1]), "jaeger"), nil
}

// traceBuildJaeger builds tools/jaeger into the cache unless it is there already.
func traceBuildJaeger() (string, error) {
	path, err := traceJaegerCachePath()
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return path, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	dir, err := filepath.Abs(traceJaegerModule)
	if err != nil {
		return "", err
	}
	// Build beside the cached path and rename, so a concurrent or interrupted build
	// never leaves a partial binary where the next run would trust it.
	tmp := fmt.Sprintf("%s.%d.partial", path, os.Getpid())
	defer os.Remove(tmp)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "build", "-o", tmp, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = dir
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %v\n%s", dir, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "built Jaeger into %s in %v\n", path, time.Since(start).Round(time.Second))
	return path, nil
}

// traceLog collects a process's output for failure messages.
type traceLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *traceLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *traceLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// traceProc is a child process of the test, stopped at cleanup at the latest.
type traceProc struct {
	name string
	cmd  *exec.Cmd
	out  traceLog
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done closes
}

// traceStart starts bin with args and env (added to the test's environment less
// every OTEL_* variable, so the caller's are the only ones).
func traceStart(t *testing.T, name string, env []string, bin string, args ...string) *traceProc {
	t.Helper()
	p := &traceProc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *traceProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to stop (SIGTERM, as an orchestrator would) and waits for it,
// returning its exit error; past the grace it is killed and that is an error.
func (p *traceProc) stop(grace time.Duration) error {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM", p.name, grace)
	}
}

// traceJaeger is a running Jaeger with loopback ports of its own.
type traceJaeger struct {
	proc               *traceProc
	query              string // HTTP query API (and UI) address
	otlpGRPC, otlpHTTP string // OTLP receiver addresses
}

// traceJaegerConfig is a Jaeger v2 configuration (an OpenTelemetry collector
// configuration with Jaeger's extensions): OTLP receivers, an in-memory trace store
// and the query service, every listener on the given loopback ports, nothing else
// listening (the all-in-one default also opens the Jaeger and Zipkin receivers,
// remote sampling, health check, expvar, zpages and the collector's own metrics on
// fixed ports).
const traceJaegerConfig = `
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: %[1]s
    grpc:
      endpoint: %[2]s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[3]s
      http:
        endpoint: %[4]s
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// traceStartJaeger runs Jaeger on free loopback ports and waits until it both
// answers queries and accepts OTLP.
func traceStartJaeger(t *testing.T) *traceJaeger {
	t.Helper()
	bin := traceJaegerBinary(t)
	j := &traceJaeger{query: freePort(t), otlpGRPC: freePort(t), otlpHTTP: freePort(t)}
	grpcQuery := freePort(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, traceJaegerConfig, j.query, grpcQuery, j.otlpGRPC, j.otlpHTTP), 0o644); err != nil {
		t.Fatal(err)
	}
	j.proc = traceStart(t, "jaeger", nil, bin, "--config", cfg)
	t.Cleanup(func() { j.proc.stop(10 * time.Second) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := j.get(context.Background(), "/api/services", nil)
		for _, a := range []string{j.otlpGRPC, j.otlpHTTP} {
			if err == nil {
				var c net.Conn
				if c, err = net.DialTimeout("tcp", a, time.Second); err == nil {
					c.Close()
				}
			}
		}
		if err == nil {
			return j
		}
		if j.proc.exited() || time.Now().After(deadline) {
			t.Fatalf("Jaeger never became ready: %v\n%s", err, j.proc.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches a query API path into v (nil: only the status matters).
func (j *traceJaeger) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+j.query+path, nil)
	if err != nil {
		return err
	}
	client := http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

// Jaeger's query API JSON (the UI model of /api/traces), the fields the test reads.
type (
	traceResponse struct {
		Data   []traceTrace `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	traceTrace struct {
		TraceID   string                  `json:"traceID"`
		Spans     []traceSpan             `json:"spans"`
		Processes map[string]traceProcess `json:"processes"`
	}
	traceSpan struct {
		TraceID       string `json:"traceID"`
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		StartTime uint64     `json:"startTime"` // µs since the epoch
		Tags      []traceTag `json:"tags"`
		ProcessID string     `json:"processID"`
	}
	traceTag struct {
		Key   string `json:"key"`
		Type  string `json:"type"`
		Value any    `json:"value"`
	}
	traceProcess struct {
		ServiceName string `json:"serviceName"`
	}
)

// traces searches for the traces of a service (and operation, if not empty).
func (j *traceJaeger) traces(ctx context.Context, service, operation string) ([]traceTrace, error) {
	q := url.Values{"service": {service}, "limit": {"100"}, "lookback": {"1h"}}
	if operation != "" {
		q.Set("operation", operation)
	}
	var r traceResponse
	if err := j.get(ctx, "/api/traces?"+q.Encode(), &r); err != nil {
		return nil, err
	}
	if len(r.Errors) > 0 {
		return nil, fmt.Errorf("search %s: %v", q.Encode(), r.Errors)
	}
	return r.Data, nil
}

// trace fetches one trace by id.
func (j *traceJaeger) trace(ctx context.Context, id string) (traceTrace, error) {
	var r traceResponse
	if err := j.get(ctx, "/api/traces/"+url.PathEscape(id), &r); err != nil {
		return traceTrace{}, err
	}
	if len(r.Data) != 1 {
		return traceTrace{}, fmt.Errorf("GET /api/traces/%s: %d traces, errors %v", id, len(r.Data), r.Errors)
	}
	return r.Data[0], nil
}

// tag returns a span's tag value.
func (s traceSpan) tag(key string) (any, bool) {
	for _, tg := range s.Tags {
		if tg.Key == key {
			return tg.Value, true
		}
	}
	return nil, false
}

// kind is the span kind (server, client, internal, …) as Jaeger tags it.
func (s traceSpan) kind() string {
	v, _ := s.tag("span.kind")
	k, _ := v.(string)
	return k
}

// parent is the span's CHILD_OF parent ("" for a root).
func (s traceSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			return r.SpanID
		}
	}
	return ""
}

// service is the service that reported a span.
func (tr traceTrace) service(s traceSpan) string { return tr.Processes[s.ProcessID].ServiceName }

// find returns the spans of a service with the given name and kind.
func (tr traceTrace) find(service, name, kind string) []traceSpan {
	var out []traceSpan
	for _, s := range tr.Spans {
		if s.OperationName == name && tr.service(s) == service && (kind == "" || s.kind() == kind) {
			out = append(out, s)
		}
	}
	return out
}

// descends reports whether span id has ancestor among its parents (transitively).
func (tr traceTrace) descends(id, ancestor string) bool {
	byID := map[string]traceSpan{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
	}
	for seen := 0; seen <= len(tr.Spans); seen++ {
		s, ok := byID[id]
		if !ok {
			return false
		}
		id = s.parent()
		if id == ancestor {
			return true
		}
	}
	return false
}

// describe draws a trace as a tree of service/kind name lines, children in start
// order, for logs and failure messages.
func (tr traceTrace) describe() string {
	ids := map[string]bool{}
	for _, s := range tr.Spans {
		ids[s.SpanID] = true
	}
	kids := map[string][]traceSpan{} // by parent span id; "" holds the roots
	for _, s := range tr.Spans {
		p := s.parent()
		if !ids[p] {
			p = ""
		}
		kids[p] = append(kids[p], s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "trace %s, %d spans:\n", tr.TraceID, len(tr.Spans))
	var draw func(parent string, depth int)
	draw = func(parent string, depth int) {
		list := kids[parent]
		sort.Slice(list, func(i, j int) bool { return list[i].StartTime < list[j].StartTime })
		for _, s := range list {
			fmt.Fprintf(&b, "%s%s %s/%s %s\n", strings.Repeat("  ", depth+1), s.SpanID, tr.service(s), s.kind(), s.OperationName)
			draw(s.SpanID, depth+1)
		}
	}
	draw("", 0)
	return b.String()
}
