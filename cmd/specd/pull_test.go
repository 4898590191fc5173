package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/specd-dev/specd/hub"
	"github.com/specd-dev/specd/internal/hubtest"
	"github.com/specd-dev/specd/internal/testmodels"
)

const draftRepo = "specd-dev/specd-draft-GGUF"

// draftHub serves the shared draft model's Q8_0 and Q4_0 files from a fake Hub that
// HF_ENDPOINT points at.
func draftHub(t *testing.T, token string) *hubtest.Server {
	t.Helper()
	s := hubtest.New(t, hubtest.Options{Token: token})
	for _, q := range []string{"q8_0", "q4_0"} {
		b, err := os.ReadFile(testmodels.ForTest(t, "specd-draft-"+q+".gguf"))
		if err != nil {
			t.Fatal(err)
		}
		s.AddFile(draftRepo, "specd-draft-"+strings.ToUpper(q)+".gguf", b, true)
	}
	s.AddFile(draftRepo, "README.md", []byte("# specd draft\n"), false)
	t.Setenv(hub.EnvEndpoint, s.URL)
	t.Setenv(hub.EnvToken, token)
	return s
}

func TestPullCommand(t *testing.T) {
	draftHub(t, "")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"pull", "--models", dir, draftRepo + ":q8_0"},
		{"pull", draftRepo + ":Q8_0", "--models", dir}, // again, flags after: nothing to download
	} {
		stdout, stderr, code := run(t, args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		want := filepath.Join(dir, "hf", "specd-dev", "specd-draft-GGUF", "specd-draft-Q8_0.gguf")
		if strings.TrimSpace(stdout) != want {
			t.Errorf("%q printed %q, want %q", args, stdout, want)
		}
		if !strings.Contains(stderr, "-m hf:"+draftRepo+":Q8_0") && !strings.Contains(stderr, "-m hf:"+draftRepo+":q8_0") {
			t.Errorf("%q: stderr does not say how to use it: %s", args, stderr)
		}
	}
	// The first pull printed plain progress lines (stderr is no terminal here).
	_, stderr, _ := run(t, "pull", "--models", t.TempDir(), draftRepo+":Q4_0")
	for _, w := range []string{"specd-draft-Q4_0.gguf: 1.5 MiB\n", "% (0.", "100% (1.5 MiB), checksum verified"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("progress lines lack %q:\n%s", w, stderr)
		}
	}
}

// TestPullHintOffline: the -m hf: reference pull tells the user to use finds the file
// without the network, also when the repository's only GGUF carries no default tag
// (the pull took it without a tag; offline, no tag means Q4_K_M).
func TestPullHintOffline(t *testing.T) {
	s := hubtest.New(t, hubtest.Options{})
	b, err := os.ReadFile(testmodels.ForTest(t, "specd-draft-q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	s.AddFile("org/single", "draft-Q8_0.gguf", b, true)
	s.AddFile("org/pair", "draft-Q8_0.gguf", b, true)
	s.AddFile("org/pair", "sub/draft-Q8_0.gguf", b, true)
	t.Setenv(hub.EnvEndpoint, s.URL)
	dir := t.TempDir()
	hint := regexp.MustCompile(`use it with -m (hf:\S+)`)
	var uses []string
	for _, ref := range []string{"org/single", "org/pair:sub/draft-Q8_0.gguf", "org/pair:draft-Q8_0.gguf"} {
		_, stderr, code := run(t, "pull", "--models", dir, ref)
		m := hint.FindStringSubmatch(stderr)
		if code != 0 || m == nil {
			t.Fatalf("pull %s: exit %d, no hint: %s", ref, code, stderr)
		}
		uses = append(uses, m[1])
	}
	t.Setenv(hub.EnvEndpoint, "http://127.0.0.1:1")
	for _, use := range uses {
		if _, stderr, code := run(t, "tokenize", "--models", dir, "-m", use, "-p", "Hello"); code != 0 {
			t.Errorf("offline tokenize -m %s (the hint): exit %d: %s", use, code, stderr)
		}
	}
}

func TestPullCommandErrors(t *testing.T) {
	draftHub(t, "")
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	cases := []struct {
		args []string
		code int
		says []string
	}{
		{[]string{"pull"}, 2, []string{"want one"}},
		{[]string{"pull", "a/b", "c/d"}, 2, []string{"got 2"}},
		{[]string{"pull", "not-a-repo"}, 2, []string{"ORG/REPO"}},
		{[]string{"pull", "--models", t.TempDir(), draftRepo + ":Q6_K"}, 2, []string{"Q6_K", "specd-draft-Q8_0.gguf", "specd-draft-Q4_0.gguf"}},
		{[]string{"pull", "--models", t.TempDir(), draftRepo}, 2, []string{"default tag Q4_K_M", draftRepo + ":QUANT"}},
		{[]string{"pull", "--models", t.TempDir(), "specd-dev/private:Q8_0"}, 1, []string{"401", "HF_TOKEN"}},
		{[]string{"pull", "--models", notDir, draftRepo + ":Q8_0"}, 1, []string{notDir, "--models"}},
	}
	t.Run("bad token", func(t *testing.T) {
		t.Setenv(hub.EnvToken, "hf bad")
		_, stderr, code := run(t, "pull", "--models", t.TempDir(), draftRepo+":Q8_0")
		if code != 2 || !strings.Contains(stderr, "HF_TOKEN") || strings.Contains(stderr, "HF_ENDPOINT") || strings.Contains(stderr, "hf bad") {
			t.Errorf("pull with HF_TOKEN=\"hf bad\": exit %d, %q; want exit 2 naming HF_TOKEN only, without the token", code, stderr)
		}
	})
	for _, tc := range cases {
		_, stderr, code := run(t, tc.args...)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d: %s", tc.args, code, tc.code, stderr)
		}
		for _, w := range tc.says {
			if !strings.Contains(stderr, w) {
				t.Errorf("%q: stderr %q does not say %q", tc.args, stderr, w)
			}
		}
	}
}

// TestRunHF: -m hf:... pulls the model on first use and generates exactly what the
// same file does named by path; later runs find it without the Hub.
func TestRunHF(t *testing.T) {
	s := draftHub(t, "hf_tok")
	dir := t.TempDir()
	gen := func(model string) []any {
		t.Helper()
		stdout, stderr, code := run(t, "run", "--models", dir, "-m", model, "-p", "Once upon a time", "-n", "8", "--temp", "0", "--json", "--no-warmup")
		if code != 0 {
			t.Fatalf("run -m %s: exit %d: %s", model, code, stderr)
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("run -m %s: %v: %s", model, err, stdout)
		}
		return res["output_ids"].([]any)
	}
	want := gen(testmodels.ForTest(t, "specd-draft-q4_0.gguf"))
	if got := gen("hf:" + draftRepo + ":Q4_0"); !slices.Equal(got, want) {
		t.Fatalf("run -m hf: = %v, want %v", got, want)
	}
	if downloads := s.CDNRequests(); downloads != 1 {
		t.Fatalf("%d downloads, want 1", downloads)
	}
	// The Hub is gone: the pulled file still serves, found offline.
	t.Setenv(hub.EnvEndpoint, "http://127.0.0.1:1")
	if got := gen("hf:" + draftRepo + ":q4_0"); !slices.Equal(got, want) {
		t.Fatalf("offline run -m hf: = %v, want %v", got, want)
	}
	// score goes through the same resolution.
	if _, stderr, code := run(t, "score", "--models", dir, "-m", "hf:"+draftRepo+":Q4_0", "--ids", "1,2,3"); code != 0 {
		t.Fatalf("score -m hf: exit %d: %s", code, stderr)
	}
	// A model that was never pulled, with the Hub gone: a clear error, not a hang.
	_, stderr, code := run(t, "run", "--models", dir, "-m", "hf:"+draftRepo+":Q8_0", "-p", "x", "-n", "1")
	if code != 1 || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Fatalf("run -m hf: with no Hub: exit %d: %s", code, stderr)
	}
}

// TestUpHF: `specd up` pulls an hf: verifier and draft, one after the other, before it
// serves, and serves them.
func TestUpHF(t *testing.T) {
	s := draftHub(t, "")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- realMain(ctx, []string{"up", "--listen", "127.0.0.1:0", "--log-level", "error", "--kv-budget", "32000000", "--models", dir,
			"-m", "hf:" + draftRepo + ":Q8_0", "--draft-model", "hf:" + draftRepo + ":Q4_0"}, io.Discard, &stderr)
	}()
	deadline := time.After(time.Minute)
	for !strings.Contains(stderr.String(), "serving specd.v1.GenerationService") {
		select {
		case code := <-done:
			t.Fatalf("up: exit %d before serving: %s", code, stderr.String())
		case <-deadline:
			t.Fatalf("up: not serving after a minute: %s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("up: exit %d: %s", code, stderr.String())
	}
	out := stderr.String()
	for _, q := range []string{"Q8_0", "Q4_0"} {
		if !strings.Contains(out, filepath.Join(dir, "hf", "specd-dev", "specd-draft-GGUF", "specd-draft-"+q+".gguf")) {
			t.Errorf("up does not serve the pulled %s: %s", q, out)
		}
	}
	var cdn []string
	for _, r := range s.Requests() {
		if r.Server == "cdn" {
			cdn = append(cdn, r.Path)
		}
	}
	if len(cdn) != 2 {
		t.Errorf("CDN requests %q, want one per model", cdn)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestModelNotFoundHubHint: a model named as llama.cpp's -hf names one (ORG/REPO[:QUANT],
// no hf:) and not found on disk is refused with the hf: spelling; a local path that is
// not there gets no such hint.
func TestModelNotFoundHubHint(t *testing.T) {
	local := filepath.Join(t.TempDir(), "sub")
	if err := os.Mkdir(local, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		model string
		hint  bool
	}{
		{"ggml-org/gemma-3-1b-it-GGUF:Q4_K_M", true},
		{"ggml-org/gemma-3-1b-it-GGUF", true},
		{"ggml-org/gemma-3-1b-it-GGUF:gemma-3-1b-it-Q4_K_M.gguf", true},
		{"models/draft.gguf", false},
		{"models/draft.bin", false},
		{local + "/draft", false},
		{"no-such-model", false},
	} {
		t.Run(c.model, func(t *testing.T) {
			want := "model not found"
			if c.hint {
				want = "as llama.cpp's -hf does: -m hf:" + c.model + ")"
			}
			checkRefused(t, []string{"run", "-m", c.model, "-p", "x"}, 2, want)
			_, stderr, _ := run(t, "run", "-m", c.model, "-p", "x")
			if !c.hint && strings.Contains(stderr, "hf:") {
				t.Errorf("-m %s: %q, want no hf: hint", c.model, stderr)
			}
		})
	}
}
