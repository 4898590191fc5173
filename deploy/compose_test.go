package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const composeFile = "compose/compose.yaml"

// loadCompose loads the Compose project with the loader Docker Compose v2 uses
// (schema validation, interpolation with the defaults written in the file, merge
// keys), with an empty environment so the defaults are what is checked.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile}, cli.WithEnv(nil), cli.WithInterpolation(true),
		cli.WithResolvedPaths(true), cli.WithNormalization(true), cli.WithConsistency(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return p
}

// composeFiles lists the files the Compose project reads besides its own.
func composeFiles(t *testing.T) []string {
	t.Helper()
	files := []string{composeFile}
	for _, s := range loadCompose(t).Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if rel, err := filepath.Rel(absDir(t), v.Source); err == nil && !strings.HasPrefix(rel, "..") {
				files = append(files, rel)
			}
		}
	}
	return files
}

func absDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// composeLaunches checks the specd services of the project and returns their launches.
func composeLaunches(t *testing.T, p *types.Project) map[string]parsed {
	t.Helper()
	out := map[string]parsed{}
	var image string
	for _, name := range roleNames {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("%s: no service %s", composeFile, name)
			continue
		}
		where := composeFile + ": service " + name
		if image == "" {
			image = s.Image
		} else if s.Image != image {
			t.Errorf("%s: image %s, the others run %s", where, s.Image, image)
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if v == nil {
				t.Errorf("%s: environment %s has no value", where, k)
				continue
			}
			env[k] = *v
		}
		l := launch{where: where, args: s.Command, env: env, memLimit: int64(s.MemLimit), cpuLimit: float64(s.CPUS)}
		for _, v := range s.Volumes {
			if v.Target != "/models" {
				t.Errorf("%s: volume %s: only the models are mounted", where, v.Target)
				continue
			}
			l.modelsMount = v.Target
			if !v.ReadOnly || v.Type != types.VolumeTypeBind {
				t.Errorf("%s: the models are not a read-only bind mount", where)
			}
			if st, err := os.Stat(v.Source); err != nil || !st.IsDir() {
				t.Errorf("%s: models from %s: %v (the default is shared/models beside the checkout)", where, v.Source, err)
			} else if filepath.Clean(v.Source) != filepath.Clean(sharedModels(t)) {
				t.Errorf("%s: models from %s, the shared models are in %s", where, v.Source, sharedModels(t))
			}
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: want read_only, cap_drop ALL, no-new-privileges", where)
		}
		if uid, _, _ := strings.Cut(s.User, ":"); uid == "" || uid == "0" || uid == "root" {
			t.Errorf("%s: user %q, want a non-root user", where, s.User)
		}
		pr := checkLaunch(t, l)
		if pr.sub != name {
			t.Errorf("%s: runs specd %s", where, pr.sub)
		}
		if env["OTEL_SERVICE_NAME"] != roles[name].consul {
			t.Errorf("%s: OTEL_SERVICE_NAME=%q, want %s", where, env["OTEL_SERVICE_NAME"], roles[name].consul)
		}
		exposed := map[string]bool{}
		for _, e := range s.Expose {
			exposed[e] = true
		}
		for _, port := range s.Ports {
			exposed[strconv.Itoa(int(port.Target))] = true
		}
		for _, want := range []int{grpcPort(t, name), metricsPort} {
			if !exposed[strconv.Itoa(want)] {
				t.Errorf("%s: port %d neither exposed nor published", where, want)
			}
		}
		if d, ok := s.DependsOn["consul"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: want depends_on consul with condition service_healthy", where)
		}
		out[name] = pr
	}
	return out
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)
	runs := composeLaunches(t, p)

	// Exactly one specd service builds the image, from this repository's Dockerfile.
	builders := 0
	for _, name := range roleNames {
		b := p.Services[name].Build
		if b == nil {
			continue
		}
		builders++
		root, _ := filepath.Abs("..")
		if filepath.Clean(b.Context) != root || b.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s: %s builds %s with %s, want the repository root with deploy/Dockerfile", composeFile, name, b.Context, b.Dockerfile)
		}
	}
	if builders != 1 {
		t.Errorf("%s: %d services build the image, want one", composeFile, builders)
	}

	consul, ok := p.Services["consul"]
	if !ok {
		t.Fatalf("%s: no consul service", composeFile)
	}
	if !strings.HasPrefix(consul.Image, "hashicorp/consul:") || !slices.Contains(consul.Command, "-dev") || consul.HealthCheck == nil {
		t.Errorf("%s: want hashicorp/consul in dev mode with a health check", composeFile)
	}
	for name, pr := range runs {
		addr, ok := pr.get("consul")
		if !ok {
			t.Errorf("%s: no --consul", pr.where)
			continue
		}
		host, port := hostPort(t, pr.where, addr)
		if host != "consul" || port != 8500 {
			t.Errorf("%s: --consul=%s, want consul:8500 (the consul service's HTTP API)", pr.where, addr)
		}
		adv, ok := pr.get("advertise")
		if !ok {
			t.Errorf("%s: no --advertise: Consul's checks and the router would dial the listen address 0.0.0.0", pr.where)
			continue
		}
		if host, port := hostPort(t, pr.where, adv); host != name || port != grpcPort(t, name) {
			t.Errorf("%s: --advertise=%s, want %s:%d (the service's name on the Compose network)", pr.where, adv, name, grpcPort(t, name))
		}
	}
	if r, ok := runs["router"]; ok && r.value(t, "discovery") != "consul" {
		t.Errorf("%s: --discovery=%s, want consul", r.where, r.value(t, "discovery"))
	}

	// OpenTelemetry: every service exports to the collector, which takes OTLP on the
	// port they use and sends traces to the jaeger service.
	col := checkCollector(t, p)
	for _, pr := range runs {
		ep := pr.env["OTEL_EXPORTER_OTLP_ENDPOINT"]
		if want := "http://otel-collector:" + strconv.Itoa(col.otlpGRPC); ep != want || pr.env["OTEL_EXPORTER_OTLP_PROTOCOL"] != "grpc" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT=%s PROTOCOL=%s, want %s over grpc", pr.where, ep, pr.env["OTEL_EXPORTER_OTLP_PROTOCOL"], want)
		}
		if exp := pr.env["OTEL_METRICS_EXPORTER"]; !slices.Contains(strings.Split(exp, ","), "otlp") {
			t.Errorf("%s: OTEL_METRICS_EXPORTER=%q: the collector's Prometheus exporter gets no metrics without otlp", pr.where, exp)
		}
	}
}

// collector is what the Compose file's OpenTelemetry Collector listens on.
type collector struct {
	otlpGRPC int
}

// checkCollector checks otel-collector.yaml and its wiring in the Compose project.
func checkCollector(t *testing.T, p *types.Project) collector {
	t.Helper()
	s, ok := p.Services["otel-collector"]
	if !ok {
		t.Fatalf("%s: no otel-collector service", composeFile)
	}
	var cfgPath string
	for _, v := range s.Volumes {
		if v.Target == "/etc/otelcol-contrib/config.yaml" {
			cfgPath = v.Source
		}
	}
	if cfgPath == "" {
		t.Fatalf("%s: otel-collector mounts no /etc/otelcol-contrib/config.yaml", composeFile)
	}
	docs, err := yamlDocs(readFile(t, cfgPath))
	if err != nil || len(docs) != 1 {
		t.Fatalf("%s: %d documents, %v", cfgPath, len(docs), err)
	}
	cfg := docs[0]
	where := cfgPath
	section := func(name string) map[string]any { m, _ := cfg[name].(map[string]any); return m }
	get := func(m map[string]any, path ...string) any {
		var v any = m
		for _, k := range path {
			mm, _ := v.(map[string]any)
			v = mm[k]
		}
		return v
	}
	var c collector
	ep, _ := get(section("receivers"), "otlp", "protocols", "grpc", "endpoint").(string)
	_, c.otlpGRPC = hostPort(t, where, ep)

	// Every component a pipeline names is defined; extensions in use are defined.
	svc := section("service")
	pipelines, _ := svc["pipelines"].(map[string]any)
	if pipelines["traces"] == nil || pipelines["metrics"] == nil {
		t.Errorf("%s: want traces and metrics pipelines", where)
	}
	for name, pl := range pipelines {
		for _, kind := range []string{"receivers", "processors", "exporters"} {
			for _, id := range asList(get(pl.(map[string]any), kind)) {
				if _, ok := section(kind)[id.(string)]; !ok {
					t.Errorf("%s: pipeline %s uses %s %s, which is not defined", where, name, kind, id)
				}
			}
		}
	}
	for _, id := range asList(svc["extensions"]) {
		if _, ok := section("extensions")[id.(string)]; !ok {
			t.Errorf("%s: extension %s is not defined", where, id)
		}
	}
	// Traces go to Jaeger over OTLP/gRPC, to the jaeger service's OTLP port.
	var toJaeger bool
	for _, id := range asList(get(pipelines, "traces", "exporters")) {
		typ, _, _ := strings.Cut(id.(string), "/")
		endpoint, _ := get(section("exporters"), id.(string), "endpoint").(string)
		if typ == "otlp_grpc" && endpoint != "" {
			host, port := hostPort(t, where, endpoint)
			j, ok := p.Services[host]
			if !ok || !strings.HasPrefix(j.Image, "jaegertracing/jaeger:2.") {
				t.Errorf("%s: exporter %s sends to %s, which is not a Jaeger v2 service", where, id, endpoint)
			}
			if port != 4317 || !slices.ContainsFunc(j.Command, func(a string) bool { return strings.Contains(a, "grpc.endpoint=0.0.0.0:4317") }) {
				t.Errorf("%s: exporter %s sends to port %d; jaeger must listen for OTLP/gRPC there on all interfaces", where, id, port)
			}
			toJaeger = true
		}
	}
	if !toJaeger {
		t.Errorf("%s: no traces exporter to Jaeger over OTLP/gRPC (otlp_grpc)", where)
	}
	// Metrics leave on a Prometheus endpoint that Compose publishes.
	pe, _ := get(section("exporters"), "prometheus", "endpoint").(string)
	_, pport := hostPort(t, where, pe)
	published := false
	for _, port := range s.Ports {
		published = published || int(port.Target) == pport
	}
	if !published || !slices.Contains(asList(get(pipelines, "metrics", "exporters")), any("prometheus")) {
		t.Errorf("%s: the metrics pipeline's Prometheus exporter on %s is not published by %s", where, pe, composeFile)
	}
	return c
}
