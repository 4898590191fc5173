package deploy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

const (
	consulServiceGlob = "consul/*.hcl"
	consulEntryGlob   = "consul/config-entries/*.hcl"
	systemdGlob       = "consul/systemd/*.service"
	nomadGlob         = "nomad/*.nomad.hcl"
)

// meshService is a service registered in Consul with a Connect sidecar, from a Consul
// agent service definition or a Nomad service block.
type meshService struct {
	where     string
	name      string
	port      int
	tags      []string
	meta      map[string]string
	sidecar   bool
	upstreams map[string]int // destination service → local bind port
}

// checkMesh cross-checks the mesh registrations of the three roles with each other and
// with the command lines that run them: the services listen where the sidecars
// forward, the router's static addresses are its upstreams, and the draft address the
// router hands a verifier is the verifier's own upstream to the drafts.
func checkMesh(t *testing.T, where string, svcs []meshService, runs map[string]parsed) {
	t.Helper()
	byRole := map[string]meshService{}
	for _, s := range svcs {
		r, ok := roleByConsul(s.name)
		if !ok {
			t.Errorf("%s: service %q is none of specd-router, specd-verifier, specd-draft", s.where, s.name)
			continue
		}
		if _, dup := byRole[r.sub]; dup {
			t.Errorf("%s: a second %s", s.where, s.name)
		}
		byRole[r.sub] = s
		if s.port != grpcPort(t, r.sub) {
			t.Errorf("%s: %s port %d, want %d", s.where, s.name, s.port, grpcPort(t, r.sub))
		}
		if !slices.Contains(s.tags, r.tag) {
			t.Errorf("%s: %s tags %v, want %q", s.where, s.name, s.tags, r.tag)
		}
		if !s.sidecar {
			t.Errorf("%s: %s has no Connect sidecar", s.where, s.name)
		}
		for dest := range s.upstreams {
			if _, ok := roleByConsul(dest); !ok {
				t.Errorf("%s: upstream %q is not a specd service", s.where, dest)
			}
		}
	}
	for _, r := range roleNames {
		if _, ok := byRole[r]; !ok {
			t.Errorf("%s: no %s service", where, roles[r].consul)
		}
	}
	wantUp := map[string][]string{"router": {"specd-draft", "specd-verifier"}, "verifier": {"specd-draft"}, "draft": nil}
	for r, want := range wantUp {
		s, ok := byRole[r]
		if !ok {
			continue
		}
		var got []string
		for d := range s.upstreams {
			got = append(got, d)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %s upstreams %v, want %v", s.where, s.name, got, want)
		}
	}
	if rb, vb := byRole["router"].upstreams["specd-draft"], byRole["verifier"].upstreams["specd-draft"]; rb != vb {
		t.Errorf("%s: the router's specd-draft upstream binds %d, the verifier's %d: the draft address the router hands the verifier would not work there", where, rb, vb)
	}

	for r, p := range runs {
		s, ok := byRole[r]
		if !ok {
			continue
		}
		if a, ok := p.get("consul"); ok {
			t.Errorf("%s: --consul=%s: the mesh registration (%s) already registers %s; this would add a second instance", p.where, a, s.where, s.name)
		}
		if m, ok := s.meta["model"]; ok {
			if got := p.value(t, "m"); got != m {
				t.Errorf("%s: runs model %s, but %s says meta.model = %s", p.where, got, s.where, m)
			}
		}
		host, _ := hostPort(t, p.where, p.value(t, "listen"))
		if r != "router" && host != "127.0.0.1" {
			t.Errorf("%s: --listen=%s: in the mesh a %s listens on loopback only, behind its sidecar", p.where, p.value(t, "listen"), r)
		}
		if r != "router" {
			continue
		}
		if d := p.value(t, "discovery"); d != "static" {
			t.Errorf("%s: --discovery=%s, want static (the sidecar's upstreams)", p.where, d)
		}
		for _, f := range []struct{ flag, dest string }{{"verifiers", "specd-verifier"}, {"drafts", "specd-draft"}} {
			if got, want := p.value(t, f.flag), fmt.Sprintf("127.0.0.1:%d", s.upstreams[f.dest]); got != want {
				t.Errorf("%s: --%s=%s, want %s (the %s upstream)", p.where, f.flag, got, want, f.dest)
			}
		}
	}
	checkIntentions(t, svcs)
}

// checkIntentions checks that the config entries give every service the grpc protocol
// and allow every upstream edge.
func checkIntentions(t *testing.T, svcs []meshService) {
	t.Helper()
	entries := consulEntries(t)
	for _, s := range svcs {
		if e, ok := entries["service-defaults/"+s.name]; !ok || e.str(t, "Protocol") != "grpc" {
			t.Errorf("%s: no service-defaults entry with Protocol = \"grpc\" for %s", s.where, s.name)
		}
		for dest := range s.upstreams {
			e, ok := entries["service-intentions/"+dest]
			allowed := false
			if ok {
				for _, src := range asList(e.get(t, "Sources")) {
					m, _ := src.(map[string]any)
					allowed = allowed || (m["Name"] == s.name && m["Action"] == "allow")
				}
			}
			if !allowed {
				t.Errorf("%s: no intention allows %s → %s (%s)", s.where, s.name, dest, consulEntryGlob)
			}
		}
	}
}

// consulEntries reads the config entries by "Kind/Name".
func consulEntries(t *testing.T) map[string]*hclBlock {
	t.Helper()
	files, _ := filepath.Glob(consulEntryGlob)
	if len(files) == 0 {
		t.Fatalf("no %s", consulEntryGlob)
	}
	out := map[string]*hclBlock{}
	for _, f := range files {
		b := parseHCL(t, f)
		kind, name := b.str(t, "Kind"), b.str(t, "Name")
		if kind != "service-defaults" && kind != "service-intentions" {
			t.Errorf("%s: Kind %q", f, kind)
		}
		if _, ok := roleByConsul(name); !ok {
			t.Errorf("%s: Name %q is not a specd service", f, name)
		}
		if want := kind + "-" + name + ".hcl"; filepath.Base(f) != want {
			t.Errorf("%s: holds %s %s, want it named %s", f, kind, name, want)
		}
		out[kind+"/"+name] = b
	}
	return out
}

// duration parses a Consul/Nomad duration attribute, requiring it.
func duration(t *testing.T, b *hclBlock, name string, least time.Duration) {
	t.Helper()
	d, err := time.ParseDuration(b.str(t, name))
	if err != nil || d < least {
		t.Errorf("%s: %s = %q: want a duration of at least %v", b.where(), name, b.str(t, name), least)
	}
}

// upstreamsOf reads proxy upstreams written as an attribute (Consul: a list of
// objects) or as repeated blocks (Nomad).
func upstreamsOf(t *testing.T, proxy *hclBlock) map[string]int {
	t.Helper()
	ups := map[string]int{}
	if proxy == nil {
		return ups
	}
	for _, u := range asList(proxy.get(t, "upstreams")) {
		m, _ := u.(map[string]any)
		name, _ := m["destination_name"].(string)
		port, _ := m["local_bind_port"].(float64)
		ups[name] = int(port)
	}
	for _, u := range proxy.all("upstreams") {
		ups[u.str(t, "destination_name")] = int(u.num(t, "local_bind_port"))
	}
	for name, port := range ups {
		if name == "" || port < 1024 || port > 65535 {
			t.Errorf("%s: upstream %q on port %d", proxy.where(), name, port)
		}
	}
	return ups
}

func metaOf(t *testing.T, b *hclBlock) map[string]string {
	t.Helper()
	out := map[string]string{}
	m, _ := b.get(t, "meta").(map[string]any) // Consul: meta = { ... }
	if mb := b.one(t, "meta"); mb != nil {    // Nomad: meta { ... }
		m = map[string]any{}
		for k := range mb.attrs {
			m[k] = mb.get(t, k)
		}
	}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func TestConsulServiceDefinitions(t *testing.T) {
	files, _ := filepath.Glob(consulServiceGlob)
	var svcs []meshService
	units := systemdLaunches(t)
	for _, f := range files {
		root := parseHCL(t, f)
		s := root.one(t, "service")
		if s == nil || len(root.blocks) != 1 || len(root.attrs) != 0 {
			t.Errorf("%s: want exactly one service block", f)
			continue
		}
		ms := meshService{where: s.where(), name: s.str(t, "name"), port: int(s.num(t, "port")), tags: s.strs(t, "tags"), meta: metaOf(t, s)}
		if want := ms.name + ".hcl"; filepath.Base(f) != want {
			t.Errorf("%s: defines %s, want it named %s", f, ms.name, want)
		}
		r, _ := roleByConsul(ms.name)
		checks := s.all("check")
		if len(checks) != 1 {
			t.Errorf("%s: %d checks, want one gRPC check", s.where(), len(checks))
		}
		for _, c := range checks {
			want := fmt.Sprintf("127.0.0.1:%d/%s", ms.port, r.health)
			if got := c.str(t, "grpc"); got != want {
				t.Errorf("%s: check grpc = %q, want %q", c.where(), got, want)
			}
			// The agent checks the service as its unit serves it: plaintext behind the
			// sidecar, or TLS (the router's public port) verified for a name the
			// certificate of deploy/tls/make-certs.sh carries.
			tls, _ := c.get(t, "grpc_use_tls").(bool)
			if u, ok := units[r.sub]; ok && tls != u.hasTLS() {
				t.Errorf("%s: grpc_use_tls = %v, but %s serves TLS %v", c.where(), tls, u.where, u.hasTLS())
			}
			if name, _ := c.get(t, "tls_server_name").(string); tls && name != ms.name {
				t.Errorf("%s: tls_server_name = %q, want %q (the certificate's DNS name)", c.where(), name, ms.name)
			}
			duration(t, c, "interval", time.Second)
			duration(t, c, "timeout", time.Second)
			duration(t, c, "deregister_critical_service_after", time.Minute) // Consul's floor
		}
		if cn := s.one(t, "connect"); cn != nil {
			if sc := cn.one(t, "sidecar_service"); sc != nil {
				ms.sidecar = true
				ms.upstreams = upstreamsOf(t, sc.one(t, "proxy"))
			}
		}
		svcs = append(svcs, ms)
	}
	checkMesh(t, "consul/", svcs, units)
}

// unit is a systemd unit file: section → key → values in order.
type unit map[string]map[string][]string

// parseUnit reads a systemd unit file: sections, Key=Value lines, comments (# and ;),
// backslash continuations. Quoting is not interpreted, so it refuses quotes.
func parseUnit(src []byte) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(src))
	var pending string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			pending += strings.TrimSpace(body) + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: %q is not Key=Value in a section", n, line)
		}
		if strings.ContainsAny(v, `"'`) {
			return nil, fmt.Errorf("line %d: quoting is not supported by this reader", n)
		}
		u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	if pending != "" {
		return nil, fmt.Errorf("continuation at the end of the file")
	}
	return u, sc.Err()
}

// systemdSize parses a systemd byte size (K, M, G, T are powers of 1024).
func systemdSize(s string) (int64, error) {
	mult := int64(1)
	if i := strings.IndexAny(s, "KMGT"); i >= 0 && i == len(s)-1 {
		mult = 1 << (10 * (strings.IndexByte("KMGT", s[i]) + 1))
		s = s[:i]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// systemdLaunches reads the units and returns their launches by role.
func systemdLaunches(t *testing.T) map[string]parsed {
	t.Helper()
	files, _ := filepath.Glob(systemdGlob)
	out := map[string]parsed{}
	for _, f := range files {
		u, err := parseUnit(readFile(t, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		svc := u["Service"]
		exec := svc["ExecStart"]
		if len(exec) != 1 {
			t.Errorf("%s: %d ExecStart lines, want one", f, len(exec))
			continue
		}
		argv := strings.Fields(exec[0])
		if !filepath.IsAbs(argv[0]) || filepath.Base(argv[0]) != "specd" {
			t.Errorf("%s: ExecStart runs %s, want an absolute path to specd", f, argv[0])
		}
		env := map[string]string{}
		for _, e := range svc["Environment"] {
			k, v, _ := strings.Cut(e, "=")
			env[k] = v
		}
		l := launch{where: f, args: argv[1:], env: env}
		if m := svc["MemoryMax"]; len(m) == 1 {
			if l.memLimit, err = systemdSize(m[0]); err != nil {
				t.Errorf("%s: MemoryMax=%s: %v", f, m[0], err)
			}
		} else {
			t.Errorf("%s: no MemoryMax", f)
		}
		for _, want := range []string{"NoNewPrivileges=yes", "DynamicUser=yes", "ProtectSystem=strict"} {
			k, v, _ := strings.Cut(want, "=")
			if !slices.Equal(svc[k], []string{v}) {
				t.Errorf("%s: want %s", f, want)
			}
		}
		if u["Install"]["WantedBy"] == nil {
			t.Errorf("%s: no [Install] WantedBy", f)
		}
		p := checkLaunch(t, l)
		if want := "specd-" + p.sub + ".service"; filepath.Base(f) != want {
			t.Errorf("%s: runs specd %s, want it named %s", f, p.sub, want)
		}
		if env["OTEL_SERVICE_NAME"] != roles[p.sub].consul {
			t.Errorf("%s: OTEL_SERVICE_NAME=%q, want %s", f, env["OTEL_SERVICE_NAME"], roles[p.sub].consul)
		}
		out[p.sub] = p
	}
	for _, r := range roleNames {
		if _, ok := out[r]; !ok {
			t.Errorf("no %s unit in %s", r, systemdGlob)
		}
	}
	return out
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit([]byte("# c\n[Service]\nExecStart=/bin/x \\\n    -a \\\n    -b\nEnvironment=A=1\nEnvironment=B=2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u["Service"]["ExecStart"], []string{"/bin/x -a -b"}; !slices.Equal(got, want) {
		t.Errorf("ExecStart = %q, want %q", got, want)
	}
	if got, want := u["Service"]["Environment"], []string{"A=1", "B=2"}; !slices.Equal(got, want) {
		t.Errorf("Environment = %q, want %q", got, want)
	}
	for _, bad := range []string{"A=1\n", "[S]\nA\n", "[S]\nA=\"q\"\n", "[S]\nA=1 \\\n"} {
		if _, err := parseUnit([]byte(bad)); err == nil {
			t.Errorf("parseUnit(%q) = nil error, want one", bad)
		}
	}
	for s, want := range map[string]int64{"1G": 1 << 30, "512M": 512 << 20, "4096": 4096} {
		if got, err := systemdSize(s); err != nil || got != want {
			t.Errorf("systemdSize(%q) = %d, %v, want %d", s, got, err, want)
		}
	}
}

// nomadJob parses a Nomad job file, evaluating var.* from the variables' defaults.
func nomadJob(t *testing.T, path string) *hclBlock {
	t.Helper()
	root := parseHCL(t, path)
	vars := map[string]cty.Value{}
	for _, v := range root.all("variable") {
		if len(v.labels) != 1 {
			t.Errorf("%s: variable without a name", v.where())
			continue
		}
		def, ok := v.attrs["default"]
		if !ok {
			t.Errorf("%s: variable %s has no default: the job would not run without -var", v.where(), v.labels[0])
			continue
		}
		val, diags := def.Expr.Value(nil)
		if diags.HasErrors() {
			t.Errorf("%s: %v", v.where(), diags)
		}
		vars[v.labels[0]] = goToCty(ctyToGo(val))
	}
	*root.ctx = hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}}
	return root
}

func TestNomadJob(t *testing.T) {
	files, _ := filepath.Glob(nomadGlob)
	if len(files) == 0 {
		t.Fatalf("no %s", nomadGlob)
	}
	for _, f := range files {
		svcs, runs := nomadRuns(t, f)
		checkMesh(t, f, svcs, runs)
	}
}

// nomadRuns reads a job: its mesh services and its tasks' launches by role.
func nomadRuns(t *testing.T, path string) ([]meshService, map[string]parsed) {
	t.Helper()
	root := nomadJob(t, path)
	job := root.one(t, "job")
	if job == nil {
		t.Fatalf("%s: no job", path)
	}
	image := ""
	if v := root.ctx.Variables["var"]; v.Type().IsObjectType() && v.Type().HasAttribute("image") {
		image = v.GetAttr("image").AsString()
	}
	var svcs []meshService
	runs := map[string]parsed{}
	for _, g := range job.all("group") {
		ms, p := nomadGroup(t, g, image)
		svcs = append(svcs, ms...)
		if p.sub != "" {
			runs[p.sub] = p
		}
	}
	return svcs, runs
}

// nomadGroup checks one task group: its task's command line, environment, volume and
// resources, its mesh service and its metrics service.
func nomadGroup(t *testing.T, g *hclBlock, image string) ([]meshService, parsed) {
	t.Helper()
	net := g.one(t, "network")
	ports := map[string]int{}
	if net == nil || net.str(t, "mode") != "bridge" {
		t.Errorf("%s: want network { mode = \"bridge\" } for the Connect sidecar", g.where())
	} else {
		for _, p := range net.all("port") {
			ports[p.labels[0]] = int(p.num(t, "to"))
		}
	}
	tasks := g.all("task")
	if len(tasks) != 1 {
		t.Errorf("%s: %d tasks, want one", g.where(), len(tasks))
		return nil, parsed{}
	}
	task := tasks[0]
	cfg := task.one(t, "config")
	if task.str(t, "driver") != "docker" || cfg == nil || cfg.str(t, "image") != image {
		t.Errorf("%s: want the docker driver running var.image (%s)", task.where(), image)
		return nil, parsed{}
	}
	if ro, _ := cfg.get(t, "readonly_rootfs").(bool); !ro {
		t.Errorf("%s: want readonly_rootfs = true", cfg.where())
	}
	l := launch{where: fmt.Sprintf("%s task %s", task.where(), task.labels[0]), args: cfg.strs(t, "args"), env: map[string]string{}}
	if e := task.one(t, "env"); e != nil {
		for k := range e.attrs {
			l.env[k] = e.str(t, k)
		}
	}
	if res := task.one(t, "resources"); res != nil {
		l.memLimit = int64(max(res.num(t, "memory"), res.num(t, "memory_max"))) << 20 // MB in Nomad are MiB
	}
	if vm := task.one(t, "volume_mount"); vm != nil {
		l.modelsMount = vm.str(t, "destination")
		vol := g.all("volume")
		if ro, _ := vm.get(t, "read_only").(bool); !ro || len(vol) != 1 || len(vol[0].labels) != 1 || vol[0].labels[0] != vm.str(t, "volume") {
			t.Errorf("%s: want the group's one volume %q mounted read-only", vm.where(), vm.str(t, "volume"))
		} else if ro, _ := vol[0].get(t, "read_only").(bool); !ro || vol[0].str(t, "type") != "host" {
			t.Errorf("%s: want a read-only host volume", vol[0].where())
		}
	}
	p := checkLaunch(t, l)
	r, ok := roles[p.sub]
	if !ok {
		return nil, p
	}
	if g.labels[0] != r.sub || task.labels[0] != r.sub {
		t.Errorf("%s: group %s task %s runs specd %s", g.where(), g.labels[0], task.labels[0], r.sub)
	}
	if l.env["OTEL_SERVICE_NAME"] != r.consul {
		t.Errorf("%s: OTEL_SERVICE_NAME=%q, want %s", l.where, l.env["OTEL_SERVICE_NAME"], r.consul)
	}

	var svcs []meshService
	for _, s := range g.all("service") {
		name := s.str(t, "name")
		check := s.one(t, "check")
		if name == r.consul+"-metrics" {
			if pl := s.str(t, "port"); ports[pl] != metricsPort || ports[pl] != p.port(t, "metrics-listen") {
				t.Errorf("%s: metrics service on port label %q (to = %d), want the one mapped to --metrics-listen's %d", s.where(), pl, ports[pl], metricsPort)
			}
			if check == nil || check.str(t, "type") != "http" || check.str(t, "path") != "/healthz" {
				t.Errorf("%s: want an http check of /healthz", s.where())
			}
			continue
		}
		port, err := strconv.Atoi(s.str(t, "port"))
		if err != nil {
			t.Errorf("%s: port %q: a Connect service names the port it listens on in its namespace", s.where(), s.str(t, "port"))
		}
		ms := meshService{where: s.where(), name: name, port: port, tags: s.strs(t, "tags"), meta: metaOf(t, s)}
		if check == nil || check.str(t, "type") != "grpc" || check.str(t, "grpc_service") != r.health {
			t.Errorf("%s: want a grpc check of service %s", s.where(), r.health)
		} else {
			if expose, _ := check.get(t, "expose").(bool); !expose {
				t.Errorf("%s: the check needs expose = true to reach a loopback-only port through the sidecar", check.where())
			}
			duration(t, check, "interval", time.Second)
			duration(t, check, "timeout", time.Second)
			// A router's health is NOT_SERVING while no verifier is usable: restarting
			// it then would only keep it down once they return. Its check_restart
			// belongs on /healthz, which tells only that the process is up.
			if r.sub == "router" && check.one(t, "check_restart") != nil {
				t.Errorf("%s: check_restart on the router's gRPC health, which fails while no verifier serves", check.where())
			}
		}
		if cn := s.one(t, "connect"); cn != nil {
			if sc := cn.one(t, "sidecar_service"); sc != nil {
				ms.sidecar = true
				ms.upstreams = upstreamsOf(t, sc.one(t, "proxy"))
			}
		}
		svcs = append(svcs, ms)
	}
	return svcs, p
}
