package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// kustomizations are the kustomize directories; base comes first.
var kustomizations = []string{"kubernetes/base", "kubernetes/overlays/dev", "kubernetes/overlays/consul"}

// yamlDocs decodes every document of a YAML stream into generic values.
func yamlDocs(data []byte) ([]map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if m != nil {
			docs = append(docs, m)
		}
	}
}

// strictDecode converts a generic document into v through JSON (the field names the
// Kubernetes types carry), refusing fields the type does not have.
func strictDecode(doc map[string]any, v any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// kubeObjects are the objects of a kustomization, decoded into the API's types.
type kubeObjects struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pvcs        map[string]*corev1.PersistentVolumeClaim
	policies    []*networkingv1.NetworkPolicy
}

// decodeKube decodes a stream of Kubernetes objects, failing on a kind it does not
// know or a field the kind does not have.
func decodeKube(data []byte, objs *kubeObjects) error {
	docs, err := yamlDocs(data)
	if err != nil {
		return err
	}
	if objs.configMaps == nil {
		objs.configMaps = map[string]*corev1.ConfigMap{}
		objs.pvcs = map[string]*corev1.PersistentVolumeClaim{}
	}
	for _, doc := range docs {
		kind := fmt.Sprint(doc["apiVersion"], " ", doc["kind"])
		var v any
		switch kind {
		case "apps/v1 Deployment":
			v = &appsv1.Deployment{}
		case "v1 Service":
			v = &corev1.Service{}
		case "v1 ConfigMap":
			v = &corev1.ConfigMap{}
		case "v1 PersistentVolumeClaim":
			v = &corev1.PersistentVolumeClaim{}
		case "v1 Namespace":
			v = &corev1.Namespace{}
		case "networking.k8s.io/v1 NetworkPolicy":
			v = &networkingv1.NetworkPolicy{}
		default:
			return fmt.Errorf("unexpected object %s", kind)
		}
		if err := strictDecode(doc, v); err != nil {
			return fmt.Errorf("%s %v: %w", kind, doc["metadata"], err)
		}
		switch o := v.(type) {
		case *appsv1.Deployment:
			objs.deployments = append(objs.deployments, o)
		case *corev1.Service:
			objs.services = append(objs.services, o)
		case *corev1.ConfigMap:
			objs.configMaps[o.Name] = o
		case *corev1.PersistentVolumeClaim:
			objs.pvcs[o.Name] = o
		case *networkingv1.NetworkPolicy:
			objs.policies = append(objs.policies, o)
		}
	}
	return nil
}

// kustomization is the part of kustomization.yaml these tests read.
type kustomization struct {
	Resources []string
	Patches   []struct {
		Path  string
		Patch string
	}
}

func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	docs, err := yamlDocs(readFile(t, filepath.Join(dir, "kustomization.yaml")))
	if err != nil || len(docs) != 1 {
		t.Fatalf("%s/kustomization.yaml: %d documents, %v", dir, len(docs), err)
	}
	if docs[0]["apiVersion"] != "kustomize.config.k8s.io/v1beta1" || docs[0]["kind"] != "Kustomization" {
		t.Errorf("%s/kustomization.yaml: apiVersion %v kind %v", dir, docs[0]["apiVersion"], docs[0]["kind"])
	}
	b, _ := json.Marshal(docs[0])
	var k kustomization
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	return k
}

// kustomizeFiles lists every file the kustomizations read.
func kustomizeFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range kustomizations {
		files = append(files, filepath.Join(dir, "kustomization.yaml"))
		k := readKustomization(t, dir)
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				files = append(files, p)
			}
		}
		for _, p := range k.Patches {
			if p.Path != "" {
				files = append(files, filepath.Join(dir, p.Path))
			}
		}
	}
	return files
}

func TestKustomizations(t *testing.T) {
	for _, dir := range kustomizations {
		k := readKustomization(t, dir)
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s: resource %s: %v", dir, r, err)
			}
		}
		// Patches are partial objects, but their fields must still exist.
		for _, p := range k.Patches {
			data := []byte(p.Patch)
			if p.Path != "" {
				data = readFile(t, filepath.Join(dir, p.Path))
			}
			if strings.HasPrefix(strings.TrimSpace(string(data)), "- op:") {
				var ops []struct {
					Op, Path string
					Value    any
				}
				if err := yaml.Unmarshal(data, &ops); err != nil {
					t.Errorf("%s: JSON patch: %v", dir, err)
				}
				for _, op := range ops {
					if !slices.Contains([]string{"add", "remove", "replace", "move", "copy", "test"}, op.Op) || !strings.HasPrefix(op.Path, "/") {
						t.Errorf("%s: JSON patch operation %q at %q", dir, op.Op, op.Path)
					}
				}
				continue
			}
			docs, err := yamlDocs(data)
			if err != nil {
				t.Errorf("%s: patch %s: %v", dir, p.Path, err)
				continue
			}
			var objs kubeObjects
			for _, doc := range docs {
				// $patch is a strategic-merge directive, not a field.
				if d, ok := doc["$patch"]; ok {
					if d != "delete" && d != "replace" && d != "merge" {
						t.Errorf("%s: $patch: %v", dir, d)
					}
					delete(doc, "$patch")
				}
				b, _ := yaml.Marshal(doc)
				if err := decodeKube(b, &objs); err != nil {
					t.Errorf("%s: patch %s: %v", dir, p.Path, err)
				}
			}
		}
	}
	// Every file of the base is one of its resources.
	k := readKustomization(t, kustomizations[0])
	files, _ := filepath.Glob(filepath.Join(kustomizations[0], "*.yaml"))
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" && !slices.Contains(k.Resources, filepath.Base(f)) {
			t.Errorf("%s is not listed in %s/kustomization.yaml", f, kustomizations[0])
		}
	}
}

// TestKubernetesBase checks the base as written, without kustomize.
func TestKubernetesBase(t *testing.T) {
	dir := kustomizations[0]
	var objs kubeObjects
	for _, r := range readKustomization(t, dir).Resources {
		if err := decodeKube(readFile(t, filepath.Join(dir, r)), &objs); err != nil {
			t.Errorf("%s/%s: %v", dir, r, err)
		}
	}
	checkKube(t, dir, objs)
}

// TestKubernetesRendered renders every kustomization with `kubectl kustomize` and
// checks the result, overlays included. It is skipped where kubectl is not installed
// (Debian: apt-get install kubectl).
func TestKubernetesRendered(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kubectl not installed: .ci/run installs it (apt-get install kubectl)")
		}
		t.Skip("kubectl not installed: the overlays are parsed (TestKustomizations) but not rendered")
	}
	for _, dir := range kustomizations {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", dir).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, ee.Stderr)
				}
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			var objs kubeObjects
			if err := decodeKube(out, &objs); err != nil {
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			checkKube(t, dir+" (rendered)", objs)
		})
	}
}

var k8sVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandK8s does Kubernetes' $(VAR) substitution, reporting names that are not
// defined (Kubernetes would leave them as they are).
func expandK8s(s string, vars map[string]string) (string, []string) {
	var missing []string
	out := k8sVar.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	return out, missing
}

// podEnv resolves a container's environment as the kubelet would, with stand-ins for
// values that only exist at run time.
func podEnv(t *testing.T, where string, c corev1.Container, objs kubeObjects) map[string]string {
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Errorf("%s: envFrom other than a ConfigMap", where)
			continue
		}
		cm, ok := objs.configMaps[ef.ConfigMapRef.Name]
		if !ok {
			t.Errorf("%s: envFrom ConfigMap %s does not exist", where, ef.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			v, missing := expandK8s(e.Value, env)
			if len(missing) > 0 {
				t.Errorf("%s: env %s uses $(%s), not defined before it", where, e.Name, strings.Join(missing, "), $("))
			}
			env[e.Name] = v
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				env[e.Name] = "10.0.0.1"
			case "metadata.name":
				env[e.Name] = "specd-pod-0"
			default:
				t.Errorf("%s: env %s from field %s", where, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret"
		default:
			t.Errorf("%s: env %s: unexpected valueFrom", where, e.Name)
		}
	}
	return env
}

// kubeLaunch is a Deployment's container as a launch, with the Deployment's role.
type kubeLaunch struct {
	parsed
	role role
	dep  *appsv1.Deployment
	c    corev1.Container
}

// kubeLaunches checks the Deployments and returns their launches by role.
func kubeLaunches(t *testing.T, dir string, objs kubeObjects) map[string]kubeLaunch {
	out := map[string]kubeLaunch{}
	for _, d := range objs.deployments {
		where := fmt.Sprintf("%s: Deployment %s", dir, d.Name)
		r, ok := roles[d.Spec.Template.Labels["app.kubernetes.io/component"]]
		if !ok {
			t.Errorf("%s: label app.kubernetes.io/component = %q, want a role", where, d.Spec.Template.Labels["app.kubernetes.io/component"])
			continue
		}
		if _, dup := out[r.sub]; dup {
			t.Errorf("%s: a second %s Deployment", where, r.sub)
		}
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("%s: the selector does not select the pod template", where)
		}
		ps := d.Spec.Template.Spec
		if len(ps.Containers) != 1 {
			t.Errorf("%s: %d containers, want 1", where, len(ps.Containers))
			continue
		}
		c := ps.Containers[0]
		where += " container " + c.Name
		env := podEnv(t, where, c, objs)
		var args []string
		for _, a := range c.Args {
			x, missing := expandK8s(a, env)
			if len(missing) > 0 {
				t.Errorf("%s: argument %s uses $(%s), not in the container's environment", where, a, strings.Join(missing, "), $("))
			}
			args = append(args, x)
		}
		if len(c.Command) > 0 {
			t.Errorf("%s: command %v overrides the image's entrypoint", where, c.Command)
		}
		l := launch{where: where, args: args, env: env}
		if m := c.Resources.Limits.Memory(); m != nil {
			l.memLimit = m.Value()
		}
		if cpu := c.Resources.Limits.Cpu(); cpu != nil {
			l.cpuLimit = cpu.AsApproximateFloat64()
		}
		for _, vm := range c.VolumeMounts {
			if vm.Name == "models" {
				l.modelsMount = vm.MountPath
			}
		}
		for _, pr := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if pr != nil && pr.Exec != nil {
				l.probes = append(l.probes, pr.Exec.Command)
			}
		}
		p := checkLaunch(t, l)
		if len(args) > 0 && args[0] != r.sub {
			t.Errorf("%s: runs specd %s, but is labelled %s", where, args[0], r.sub)
		}
		out[r.sub] = kubeLaunch{parsed: p, role: r, dep: d, c: c}
	}
	for _, r := range roleNames {
		if _, ok := out[r]; !ok {
			t.Errorf("%s: no %s Deployment", dir, r)
		}
	}
	return out
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkKube cross-checks the objects of one kustomization.
func checkKube(t *testing.T, dir string, objs kubeObjects) {
	t.Helper()
	ls := kubeLaunches(t, dir, objs)
	for _, name := range roleNames {
		kl, ok := ls[name]
		if !ok {
			continue
		}
		checkPod(t, kl, objs)
	}
	services := checkServices(t, dir, objs, ls)
	checkNetworkPolicies(t, dir, objs, ls)

	router, ok := ls["router"]
	if !ok {
		return
	}
	switch d := router.value(t, "discovery"); d {
	case "static":
		for _, target := range []struct{ flag, role string }{{"verifiers", "verifier"}, {"drafts", "draft"}} {
			for _, addr := range strings.Split(router.value(t, target.flag), ",") {
				host, port := hostPort(t, router.where, addr)
				name, _, _ := strings.Cut(host, ".")
				svc, ok := services[name]
				if !ok || svc.role != target.role {
					t.Errorf("%s: --%s=%s: no Service %s in front of the %s", router.where, target.flag, addr, name, target.role)
					continue
				}
				if port != grpcPort(t, target.role) {
					t.Errorf("%s: --%s=%s: port %d, want %d", router.where, target.flag, addr, port, grpcPort(t, target.role))
				}
			}
			// A ClusterIP Service pins the router's one connection to one pod.
			if l, ok := ls[target.role]; ok && l.dep.Spec.Replicas != nil && *l.dep.Spec.Replicas > 1 {
				t.Errorf("%s: %d replicas behind one ClusterIP Service with static discovery: the router would use one", l.where, *l.dep.Spec.Replicas)
			}
		}
	case "consul":
		agent, _ := router.get("consul")
		for _, name := range []string{"verifier", "draft"} {
			l, ok := ls[name]
			if !ok {
				continue
			}
			if a, _ := l.get("consul"); a != agent {
				t.Errorf("%s: --consul=%q, the router watches %q", l.where, a, agent)
			}
			if _, ok := l.get("advertise"); !ok {
				t.Errorf("%s: no --advertise: Consul would register an address nobody can dial", l.where)
			}
		}
	default:
		t.Errorf("%s: --discovery=%q", router.where, d)
	}
}

// checkPod checks a Deployment's pod: ports, probes, security, resources, volumes.
func checkPod(t *testing.T, kl kubeLaunch, objs kubeObjects) {
	t.Helper()
	where, c, ps := kl.where, kl.c, kl.dep.Spec.Template.Spec
	port := grpcPort(t, kl.role.sub)
	named := map[string]int32{}
	for _, p := range c.Ports {
		named[p.Name] = p.ContainerPort
	}
	if named["grpc"] != int32(port) || named["metrics"] != metricsPort || len(named) != 2 {
		t.Errorf("%s: container ports %v, want grpc %d and metrics %d", where, named, port, metricsPort)
	}
	// The kubelet's grpc probe speaks only plaintext: an mTLS service is probed by
	// `specd health` inside the pod, with the pod's own certificate.
	// Liveness asks only that the process answers (`specd health --live`): a router is
	// NOT_SERVING, as a whole too, while no verifier is usable, and a liveness probe
	// failing then would have every router restarted, and held in CrashLoopBackOff,
	// through a verifier outage or a slow first model load. For the same reason the
	// router's startup probe asks only that it answers.
	for _, pr := range []struct {
		name   string
		probe  *corev1.Probe
		health []string // acceptable service names
		live   bool     // --live: any status counts
	}{
		{"startupProbe", c.StartupProbe, []string{"", kl.role.health}, kl.role.sub == "router"},
		{"livenessProbe", c.LivenessProbe, []string{""}, true},
		{"readinessProbe", c.ReadinessProbe, []string{kl.role.health}, false},
	} {
		if pr.probe == nil {
			t.Errorf("%s: no %s", where, pr.name)
			continue
		}
		checkProbe(t, where+" "+pr.name, kl, pr.probe, port, pr.health, pr.live)
	}
	if sc := ps.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: the pod does not run as a non-root user", where)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: want a read-only root filesystem, no privilege escalation, all capabilities dropped", where)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; specd never calls the Kubernetes API", where)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[res]
		lim, okLim := c.Resources.Limits[res]
		if !okReq || !okLim || req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %v limit %v: want both, request ≤ limit", where, res, req.String(), lim.String())
		}
	}
	checkTLSMount(t, kl)
	if !kl.role.model {
		for _, m := range c.VolumeMounts {
			if m.Name != "tls" {
				t.Errorf("%s: the router mounts volume %s", where, m.Name)
			}
		}
		return
	}
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == "models" {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Errorf("%s: want the volume models mounted read-only", where)
		return
	}
	for _, v := range ps.Volumes {
		if v.Name != "models" {
			continue
		}
		switch {
		case v.PersistentVolumeClaim != nil:
			if _, ok := objs.pvcs[v.PersistentVolumeClaim.ClaimName]; !ok {
				t.Errorf("%s: PersistentVolumeClaim %s does not exist", where, v.PersistentVolumeClaim.ClaimName)
			}
			if !v.PersistentVolumeClaim.ReadOnly {
				t.Errorf("%s: the models claim is not mounted read-only", where)
			}
		case v.HostPath != nil:
		default:
			t.Errorf("%s: volume models is neither a claim nor a host path", where)
		}
		return
	}
	t.Errorf("%s: no volume models", where)
}

// kubeService is a Service and the role of the pods it selects.
type kubeService struct {
	*corev1.Service
	role string
}

// checkServices checks that every Deployment has one ClusterIP Service with ports grpc
// and metrics that reach the container's, and returns the Services by name.
func checkServices(t *testing.T, dir string, objs kubeObjects, ls map[string]kubeLaunch) map[string]kubeService {
	t.Helper()
	out := map[string]kubeService{}
	for _, s := range objs.services {
		where := fmt.Sprintf("%s: Service %s", dir, s.Name)
		var matched []string
		for _, kl := range ls {
			if selects(s.Spec.Selector, kl.dep.Spec.Template.Labels) {
				matched = append(matched, kl.role.sub)
			}
		}
		if len(matched) != 1 {
			t.Errorf("%s: selects the pods of %v, want one Deployment", where, matched)
			continue
		}
		kl := ls[matched[0]]
		out[s.Name] = kubeService{s, kl.role.sub}
		if s.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("%s: type %s, want ClusterIP", where, s.Spec.Type)
		}
		want := map[string]int32{"grpc": int32(grpcPort(t, kl.role.sub)), "metrics": metricsPort}
		got := map[string]int32{}
		for _, p := range s.Spec.Ports {
			got[p.Name] = p.Port
			target := p.TargetPort.IntVal
			if p.TargetPort.StrVal != "" {
				target = 0
				for _, cp := range kl.c.Ports {
					if cp.Name == p.TargetPort.StrVal {
						target = cp.ContainerPort
					}
				}
			}
			if target != want[p.Name] {
				t.Errorf("%s: port %s targets %s (container port %d), want %d", where, p.Name, p.TargetPort.String(), target, want[p.Name])
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: ports %v, want %v", where, got, want)
		}
	}
	for _, r := range roleNames {
		found := false
		for _, s := range out {
			found = found || s.role == r
		}
		if !found {
			t.Errorf("%s: no Service in front of the %s", dir, r)
		}
	}
	return out
}

// checkProbe checks one probe: a grpc probe (plaintext services) on the gRPC port, or
// an exec probe running `/specd health` against the gRPC port on loopback with the
// container's own TLS files, expecting the role's identity.
func checkProbe(t *testing.T, where string, kl kubeLaunch, pr *corev1.Probe, port int, health []string, live bool) {
	t.Helper()
	if pr.GRPC != nil {
		svc := ""
		if pr.GRPC.Service != nil {
			svc = *pr.GRPC.Service
		}
		if kl.hasTLS() {
			t.Errorf("%s: a grpc probe of a service that serves only TLS", where)
		}
		if live {
			t.Errorf("%s: a grpc probe fails on NOT_SERVING: want /specd health --live", where)
		}
		if pr.GRPC.Port != int32(port) || !slices.Contains(health, svc) {
			t.Errorf("%s: checks port %d service %q, want port %d service %q", where, pr.GRPC.Port, svc, port, health)
		}
		return
	}
	if pr.Exec == nil || len(pr.Exec.Command) < 2 || pr.Exec.Command[0] != "/specd" || pr.Exec.Command[1] != "health" {
		t.Errorf("%s: neither a grpc probe nor an exec probe running /specd health", where)
		return
	}
	fs := flagsOf(t, "health")
	flags, errs := parseArgs(fs, pr.Exec.Command[2:])
	for _, err := range errs {
		t.Errorf("%s: specd health: %v", where, err)
	}
	probe := parsed{launch: launch{where: where}, sub: "health", flags: flags}
	if got, want := probe.value(t, "addr"), fmt.Sprintf("127.0.0.1:%d", port); got != want {
		t.Errorf("%s: --addr=%s, want %s", where, got, want)
	}
	if svc := probe.value(t, "service"); !slices.Contains(health, svc) {
		t.Errorf("%s: --service=%q, want one of %q", where, svc, health)
	}
	if v, ok := probe.get("live"); ok != live || (ok && v != "true") {
		t.Errorf("%s: --live given %v (%q), want %v", where, ok, v, live)
	}
	for flag := range tlsFiles {
		want, _ := kl.get(flag)
		if got, _ := probe.get(flag); got != want {
			t.Errorf("%s: --%s=%q, the container serves with %q", where, flag, got, want)
		}
	}
	if kl.hasTLS() {
		if id := probe.value(t, "tls-server-id"); id != "spiffe://specd.internal/"+kl.role.sub {
			t.Errorf("%s: --tls-server-id=%q, want the %s's identity spiffe://specd.internal/%s", where, id, kl.role.sub, kl.role.sub)
		}
	}
	if pr.TimeoutSeconds < 3 {
		t.Errorf("%s: timeoutSeconds %d: the probe's own --timeout is 2s", where, pr.TimeoutSeconds)
	}
}

// checkTLSMount checks that a container serving TLS reads its files from a Secret
// mounted read-only, readable by the pod's user.
func checkTLSMount(t *testing.T, kl kubeLaunch) {
	t.Helper()
	cert, ok := kl.get("tls-cert")
	if !ok {
		return
	}
	ps := kl.dep.Spec.Template.Spec
	var mount *corev1.VolumeMount
	for i, m := range kl.c.VolumeMounts {
		if m.MountPath == filepath.Dir(cert) {
			mount = &kl.c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Errorf("%s: --tls-cert=%s is not in a read-only volume mount", kl.where, cert)
		return
	}
	for flag := range tlsFiles {
		if v, _ := kl.get(flag); filepath.Dir(v) != mount.MountPath {
			t.Errorf("%s: --%s=%s is not in the TLS mount %s", kl.where, flag, v, mount.MountPath)
		}
	}
	for _, v := range ps.Volumes {
		if v.Name != mount.Name {
			continue
		}
		if v.Secret == nil {
			t.Errorf("%s: TLS volume %s is not a Secret", kl.where, v.Name)
			return
		}
		if want := "specd-" + kl.role.sub + "-tls"; v.Secret.SecretName != want {
			t.Errorf("%s: TLS Secret %s, want %s", kl.where, v.Secret.SecretName, want)
		}
		mode := int32(0o644)
		if v.Secret.DefaultMode != nil {
			mode = *v.Secret.DefaultMode
		}
		sc := ps.SecurityContext
		groupReadable := mode&0o040 != 0 && sc != nil && sc.FSGroup != nil && sc.RunAsGroup != nil && *sc.FSGroup == *sc.RunAsGroup
		if mode&0o004 != 0 || !groupReadable {
			t.Errorf("%s: TLS Secret mode %#o: want it readable by the pod's group (fsGroup) and not by others", kl.where, mode)
		}
		return
	}
	t.Errorf("%s: no volume %s", kl.where, mount.Name)
}

// checkNetworkPolicies checks who may connect to each role's gRPC port: the verifier
// only from the router, the draft only from the verifier and the router, the router
// from anyone (its public API). Consul's namespace may reach them for health checks.
func checkNetworkPolicies(t *testing.T, dir string, objs kubeObjects, ls map[string]kubeLaunch) {
	t.Helper()
	want := map[string][]string{"verifier": {"router"}, "draft": {"router", "verifier"}, "router": {"*"}}
	for _, target := range roleNames {
		kl, ok := ls[target]
		if !ok {
			continue
		}
		port := grpcPort(t, target)
		var selected bool
		from := map[string]bool{}
		for _, np := range objs.policies {
			if !matchesSelector(t, np.Spec.PodSelector, kl.dep.Spec.Template.Labels) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				continue
			}
			selected = true
			for _, rule := range np.Spec.Ingress {
				if !allowsPort(rule.Ports, port) {
					continue
				}
				if len(rule.From) == 0 {
					from["*"] = true
				}
				for _, peer := range rule.From {
					switch {
					case peer.IPBlock != nil:
						from["ipBlock "+peer.IPBlock.CIDR] = true
					case peer.NamespaceSelector != nil && peer.PodSelector == nil:
						if peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "consul" {
							from["namespace "+metav1.FormatLabelSelector(peer.NamespaceSelector)] = true
						}
					case peer.NamespaceSelector != nil:
						from["pods of namespaces "+metav1.FormatLabelSelector(peer.NamespaceSelector)] = true
					default:
						for _, src := range roleNames {
							if matchesSelector(t, *peer.PodSelector, ls[src].dep.Spec.Template.Labels) {
								from[src] = true
							}
						}
					}
				}
			}
		}
		if !selected {
			t.Errorf("%s: no NetworkPolicy selects the %s pods: anything in the cluster reaches them", dir, target)
			continue
		}
		if got := slices.Sorted(maps.Keys(from)); !slices.Equal(got, want[target]) {
			t.Errorf("%s: the %s's gRPC port %d admits %v, want %v", dir, target, port, got, want[target])
		}
	}
}

func matchesSelector(t *testing.T, sel metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(&sel)
	if err != nil {
		t.Errorf("label selector %v: %v", sel, err)
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(l))
}

func allowsPort(ports []networkingv1.NetworkPolicyPort, port int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Port == nil || p.Port.IntVal == int32(port) || (p.EndPort != nil && p.Port.IntVal <= int32(port) && int32(port) <= *p.EndPort) {
			return true
		}
	}
	return false
}
