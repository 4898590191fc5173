package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var dockerFiles = []string{"Dockerfile", "Dockerfile.dockerignore"}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line  int    // first line
	cmd   string // upper case: FROM, RUN, ...
	args  string
	stage int // index of the build stage it belongs to; -1 before the first FROM
}

// parseDockerfile reads a Dockerfile: parser directives, comments, instructions with
// backslash continuations (the default escape character). Heredocs are not supported
// (and not used).
func parseDockerfile(src []byte) ([]instruction, error) {
	var out []instruction
	sc := bufio.NewScanner(bytes.NewReader(src))
	stage := -1
	var cur *instruction
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (cur != nil && trimmed == "") {
			continue // comments, also inside continuations; blank continuation lines
		}
		if cur == nil {
			if trimmed == "" {
				continue
			}
			cmd, args, _ := strings.Cut(trimmed, " ")
			cur = &instruction{line: n, cmd: strings.ToUpper(cmd), args: ""}
			if strings.Contains(cmd, "<<") || strings.Contains(args, "<<") {
				return nil, fmt.Errorf("line %d: heredocs are not supported", n)
			}
			trimmed = strings.TrimSpace(args)
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.args += body + " "
			continue
		}
		cur.args = strings.Join(strings.Fields(cur.args+trimmed), " ")
		if cur.cmd == "FROM" {
			stage++
		}
		cur.stage = stage
		out = append(out, *cur)
		cur = nil
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: continuation at the end of the file", cur.line)
	}
	return out, sc.Err()
}

// execForm decodes a JSON-array (exec form) argument.
func execForm(args string) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		return nil, fmt.Errorf("%s: not exec form (a JSON array): %v", args, err)
	}
	return v, nil
}

// goDirective returns major.minor of the go directive in ../go.mod.
func goDirective(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?\s*$`).FindSubmatch(readFile(t, "../go.mod"))
	if m == nil {
		t.Fatal("../go.mod: no go directive")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	ins, err := parseDockerfile(readFile(t, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	// Global ARGs (before the first FROM) and their defaults.
	args := map[string]string{}
	for _, in := range ins {
		if in.stage == -1 {
			if in.cmd != "ARG" {
				t.Errorf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		}
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}

	var froms []instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a final stage", len(froms))
	}
	final := len(froms) - 1
	stageName := func(in instruction) (image, name string) {
		f := strings.Fields(in.args)
		f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
		image = expand(f[0])
		if len(f) == 3 && strings.EqualFold(f[1], "AS") {
			name = f[2]
		}
		return image, name
	}
	buildImage, buildName := stageName(froms[0])
	if want := "golang:" + goDirective(t); buildImage != want {
		t.Errorf("Dockerfile:%d: build stage FROM %s, want %s (go.mod's go directive)", froms[0].line, buildImage, want)
	}
	finalImage, _ := stageName(froms[final])
	distroless := regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot$`).MatchString(finalImage)
	if !distroless && finalImage != "scratch" {
		t.Errorf("Dockerfile:%d: final stage FROM %s, want distroless static :nonroot or scratch", froms[final].line, finalImage)
	}

	var built, copied, entry string
	var exposed []int
	var cmd []string
	env := map[string]string{}
	user := ""
	for _, in := range ins {
		switch {
		case in.cmd == "HEALTHCHECK":
			t.Errorf("Dockerfile:%d: HEALTHCHECK needs a command inside the image, and the final image has none", in.line)
		case in.cmd == "RUN" && strings.Contains(in.args, "go build"):
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags='-s -w'", "./cmd/specd"} {
				if !strings.Contains(in.args, want) {
					t.Errorf("Dockerfile:%d: go build without %s", in.line, want)
				}
			}
			if m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(in.args); m != nil {
				built = m[1]
			}
		case (in.cmd == "COPY" || in.cmd == "ADD") && (strings.Contains(in.args, ".gguf") || strings.Contains(in.args, "models")):
			t.Errorf("Dockerfile:%d: %s %s: models are mounted, never baked into the image", in.line, in.cmd, in.args)
		case in.stage != final:
		case in.cmd == "COPY":
			f := strings.Fields(in.args)
			if f[0] != "--from="+buildName || f[1] != built {
				t.Errorf("Dockerfile:%d: final stage COPY %s: want only the binary %s from stage %s", in.line, in.args, built, buildName)
			}
			copied = f[len(f)-1]
		case in.cmd == "ADD":
			t.Errorf("Dockerfile:%d: ADD in the final stage", in.line)
		case in.cmd == "USER":
			user = in.args
		case in.cmd == "ENV":
			k, v, _ := strings.Cut(in.args, "=")
			env[k] = v
		case in.cmd == "EXPOSE":
			for _, f := range strings.Fields(in.args) {
				n, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					t.Errorf("Dockerfile:%d: EXPOSE %s: %v", in.line, f, err)
				}
				exposed = append(exposed, n)
			}
		case in.cmd == "ENTRYPOINT":
			v, err := execForm(in.args)
			if err != nil || len(v) != 1 {
				t.Errorf("Dockerfile:%d: ENTRYPOINT %s: want exec form with the binary alone (%v)", in.line, in.args, err)
				continue
			}
			entry = v[0]
		case in.cmd == "CMD":
			v, err := execForm(in.args)
			if err != nil {
				t.Errorf("Dockerfile:%d: CMD: %v", in.line, err)
			}
			cmd = v
		}
	}
	if built == "" || copied == "" || entry != copied {
		t.Errorf("Dockerfile: built %q, copied to %q, ENTRYPOINT %q: want the built binary copied to the entrypoint", built, copied, entry)
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); (err != nil && !(distroless && uid == "nonroot")) || (err == nil && n == 0) {
		t.Errorf("Dockerfile: USER %q, want a numeric non-root user", user)
	}

	want := []int{metricsPort}
	for _, r := range roleNames {
		want = append(want, grpcPort(t, r))
	}
	slices.Sort(want)
	slices.Sort(exposed)
	if !slices.Equal(exposed, want) {
		t.Errorf("Dockerfile: EXPOSE %v, want %v (the three gRPC ports and metrics)", exposed, want)
	}
	if env["SPECD_MODELS"] != "/models" {
		t.Errorf("Dockerfile: ENV SPECD_MODELS=%q, want /models", env["SPECD_MODELS"])
	}
	// The default command runs: check it like any manifest's.
	if len(cmd) > 0 {
		checkLaunch(t, launch{where: "Dockerfile CMD", args: cmd, env: env, modelsMount: "/models"})
	}

	ignore := strings.Fields(string(readFile(t, "Dockerfile.dockerignore")))
	for _, want := range []string{".git", "**/*.gguf"} {
		if !slices.Contains(ignore, want) {
			t.Errorf("Dockerfile.dockerignore: no %s", want)
		}
	}
}

// dockerfileCmd returns the default command of the image, for TestManifestsServe.
func dockerfileCmd(t *testing.T) []string {
	t.Helper()
	ins, err := parseDockerfile(readFile(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var cmd []string
	for _, in := range ins {
		if in.cmd == "CMD" {
			if cmd, err = execForm(in.args); err != nil {
				t.Fatal(err)
			}
		}
	}
	return cmd
}

func TestParseDockerfile(t *testing.T) {
	src := "# syntax=docker/dockerfile:1\nARG V=1\nFROM a:${V} AS b\nRUN x \\\n  # comment\n\n  y\nFROM c\nCMD [\"z\"]\n"
	got, err := parseDockerfile([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []instruction{
		{line: 2, cmd: "ARG", args: "V=1", stage: -1},
		{line: 3, cmd: "FROM", args: "a:${V} AS b", stage: 0},
		{line: 4, cmd: "RUN", args: "x y", stage: 0},
		{line: 8, cmd: "FROM", args: "c", stage: 1},
		{line: 9, cmd: "CMD", args: `["z"]`, stage: 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseDockerfile = %+v, want %+v", got, want)
	}
	if _, err := parseDockerfile([]byte("RUN a \\")); err == nil {
		t.Error("parseDockerfile(trailing continuation) = nil error, want one")
	}
}
