// Package deploy_test checks the deployment manifests in this directory against the
// specd binary they deploy. Every manifest is parsed with a real parser (YAML, HCL, the
// Compose loader, Kubernetes API types with unknown fields refused, a Dockerfile and
// a systemd unit reader written here), and then cross-checked:
//
//   - every command line names a real subcommand and only flags that the built binary
//     reports for it (`specd <sub> -h`), with the values they need;
//   - gRPC ports agree with the binary's default listen ports everywhere they appear
//     (EXPOSE, containerPort, probes, Services, Consul checks, Nomad, Compose), and the
//     metrics port with --metrics-listen;
//   - health checks name the gRPC services the protos define;
//   - Consul names, tags, upstreams and intentions agree with each other and with the
//     static addresses the router is given;
//   - the models named exist in the shared model directory, and memory limits hold the
//     model file plus the KV budget.
//
// TestManifestsServe then starts the services with each manifest's own flags and
// environment (addresses moved to loopback, models from the shared directory, a fake
// Consul agent and a sink for OTLP) and generates through them.
//
// Nothing here runs Docker, Kubernetes, Nomad, Consul or Envoy: what they would make
// of these files beyond their syntax and the facts above is not tested here (see
// README.md).
package deploy_test

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/specd-dev/specd/internal/testmodels"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// specdBin is the binary built once for these tests.
var specdBin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "specd-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	specdBin = filepath.Join(dir, "specd")
	build := exec.Command(goTool(), "build", "-o", specdBin, "./cmd/specd")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/specd: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines: %v\n", err)
			return 1
		}
	}
	return code
}

// goTool is the go command: the one on PATH, else the one of this toolchain.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// metricsPort is where every containerised service serves /metrics and /healthz
// (--metrics-listen=0.0.0.0:9090); off-mesh the binary's default is loopback.
const metricsPort = 9090

// role is one of the three services, with the names the mesh knows it by.
type role struct {
	sub     string // specd subcommand
	consul  string // Consul service name
	tag     string // Consul tag
	health  string // grpc.health.v1 service name, from the generated service descriptor
	model   bool   // loads a model
	metrics bool   // has --metrics-listen
}

var roles = map[string]role{
	"router":   {sub: "router", consul: "specd-router", tag: "router", health: specdv1.GenerationService_ServiceDesc.ServiceName, metrics: true},
	"verifier": {sub: "verifier", consul: "specd-verifier", tag: "verifier", health: speculationv1.VerifierService_ServiceDesc.ServiceName, model: true, metrics: true},
	"draft":    {sub: "draft", consul: "specd-draft", tag: "draft", health: speculationv1.DraftService_ServiceDesc.ServiceName, model: true, metrics: true},
}

// roleNames in the order the services start.
var roleNames = []string{"verifier", "draft", "router"}

// roleByConsul maps a Consul service name to its role.
func roleByConsul(name string) (role, bool) {
	for _, r := range roles {
		if r.consul == name {
			return r, true
		}
	}
	return role{}, false
}

// grpcPort is a role's gRPC port: the port of the binary's default --listen.
func grpcPort(t *testing.T, sub string) int {
	t.Helper()
	f, ok := flagsOf(t, sub)["listen"]
	if !ok {
		t.Fatalf("specd %s has no -listen flag", sub)
	}
	_, p, err := net.SplitHostPort(f.def)
	if err != nil {
		t.Fatalf("specd %s: default -listen %q: %v", sub, f.def, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// flagInfo is one flag as `specd <sub> -h` prints it.
type flagInfo struct {
	isBool bool
	def    string // the printed default, unquoted; "" for the zero value
}

var (
	flagsMu    sync.Mutex
	flagsCache = map[string]map[string]flagInfo{}
)

var (
	helpFlagLine = regexp.MustCompile(`^  -(\S+)(?: (\S+))?(?:\t.*)?$`)
	helpDefault  = regexp.MustCompile(`\(default ("(?:[^"\\]|\\.)*"|[^:)][^)]*)\)$`)
)

// flagsOf returns the flags of a subcommand, read from its -h output.
func flagsOf(t *testing.T, sub string) map[string]flagInfo {
	t.Helper()
	flagsMu.Lock()
	defer flagsMu.Unlock()
	if fs, ok := flagsCache[sub]; ok {
		return fs
	}
	out, err := exec.Command(specdBin, sub, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("specd %s -h: %v\n%s", sub, err, out)
	}
	fs := parseHelp(string(out))
	if len(fs) == 0 {
		t.Fatalf("specd %s -h printed no flags:\n%s", sub, out)
	}
	flagsCache[sub] = fs
	return fs
}

// parseHelp reads flag.PrintDefaults output: "  -name type" (no type for a bool),
// then the usage on lines indented by a tab, ending in "(default X)" when the
// default is not the zero value.
func parseHelp(out string) map[string]flagInfo {
	fs := map[string]flagInfo{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		if m := helpFlagLine.FindStringSubmatch(line); m != nil {
			cur = m[1]
			fs[cur] = flagInfo{isBool: m[2] == ""}
			if _, usage, ok := strings.Cut(line, "\t"); ok { // a one-letter bool: usage on the same line
				line = usage
			} else {
				continue
			}
		}
		if cur == "" || !strings.HasPrefix(line, "    \t") && !strings.Contains(line, "(default") {
			continue
		}
		if m := helpDefault.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			f := fs[cur]
			f.def = m[1]
			if u, err := strconv.Unquote(m[1]); err == nil {
				f.def = u
			}
			fs[cur] = f
		}
	}
	return fs
}

// flagArg is one flag given on a command line.
type flagArg struct {
	name, value string
}

// parseArgs parses args (after the subcommand) as Go's flag package would, against
// the flags the binary reports. Positional arguments are an error: specd takes none.
// It goes on past an unknown flag written as -name=value, so that one missing flag
// does not hide every other finding; the errors come back together.
func parseArgs(fs map[string]flagInfo, args []string) ([]flagArg, []error) {
	var out []flagArg
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			errs = append(errs, fmt.Errorf("unexpected argument %q", a))
			break
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		name, value, hasValue := strings.Cut(name, "=")
		f, ok := fs[name]
		if !ok {
			errs = append(errs, fmt.Errorf("flag -%s: no such flag", name))
			if !hasValue {
				break
			}
			out = append(out, flagArg{name, value})
			continue
		}
		switch {
		case hasValue:
		case f.isBool:
			value = "true"
		case i+1 < len(args):
			i++
			value = args[i]
		default:
			errs = append(errs, fmt.Errorf("flag -%s needs a value", name))
			continue
		}
		if f.isBool {
			if _, err := strconv.ParseBool(value); err != nil {
				errs = append(errs, fmt.Errorf("flag -%s=%q: not a boolean", name, value))
			}
		}
		out = append(out, flagArg{name, value})
	}
	return out, errs
}

// launch is one way a manifest starts specd.
type launch struct {
	where string            // manifest and object, for messages
	args  []string          // subcommand first
	env   map[string]string // what the process sees, placeholders resolved
	// memLimit is the memory limit in bytes; 0 when the manifest sets none.
	memLimit int64
	// cpuLimit is the CPU limit in cores; 0 when the manifest sets none.
	cpuLimit float64
	// probes are the exec probes' commands (run inside the container), if any.
	probes [][]string
	// modelsMount is where the model directory is mounted, "" if it is not.
	modelsMount string
}

// parsed is a launch checked against the binary: its flags and their values.
type parsed struct {
	launch
	sub   string
	flags []flagArg
}

// get returns the last value given for any of names, and whether one was.
func (p parsed) get(names ...string) (string, bool) {
	for i := len(p.flags) - 1; i >= 0; i-- {
		if slices.Contains(names, p.flags[i].name) {
			return p.flags[i].value, true
		}
	}
	return "", false
}

// value is the flag's value, or the binary's default when the launch does not set it.
func (p parsed) value(t *testing.T, name string) string {
	if v, ok := p.get(name); ok {
		return v
	}
	return flagsOf(t, p.sub)[name].def
}

// port of a host:port flag value (its default when not given).
func (p parsed) port(t *testing.T, name string) int {
	t.Helper()
	v := p.value(t, name)
	_, ps, err := net.SplitHostPort(v)
	if err != nil {
		t.Errorf("%s: --%s=%q: %v", p.where, name, v, err)
		return 0
	}
	n, _ := strconv.Atoi(ps)
	return n
}

// allowedEnv says which variables a manifest may give specd: specd reads only
// SPECD_MODELS and OTEL_*; the Consul client reads CONSUL_HTTP_TOKEN when
// --consul-token is empty; POD_NAME and POD_IP exist for Kubernetes $(VAR)
// substitution.
func allowedEnv(name string) bool {
	switch name {
	case "SPECD_MODELS", "CONSUL_HTTP_TOKEN", "POD_NAME", "POD_IP":
		return true
	}
	return strings.HasPrefix(name, "OTEL_")
}

// runtimeHeadroom is what a service needs besides its weights and KV cache: the Go
// runtime, gRPC buffers, activations.
const runtimeHeadroom = 64 << 20

// checkLaunch checks a launch against the binary and returns it parsed.
func checkLaunch(t *testing.T, l launch) parsed {
	t.Helper()
	p := parsed{launch: l}
	if len(l.args) == 0 {
		t.Errorf("%s: no arguments: the image's entrypoint needs a subcommand", l.where)
		return p
	}
	p.sub = l.args[0]
	r, isRole := roles[p.sub]
	if !isRole && p.sub != "up" {
		t.Errorf("%s: subcommand %q: want router, verifier, draft or up", l.where, p.sub)
		return p
	}
	fs := flagsOf(t, p.sub)
	flags, errs := parseArgs(fs, l.args[1:])
	for _, err := range errs {
		t.Errorf("%s: specd %s: %v", l.where, p.sub, err)
	}
	p.flags = flags
	for k := range l.env {
		if !allowedEnv(k) {
			t.Errorf("%s: environment variable %s: specd reads only SPECD_MODELS and OTEL_* (everything else is a flag)", l.where, k)
		}
	}
	p.checkTLS(t)
	if !isRole { // up
		return p
	}
	if got, want := p.port(t, "listen"), grpcPort(t, p.sub); got != want {
		t.Errorf("%s: --listen port = %d, want %d (the binary's default for %s)", l.where, got, want, p.sub)
	}
	if r.metrics {
		if _, ok := p.get("metrics-listen"); !ok {
			t.Errorf("%s: no --metrics-listen: /metrics and /healthz stay on the loopback default", l.where)
		} else if got := p.port(t, "metrics-listen"); got != metricsPort {
			t.Errorf("%s: --metrics-listen port = %d, want %d", l.where, got, metricsPort)
		}
	}
	if adv, ok := p.get("advertise"); ok {
		if _, ok := p.get("consul"); !ok {
			t.Errorf("%s: --advertise=%s without --consul", l.where, adv)
		}
		if got := p.port(t, "advertise"); got != grpcPort(t, p.sub) {
			t.Errorf("%s: --advertise port = %d, want the gRPC port %d", l.where, got, grpcPort(t, p.sub))
		}
	}
	// Under Consul discovery a static list would be ignored, and specd refuses it.
	for discovery, lists := range map[string][]string{"discovery": {"verifiers", "drafts"}, "draft-discovery": {"drafts"}} {
		if d, _ := p.get(discovery); d != "consul" {
			continue
		}
		for _, list := range lists {
			if v, ok := p.get(list); ok {
				t.Errorf("%s: --%s=%s with --%s=consul: specd %s refuses it", l.where, list, v, discovery, p.sub)
			}
		}
	}
	if r.model {
		p.checkModel(t)
	} else if l.memLimit > 0 && l.memLimit < runtimeHeadroom {
		t.Errorf("%s: memory limit %d bytes, want at least %d", l.where, l.memLimit, runtimeHeadroom)
	}
	if l.cpuLimit > 0 && r.model {
		threads, _ := strconv.Atoi(p.value(t, "threads"))
		if float64(threads) > l.cpuLimit {
			t.Errorf("%s: --threads=%d compute threads exceed the CPU limit of %g", l.where, threads, l.cpuLimit)
		}
	}
	return p
}

// tlsFiles are the base names of the TLS files a launch names: a Kubernetes TLS
// Secret's keys as cert-manager writes them, and deploy/tls/make-certs.sh's layout.
var tlsFiles = map[string]string{"tls-cert": "tls.crt", "tls-key": "tls.key", "tls-ca": "ca.crt"}

// checkTLS applies the binary's rule before the tests move --listen to loopback: a
// non-loopback listener serves TLS or says --insecure-plaintext. A service that serves
// TLS names all three files, with the Secret's base names.
func (p parsed) checkTLS(t *testing.T) {
	t.Helper()
	host, _, _ := net.SplitHostPort(p.value(t, "listen"))
	ip := net.ParseIP(host)
	loopback := host == "localhost" || ip != nil && ip.IsLoopback()
	_, plaintext := p.get("insecure-plaintext")
	n := 0
	for flag, base := range tlsFiles {
		if v, ok := p.get(flag); ok {
			n++
			if filepath.Base(v) != base {
				t.Errorf("%s: --%s=%s: want a file named %s (a TLS Secret's key)", p.where, flag, v, base)
			}
		}
	}
	switch {
	case n != 0 && n != len(tlsFiles):
		t.Errorf("%s: give --tls-cert, --tls-key and --tls-ca together (mTLS)", p.where)
	case n == 0 && !loopback && !plaintext:
		t.Errorf("%s: --listen=%s off loopback without TLS or --insecure-plaintext: specd refuses to start", p.where, p.value(t, "listen"))
	}
}

// hasTLS reports whether the launch serves TLS.
func (p parsed) hasTLS() bool {
	_, ok := p.get("tls-cert")
	return ok
}

// checkModel checks that the model exists in the shared directory, that the process
// finds it in the mounted directory, and that the memory limit holds it and the KV
// budget.
func (p parsed) checkModel(t *testing.T) {
	t.Helper()
	name := p.value(t, "m")
	if v, ok := p.get("m", "model"); ok {
		name = v
	}
	if strings.ContainsRune(name, '/') {
		t.Errorf("%s: model %q: name a model in the model directory, not a path", p.where, name)
		return
	}
	size := modelSize(t, name)
	dir, ok := p.get("models")
	if !ok {
		dir = p.env["SPECD_MODELS"]
	}
	switch {
	case dir == "":
		t.Errorf("%s: neither --models nor SPECD_MODELS: the model directory would be guessed", p.where)
	case p.modelsMount != "" && filepath.Clean(dir) != filepath.Clean(p.modelsMount):
		t.Errorf("%s: model directory %s, but the models are mounted at %s", p.where, dir, p.modelsMount)
	}
	budget, err := strconv.ParseInt(p.value(t, "kv-budget"), 10, 64)
	if err != nil {
		t.Errorf("%s: --kv-budget: %v", p.where, err)
		return
	}
	if need := size + budget + runtimeHeadroom; p.memLimit > 0 && p.memLimit < need {
		t.Errorf("%s: memory limit %d MiB < model %s (%d MiB) + KV budget (%d MiB) + %d MiB",
			p.where, p.memLimit>>20, name, size>>20, budget>>20, runtimeHeadroom>>20)
	}
}

// sharedModels is the shared model directory (../shared/models or SPECD_MODELS).
func sharedModels(t *testing.T) string {
	t.Helper()
	return filepath.Dir(testmodels.ForTest(t, "specd-target-q8_0"))
}

// modelSize returns the size of a model file in the shared directory, failing the
// test when it does not exist.
func modelSize(t *testing.T, name string) int64 {
	t.Helper()
	st, err := os.Stat(testmodels.ForTest(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// hostPort splits an address, reporting a bad one.
func hostPort(t *testing.T, where, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s: address %q: %v", where, addr, err)
		return "", 0
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Errorf("%s: address %q: port: %v", where, addr, err)
	}
	return h, n
}

// readFile reads a file of this directory, failing the test when it cannot.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEveryManifestIsChecked fails when a file in deploy/ is not read by one of the
// tests here, so that a new manifest cannot go unchecked.
func TestEveryManifestIsChecked(t *testing.T) {
	claimed := map[string]bool{"README.md": true, makeCertsScript: true}
	for _, f := range dockerFiles {
		claimed[f] = true
	}
	for _, f := range kustomizeFiles(t) {
		claimed[f] = true
	}
	for _, pattern := range []string{consulServiceGlob, consulEntryGlob, systemdGlob, nomadGlob} {
		ms, _ := filepath.Glob(pattern)
		for _, f := range ms {
			claimed[f] = true
		}
	}
	for _, f := range composeFiles(t) {
		claimed[f] = true
	}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(path, ".go") || claimed[path] {
			return nil
		}
		t.Errorf("%s: no test reads this file", path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
