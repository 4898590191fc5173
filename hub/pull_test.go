package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/specd-dev/specd/internal/hubtest"
)

const repoName = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"

// blob returns n deterministic pseudo-random bytes.
func blob(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// newHub returns a fake Hub holding a GGUF repository (several quantizations, a README,
// a projector) and a client for it that retries at once.
func newHub(t *testing.T, opts hubtest.Options) (*hubtest.Server, *Client, []byte) {
	t.Helper()
	s := hubtest.New(t, opts)
	model := blob(3<<20+12345, 1)
	s.AddFile(repoName, "qwen2.5-0.5b-instruct-q4_k_m.gguf", model, true)
	s.AddFile(repoName, "qwen2.5-0.5b-instruct-q8_0.gguf", blob(4096, 2), true)
	s.AddFile(repoName, "qwen2.5-0.5b-instruct-q4_k_s.gguf", blob(4096, 3), true)
	s.AddFile(repoName, "mmproj-qwen2.5-q4_k_m.gguf", blob(100, 4), true)
	s.AddFile(repoName, "README.md", []byte("# readme\n"), false)
	c := newClient(t, s.URL, opts.Token)
	return s, c, model
}

func newClient(t *testing.T, endpoint, token string) *Client {
	t.Helper()
	c, err := New(Options{Endpoint: endpoint, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	c.RetryWait = time.Millisecond
	return c
}

func mustRef(t *testing.T, s string) Ref {
	t.Helper()
	r, err := ParseRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// partials lists the partial files below dir.
func partials(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".partial") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func checkFile(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes that differ from the %d served", p, len(got), len(want))
	}
}

// recorder is a Progress that remembers what it was told.
type recorder struct {
	start      []int64 // size, done
	added      int64
	retries    []error
	ended      bool
	endErr     error
	onAdd      func()
	onWait     func()
	startCalls int
}

func (r *recorder) Start(name string, size, done int64) {
	r.start = []int64{size, done}
	r.startCalls++
	r.added = 0
}
func (r *recorder) Add(n int64) {
	r.added += n
	if r.onAdd != nil {
		r.onAdd()
	}
}
func (r *recorder) Wait(string) {
	if r.onWait != nil {
		r.onWait()
	}
}
func (r *recorder) Retry(err error, _ time.Duration) { r.retries = append(r.retries, err) }
func (r *recorder) End(err error)                    { r.ended, r.endErr = true, err }

// TestPull: a tagged pull lists the repository across pages, downloads the one file
// with that tag, checks it and renames it into place; the token goes to the Hub and
// never to the CDN; a second pull finds the verified file and downloads nothing.
func TestPull(t *testing.T) {
	s, c, model := newHub(t, hubtest.Options{Token: "hf_secret", PageSize: 2})
	dir := t.TempDir()
	var rec recorder
	got, err := c.Pull(context.Background(), dir, mustRef(t, repoName+":q4_k_m"), &rec)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "hf", "Qwen", "Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf")
	if got != want {
		t.Fatalf("Pull = %s, want %s", got, want)
	}
	checkFile(t, got, model)
	if p := partials(t, dir); len(p) != 0 {
		t.Errorf("partials left: %v", p)
	}
	if rec.added != int64(len(model)) || !rec.ended || rec.endErr != nil || rec.start[0] != int64(len(model)) || rec.start[1] != 0 {
		t.Errorf("progress: %+v", rec)
	}
	pages, cdn := 0, 0
	for _, r := range s.Requests() {
		switch r.Server {
		case "hub":
			if r.Authorization != "Bearer hf_secret" {
				t.Errorf("hub request %s without the token: %q", r.Path, r.Authorization)
			}
			if strings.Contains(r.Path, "/tree/") {
				pages++
			}
		case "cdn":
			cdn++
			if r.Authorization != "" {
				t.Errorf("CDN request %s carries %q: the token leaked across a redirect", r.Path, r.Authorization)
			}
		}
	}
	if pages != 3 || cdn != 1 {
		t.Errorf("%d listing pages and %d CDN requests, want 3 and 1", pages, cdn)
	}

	n := len(s.Requests())
	if again, err := c.Pull(context.Background(), dir, mustRef(t, repoName+":Q4_K_M"), nil); err != nil || again != want {
		t.Fatalf("second Pull = %s, %v", again, err)
	}
	for _, r := range s.Requests()[n:] {
		if r.Server == "cdn" || strings.Contains(r.Path, "/resolve/") {
			t.Errorf("second Pull downloaded again: %+v", r)
		}
	}
	// Offline, the tag (and no tag: the default Q4_K_M) finds the file.
	for _, ref := range []string{repoName + ":Q4_K_M", repoName, repoName + ":qwen2.5-0.5b-instruct-q4_k_m.gguf"} {
		if p, ok := Local(dir, mustRef(t, ref)); !ok || p != want {
			t.Errorf("Local(%s) = %s, %v", ref, p, ok)
		}
	}
	if p, ok := Local(dir, mustRef(t, repoName+":Q8_0")); ok {
		t.Errorf("Local(Q8_0) = %s, a file never pulled", p)
	}
}

// TestPullGitFile: a small file kept in git (no LFS) is checked by its git blob id.
func TestPullGitFile(t *testing.T) {
	s := hubtest.New(t, hubtest.Options{})
	data := blob(5000, 9)
	s.AddFile("org/tiny", "tiny-F16.gguf", data, false)
	c := newClient(t, s.URL, "")
	p, err := c.Pull(context.Background(), t.TempDir(), mustRef(t, "org/tiny"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, data)

	s.Corrupt("org/tiny", "tiny-F16.gguf")
	_, err = c.Pull(context.Background(), t.TempDir(), mustRef(t, "org/tiny"), nil)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "git-sha1") {
		t.Fatalf("corrupt git file: %v, want ErrChecksum naming git-sha1", err)
	}
}

// TestResumeAfterCut: the connection drops mid-body; the next attempt asks for the
// rest with a Range and the file completes and verifies.
func TestResumeAfterCut(t *testing.T) {
	s, c, model := newHub(t, hubtest.Options{})
	const file = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
	s.CutAfter(repoName, file, 1<<20+17, 2<<20)
	dir := t.TempDir()
	var rec recorder
	p, err := c.Pull(context.Background(), dir, mustRef(t, repoName), &rec)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, model)
	var ranges []string
	for _, r := range s.Requests() {
		if r.Server == "cdn" {
			ranges = append(ranges, r.Range)
		}
	}
	want := []string{"", "bytes=1048593-", "bytes=3145745-"}
	if strings.Join(ranges, ",") != strings.Join(want, ",") {
		t.Errorf("CDN Range headers %q, want %q", ranges, want)
	}
	if len(rec.retries) != 2 || rec.added != int64(len(model)) {
		t.Errorf("progress: %d retries, %d bytes added; want 2 and %d", len(rec.retries), rec.added, len(model))
	}
}

// TestResumeAcrossRuns: with no retries left the download fails, keeping a partial
// that is never taken for the model; the next run resumes it.
func TestResumeAcrossRuns(t *testing.T) {
	s, c, model := newHub(t, hubtest.Options{})
	const file = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
	c.Retries = 0
	s.CutAfter(repoName, file, 777)
	dir := t.TempDir()
	ref := mustRef(t, repoName+":Q4_K_M")
	_, err := c.Pull(context.Background(), dir, ref, nil)
	if err == nil || !strings.Contains(err.Error(), "run again to resume") {
		t.Fatalf("cut with no retries: %v", err)
	}
	ps := partials(t, dir)
	if len(ps) != 1 {
		t.Fatalf("partials %v, want one", ps)
	}
	if st, err := os.Stat(ps[0]); err != nil || st.Size() != 777 {
		t.Fatalf("partial: %v, %v; want 777 bytes", st, err)
	}
	if p, ok := Local(dir, ref); ok {
		t.Fatalf("Local found %s while only a partial exists", p)
	}
	var rec recorder
	p, err := c.Pull(context.Background(), dir, ref, &rec)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, model)
	if rec.start[1] != 777 || rec.added != int64(len(model)-777) {
		t.Errorf("resumed from %d with %d bytes added, want 777 and %d", rec.start[1], rec.added, len(model)-777)
	}
	reqs := s.Requests()
	if last := reqs[len(reqs)-1]; last.Server != "cdn" || last.Range != "bytes=777-" {
		t.Errorf("last request %+v, want a CDN request with Range bytes=777-", last)
	}
	if ps := partials(t, dir); len(ps) != 0 {
		t.Errorf("partials left: %v", ps)
	}
}

// TestResumeIgnoredRange: a server that answers a Range request with the whole file
// restarts the partial, and the progress display with it (not past 100%); the result
// still verifies.
func TestResumeIgnoredRange(t *testing.T) {
	s, c, model := newHub(t, hubtest.Options{})
	s.IgnoreRange(true)
	s.CutAfter(repoName, "qwen2.5-0.5b-instruct-q4_k_m.gguf", 5000)
	var rec recorder
	p, err := c.Pull(context.Background(), t.TempDir(), mustRef(t, repoName), &rec)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, model)
	if rec.startCalls != 2 || rec.start[1] != 0 || rec.added != int64(len(model)) {
		t.Errorf("progress: %d Starts, the last at %d, then %d bytes added; want 2, 0 and %d", rec.startCalls, rec.start[1], rec.added, len(model))
	}
}

// TestNoProgressGivesUp: a server that ignores Range and drops every connection at the
// same point makes no progress however many bytes each attempt brings; the download
// gives up after Retries attempts instead of restarting forever, keeping the partial.
func TestNoProgressGivesUp(t *testing.T) {
	s, c, _ := newHub(t, hubtest.Options{})
	const file = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
	c.Retries = 3
	s.IgnoreRange(true)
	cuts := make([]int64, 50)
	for i := range cuts {
		cuts[i] = 5000
	}
	s.CutAfter(repoName, file, cuts...)
	dir := t.TempDir()
	_, err := c.Pull(context.Background(), dir, mustRef(t, repoName), nil)
	if err == nil || !strings.Contains(err.Error(), "failed 4 times in a row") || !strings.Contains(err.Error(), "run again to resume") {
		t.Fatalf("Pull from a server that never gets further = %v, want it to give up after 4 attempts", err)
	}
	if cdn := s.CDNRequests(); cdn != 4 {
		t.Errorf("%d CDN requests, want 4", cdn)
	}
	if ps := partials(t, dir); len(ps) != 1 {
		t.Errorf("partials %v, want the one kept", ps)
	}
}

// TestChangedOnHub: the file is replaced on the Hub in the middle of a download. The
// retry's redirect names the new LFS object (X-Linked-Etag): the download stops there
// with an error saying so, instead of appending the new version's bytes to the old
// one's and failing the checksum after the whole transfer; the next pull lists the new
// version and fetches it.
func TestChangedOnHub(t *testing.T) {
	s, c, model := newHub(t, hubtest.Options{})
	const file = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
	s.CutAfter(repoName, file, 1<<20)
	newer := blob(len(model), 99)
	var once sync.Once
	rec := &recorder{onAdd: func() { once.Do(func() { s.AddFile(repoName, file, newer, true) }) }}
	dir := t.TempDir()
	_, err := c.Pull(context.Background(), dir, mustRef(t, repoName), rec)
	if err == nil || errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "changed on the Hub") {
		t.Fatalf("Pull while the file changes = %v, want an error saying it changed", err)
	}
	if cdn := s.CDNRequests(); cdn != 1 {
		t.Errorf("%d CDN requests, want 1: no byte of the new version after the old", cdn)
	}
	p, err := c.Pull(context.Background(), dir, mustRef(t, repoName), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, newer)
	if ps := partials(t, dir); len(ps) != 0 {
		t.Errorf("partials left: %v", ps)
	}
}

// TestBadChecksum: bytes that do not hash to the LFS oid are an error naming both
// digests, and leave neither the model file nor a partial behind.
func TestBadChecksum(t *testing.T) {
	s, c, _ := newHub(t, hubtest.Options{})
	s.Corrupt(repoName, "qwen2.5-0.5b-instruct-q4_k_m.gguf")
	dir := t.TempDir()
	ref := mustRef(t, repoName+":Q4_K_M")
	_, err := c.Pull(context.Background(), dir, ref, nil)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("Pull = %v, want ErrChecksum naming sha256 and the deletion", err)
	}
	if _, err := os.Stat(LocalPath(dir, repoName, "qwen2.5-0.5b-instruct-q4_k_m.gguf")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("model file after a bad checksum: %v", err)
	}
	if ps := partials(t, dir); len(ps) != 0 {
		t.Errorf("partials left: %v", ps)
	}
	if p, ok := Local(dir, ref); ok {
		t.Errorf("Local = %s after a bad checksum", p)
	}
}

// TestHubErrors: 401 and 404 answers are clear errors: a 401 tells about HF_TOKEN, a
// 404 names the repository or file.
func TestHubErrors(t *testing.T) {
	s, _, _ := newHub(t, hubtest.Options{Token: "hf_good"})
	s.AddRepo("org/private", hubtest.Private)
	s.AddFile("org/private", "m-Q4_K_M.gguf", blob(10, 5), true)
	s.AddRepo("org/gated", hubtest.Gated)
	s.AddFile("org/gated", "m-Q4_K_M.gguf", blob(10, 6), true)
	s.AddRepo("org/granted", hubtest.Gated)
	s.AddFile("org/granted", "m-Q4_K_M.gguf", blob(10, 7), true)
	s.Grant("org/granted")
	cases := []struct {
		name, token, ref string
		want             error
		says             []string
	}{
		{"private without token", "", "org/private", ErrUnauthorized, []string{"org/private", "set HF_TOKEN"}},
		{"private with a wrong token", "hf_bad", "org/private", ErrUnauthorized, []string{"HF_TOKEN is set", "Invalid credentials"}},
		{"unknown repo without token", "", "org/nothing", ErrUnauthorized, []string{"org/nothing", "does not exist", "HF_TOKEN"}},
		{"unknown repo with token", "hf_good", "org/nothing", ErrNotFound, []string{"org/nothing", "Repository not found"}},
		{"gated without token", "", "org/gated", ErrUnauthorized, []string{"m-Q4_K_M.gguf of org/gated", "set HF_TOKEN", "restricted"}},
		{"gated, terms not accepted", "hf_good", "org/gated", ErrForbidden, []string{"org/gated", "accept its terms", "HF_TOKEN"}},
		{"no such tag", "", repoName + ":Q2_K", ErrNoMatch, []string{repoName, "Q2_K", "qwen2.5-0.5b-instruct-q8_0.gguf"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, s.URL, tc.token)
			_, err := c.Pull(context.Background(), t.TempDir(), mustRef(t, tc.ref), nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Pull(%s) = %v, want %v", tc.ref, err, tc.want)
			}
			for _, w := range tc.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// Once the terms are accepted, the token downloads.
	if _, err := newClient(t, s.URL, "hf_good").Pull(context.Background(), t.TempDir(), mustRef(t, "org/granted"), nil); err != nil {
		t.Errorf("gated repository with access: %v", err)
	}
	// A file the listing had but the server no longer has: 404 naming it.
	c := newClient(t, s.URL, "")
	f := File{Path: "gone-Q4_K_M.gguf", Size: 10, Digest: Digest{SHA256, strings.Repeat("ab", 32)}}
	err := c.Download(context.Background(), repoName, f, filepath.Join(t.TempDir(), "x.gguf"), nil)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "gone-Q4_K_M.gguf of "+repoName) {
		t.Fatalf("Download of a missing file = %v, want ErrNotFound naming it", err)
	}
}

// TestListRetries: a listing answered 503 or going quiet mid-page is retried like a
// download (a service pulling at start-up does not die of one overloaded moment),
// within the same budget, and then is a clear error rather than a wait without end.
func TestListRetries(t *testing.T) {
	s, c, _ := newHub(t, hubtest.Options{PageSize: 2})
	c.Stall = 200 * time.Millisecond
	c.Retries = 2
	s.FailListing(hubtest.Unavailable, hubtest.StallListing)
	files, err := c.List(context.Background(), repoName)
	if err != nil {
		t.Fatalf("List after a 503 and a stall = %v, want it retried", err)
	}
	if len(files) != 5 {
		t.Errorf("List = %d files, want 5", len(files))
	}
	s.FailListing(hubtest.Unavailable, hubtest.Unavailable, hubtest.Unavailable)
	if _, err := c.List(context.Background(), repoName); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("List while the Hub answers 503 = %v, want an error naming it", err)
	}
	s.FailListing(hubtest.StallListing, hubtest.StallListing, hubtest.StallListing)
	if _, err := c.List(context.Background(), repoName); err == nil || !strings.Contains(err.Error(), "no data for 200ms") {
		t.Fatalf("List while the Hub stalls = %v, want an error naming the stall", err)
	}
}

// TestEnv: HF_ENDPOINT points the client at a mirror and HF_TOKEN authenticates.
func TestEnv(t *testing.T) {
	s, _, model := newHub(t, hubtest.Options{Token: "hf_env"})
	s.AddRepo("org/private", hubtest.Private)
	s.AddFile("org/private", "m-Q4_K_M.gguf", model, true)
	t.Setenv(EnvEndpoint, s.URL+"/")
	t.Setenv(EnvToken, "hf_env")
	c, err := FromEnv(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint() != s.URL {
		t.Errorf("Endpoint() = %s, want %s", c.Endpoint(), s.URL)
	}
	p, err := c.Pull(context.Background(), t.TempDir(), mustRef(t, "org/private"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, model)

	// A token read from a file keeps its line end (HF_TOKEN=$(cat token) does not
	// strip a \r); huggingface_hub trims it, and so does FromEnv.
	t.Setenv(EnvToken, " hf_env\r\n")
	c, err = FromEnv(nil)
	if err != nil {
		t.Fatalf("FromEnv with a token and a line end: %v", err)
	}
	if _, err := c.Pull(context.Background(), t.TempDir(), mustRef(t, "org/private"), nil); err != nil {
		t.Errorf("Pull with the trimmed token: %v", err)
	}
	t.Setenv(EnvToken, "hf bad")
	if _, err := FromEnv(nil); err == nil || !strings.Contains(err.Error(), EnvToken) || strings.Contains(err.Error(), EnvEndpoint) || strings.Contains(err.Error(), "hf bad") {
		t.Errorf("FromEnv with HF_TOKEN=\"hf bad\" = %v, want an error naming HF_TOKEN only, without the token", err)
	}
	t.Setenv(EnvToken, "hf_env")

	t.Setenv(EnvEndpoint, "ftp://mirror")
	if _, err := FromEnv(nil); err == nil || !strings.Contains(err.Error(), EnvEndpoint) {
		t.Errorf("FromEnv with HF_ENDPOINT=ftp://mirror = %v, want an error naming HF_ENDPOINT", err)
	}

	// A mirror's password in HF_ENDPOINT is never shown: Endpoint() is what specd
	// prints ("pulling ... from ..."), and the error for a bad endpoint quotes it.
	c, err = New(Options{Endpoint: "https://user:pa55word@mirror.example/hf"})
	if err != nil {
		t.Fatal(err)
	}
	if e := c.Endpoint(); strings.Contains(e, "pa55word") || !strings.Contains(e, "mirror.example/hf") {
		t.Errorf("Endpoint() = %s, want it without the password", e)
	}
	if _, err := New(Options{Endpoint: "ftp://user:pa55word@mirror.example"}); err == nil || strings.Contains(err.Error(), "pa55word") {
		t.Errorf("New with a bad endpoint = %v, want an error without the password", err)
	}
}

// failFile is a partial file whose writes fail with err once limit bytes are written,
// as a full disk does.
type failFile struct {
	*os.File
	limit int64
	err   error
}

func (f *failFile) Write(p []byte) (int, error) {
	if int64(len(p)) > f.limit {
		n, _ := f.File.Write(p[:f.limit])
		f.limit = 0
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: f.err}
	}
	f.limit -= int64(len(p))
	return f.File.Write(p)
}

// TestDiskErrors: a full disk and an unwritable directory are clear errors; after a
// full disk the partial is kept and resumes once there is room.
func TestDiskErrors(t *testing.T) {
	_, c, model := newHub(t, hubtest.Options{})
	ref := mustRef(t, repoName)

	t.Run("disk full while writing", func(t *testing.T) {
		dir := t.TempDir()
		cc := *c
		cc.fs.open = func(name string) (file, error) {
			f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
			return &failFile{File: f, limit: 1 << 20, err: syscall.ENOSPC}, err
		}
		_, err := cc.Pull(context.Background(), dir, ref, nil)
		if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "partial download is kept") {
			t.Fatalf("Pull on a full disk = %v, want ErrNoSpace saying the partial is kept", err)
		}
		if _, ok := Local(dir, ref); ok {
			t.Fatal("Local found a model after a full disk")
		}
		p, err := c.Pull(context.Background(), dir, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, p, model)
	})
	t.Run("too little free space", func(t *testing.T) {
		cc := *c
		cc.fs.free = func(string) (int64, bool) { return 1000, true }
		dir := t.TempDir()
		_, err := cc.Pull(context.Background(), dir, ref, nil)
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "1000 B free") {
			t.Fatalf("Pull with 1000 bytes free = %v, want ErrNoSpace with the figures", err)
		}
		if ps := partials(t, dir); len(ps) != 0 {
			t.Errorf("partials left: %v", ps)
		}
	})
	t.Run("directory not writable", func(t *testing.T) {
		cc := *c
		cc.fs.mkdirAll = func(dir string, _ fs.FileMode) error {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.EACCES}
		}
		_, err := cc.Pull(context.Background(), t.TempDir(), ref, nil)
		if !errors.Is(err, ErrNotWritable) || !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Pull into an unwritable directory = %v, want ErrNotWritable", err)
		}
	})
	t.Run("read-only file system", func(t *testing.T) {
		cc := *c
		cc.fs.open = func(name string) (file, error) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EROFS}
		}
		_, err := cc.Pull(context.Background(), t.TempDir(), ref, nil)
		if !errors.Is(err, ErrNotWritable) || !errors.Is(err, syscall.EROFS) {
			t.Fatalf("Pull onto a read-only file system = %v, want ErrNotWritable", err)
		}
	})
	t.Run("model directory is a file", func(t *testing.T) {
		notDir := filepath.Join(t.TempDir(), "file")
		os.WriteFile(notDir, nil, 0o644)
		_, err := c.Pull(context.Background(), notDir, ref, nil)
		if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), notDir) {
			t.Fatalf("Pull into a file = %v, want ErrNotWritable naming it", err)
		}
	})
}

// TestCancel: ending ctx mid-download stops it promptly with ctx's error and keeps a
// partial that the next run resumes.
func TestCancel(t *testing.T) {
	_, c, model := newHub(t, hubtest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	rec.onAdd = cancel
	dir := t.TempDir()
	ref := mustRef(t, repoName)
	_, err := c.Pull(ctx, dir, ref, rec)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run again to resume") {
		t.Fatalf("cancelled Pull = %v", err)
	}
	if len(rec.retries) != 0 || !rec.ended {
		t.Errorf("progress after cancel: %+v", rec)
	}
	ps := partials(t, dir)
	if len(ps) != 1 {
		t.Fatalf("partials %v, want one", ps)
	}
	var rec2 recorder
	p, err := c.Pull(context.Background(), dir, ref, &rec2)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, model)
	if rec2.start[1] == 0 {
		t.Error("second Pull did not resume the partial")
	}
}

// TestConcurrentPulls: two pulls of one file at once (two processes, or two services
// given the same -m hf: at start-up) do not fail or corrupt each other: the second waits
// for the first, telling its progress so, and then either finds the verified file in
// place and downloads nothing, or resumes the partial the first left when it stopped.
// A wait ends with the caller's context.
func TestConcurrentPulls(t *testing.T) {
	type result struct {
		path string
		err  error
	}
	// start runs a Pull that holds the partial after its first bytes until release.
	start := func(t *testing.T, c *Client, ctx context.Context, dir string) (release func(), done chan result) {
		holding, unblock := make(chan struct{}), make(chan struct{})
		var once, closeOnce sync.Once
		release = func() { closeOnce.Do(func() { close(unblock) }) }
		t.Cleanup(release)
		rec := &recorder{onAdd: func() { once.Do(func() { close(holding); <-unblock }) }}
		done = make(chan result, 1)
		go func() {
			p, err := c.Pull(ctx, dir, mustRef(t, repoName), rec)
			done <- result{p, err}
		}()
		<-holding
		return release, done
	}
	// wait runs a second Pull and returns once it waits for the first.
	wait := func(t *testing.T, c *Client, ctx context.Context, dir string, rec *recorder) chan result {
		waiting := make(chan struct{})
		rec.onWait = func() { close(waiting) }
		done := make(chan result, 1)
		go func() {
			p, err := c.Pull(ctx, dir, mustRef(t, repoName), rec)
			done <- result{p, err}
		}()
		select {
		case <-waiting:
		case r := <-done:
			t.Fatalf("second Pull = %q, %v while the first holds the file; want it to wait", r.path, r.err)
		}
		return done
	}

	t.Run("the second finds the first's file", func(t *testing.T) {
		s, c, model := newHub(t, hubtest.Options{})
		c.lockPoll = time.Millisecond
		dir := t.TempDir()
		release, first := start(t, c, context.Background(), dir)
		var rec recorder
		second := wait(t, c, context.Background(), dir, &rec)
		release()
		a, b := <-first, <-second
		if a.err != nil || b.err != nil || a.path != b.path {
			t.Fatalf("Pulls = (%q, %v) and (%q, %v), want one path twice", a.path, a.err, b.path, b.err)
		}
		checkFile(t, b.path, model)
		if rec.startCalls != 0 {
			t.Errorf("the second Pull downloaded (%+v)", rec)
		}
		if cdn := s.CDNRequests(); cdn != 1 {
			t.Errorf("%d CDN requests, want 1", cdn)
		}
		if ps := partials(t, dir); len(ps) != 0 {
			t.Errorf("partials left: %v", ps)
		}
	})
	t.Run("the first stops, the second resumes", func(t *testing.T) {
		_, c, model := newHub(t, hubtest.Options{})
		c.lockPoll = time.Millisecond
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		release, first := start(t, c, ctx, dir)
		var rec recorder
		second := wait(t, c, context.Background(), dir, &rec)
		cancel()
		release()
		if a := <-first; !errors.Is(a.err, context.Canceled) {
			t.Fatalf("cancelled first Pull = %v", a.err)
		}
		b := <-second
		if b.err != nil {
			t.Fatal(b.err)
		}
		checkFile(t, b.path, model)
		if rec.startCalls != 1 || rec.start[1] == 0 {
			t.Errorf("second Pull's progress %+v, want it to resume the first's partial", rec)
		}
	})
	t.Run("a wait ends with its context", func(t *testing.T) {
		_, c, model := newHub(t, hubtest.Options{})
		c.lockPoll = time.Millisecond
		dir := t.TempDir()
		release, first := start(t, c, context.Background(), dir)
		ctx, cancel := context.WithCancel(context.Background())
		var rec recorder
		second := wait(t, c, ctx, dir, &rec)
		cancel()
		if b := <-second; !errors.Is(b.err, context.Canceled) || !strings.Contains(b.err.Error(), "waiting for another download") {
			t.Fatalf("cancelled wait = %v, want context.Canceled saying it waited", b.err)
		}
		release()
		a := <-first
		if a.err != nil {
			t.Fatal(a.err)
		}
		checkFile(t, a.path, model)
	})
}

// TestStalePartial: a partial left by another version of the file is removed, unless
// a download holds it, and one longer than the file is started over.
func TestStalePartial(t *testing.T) {
	_, c, model := newHub(t, hubtest.Options{})
	dir := t.TempDir()
	dest := LocalPath(dir, repoName, "qwen2.5-0.5b-instruct-q4_k_m.gguf")
	os.MkdirAll(filepath.Dir(dest), 0o755)
	stale := dest + ".00112233aabbccdd.partial"
	os.WriteFile(stale, []byte("old"), 0o644)
	files, _ := c.List(context.Background(), repoName)
	f, _ := Select(files, mustRef(t, repoName))
	os.WriteFile(partialName(dest, f.Digest), bytes.Repeat([]byte{1}, len(model)+10), 0o644)
	p, err := c.Pull(context.Background(), dir, mustRef(t, repoName), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, model)
	if ps := partials(t, dir); len(ps) != 0 {
		t.Errorf("partials left: %v", ps)
	}

	// A partial of another version that a running download holds (it listed the file
	// before the Hub changed it) is that download's, and stays.
	os.Remove(p)
	held, err := openLocked(stale)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := c.Pull(context.Background(), dir, mustRef(t, repoName), nil); err != nil {
		t.Fatal(err)
	}
	if !current(held, stale) {
		t.Errorf("the partial another download holds was removed")
	}
}

// TestStall: a server that goes quiet mid-body is given up on after Stall and the
// download resumes from what arrived.
func TestStall(t *testing.T) {
	s, c, model := newHub(t, hubtest.Options{})
	c.Stall = 200 * time.Millisecond
	s.StallAfter(repoName, "qwen2.5-0.5b-instruct-q4_k_m.gguf", 4096)
	var rec recorder
	p, err := c.Pull(context.Background(), t.TempDir(), mustRef(t, repoName), &rec)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, model)
	if len(rec.retries) != 1 || !strings.Contains(rec.retries[0].Error(), "no data for 200ms") {
		t.Fatalf("retries %v, want one for the stall", rec.retries)
	}
	reqs := s.Requests()
	if last := reqs[len(reqs)-1]; last.Range != "bytes=4096-" {
		t.Errorf("after the stall: %+v, want Range bytes=4096-", last)
	}
}

// TestDownloadInPlace: Download of a file that is already in place and verified (a
// download that ended between the caller's look and this one's lock put it there)
// fetches nothing and leaves no partial.
func TestDownloadInPlace(t *testing.T) {
	s, c, model := newHub(t, hubtest.Options{})
	files, err := c.List(context.Background(), repoName)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Select(files, mustRef(t, repoName))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "m.gguf")
	os.WriteFile(dest, model, 0o644)
	n := len(s.Requests())
	if err := c.Download(context.Background(), repoName, f, dest, nil); err != nil {
		t.Fatal(err)
	}
	if reqs := s.Requests()[n:]; len(reqs) != 0 {
		t.Errorf("Download of a file in place sent %+v", reqs)
	}
	if ps := partials(t, filepath.Dir(dest)); len(ps) != 0 {
		t.Errorf("partials left: %v", ps)
	}
	checkFile(t, dest, model)
}

// TestReplaceDamaged: a file of the right size at the target whose bytes do not match
// is downloaded again and replaced.
func TestReplaceDamaged(t *testing.T) {
	_, c, model := newHub(t, hubtest.Options{})
	dir := t.TempDir()
	dest := LocalPath(dir, repoName, "qwen2.5-0.5b-instruct-q4_k_m.gguf")
	os.MkdirAll(filepath.Dir(dest), 0o755)
	os.WriteFile(dest, make([]byte, len(model)), 0o644)
	p, err := c.Pull(context.Background(), dir, mustRef(t, repoName), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, model)
}

// TestCDNRefusal: a CDN that refuses a presigned URL (403, as S3 answers one that
// expired) is not the Hub refusing the token: the download retries through the Hub,
// which signs a fresh URL, and when the CDN keeps refusing, the error says it was the
// CDN and does not send the user to accept a gated repository's terms.
func TestCDNRefusal(t *testing.T) {
	data := blob(10000, 11)
	var mu sync.Mutex
	refusals := 0
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		refuse := refusals > 0
		if refuse {
			refusals--
		}
		mu.Unlock()
		if refuse {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"))
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer cdn.Close()
	hubSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, cdn.URL+"/blob?X-Amz-Signature=x", http.StatusFound)
	}))
	defer hubSrv.Close()
	c := newClient(t, hubSrv.URL, "hf_tok")
	c.Retries = 2
	f := File{Path: "m-Q4_K_M.gguf", Size: int64(len(data)), Digest: sha256Digest(data)}

	refusals = 1
	dest := filepath.Join(t.TempDir(), "m.gguf")
	if err := c.Download(context.Background(), "a/b", f, dest, nil); err != nil {
		t.Fatalf("Download after one CDN refusal = %v, want it retried", err)
	}
	checkFile(t, dest, data)

	refusals = 100
	err := c.Download(context.Background(), "a/b", f, filepath.Join(t.TempDir(), "m.gguf"), nil)
	if err == nil || errors.Is(err, ErrForbidden) || strings.Contains(err.Error(), "gated") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Download while the CDN refuses = %v, want a 403 error that is not ErrForbidden", err)
	}
}

func sha256Digest(b []byte) Digest {
	h := sha256.Sum256(b)
	return Digest{SHA256, hex.EncodeToString(h[:])}
}

// TestRedirects: the token follows a redirect within the Hub's host and never leaves
// it; a redirect from https down to http is refused.
func TestRedirects(t *testing.T) {
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, "other "+r.URL.Path+" "+r.Header.Get("Authorization"))
		w.Write([]byte("x"))
	}))
	defer other.Close()
	hubSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, "hub "+r.URL.Path+" "+r.Header.Get("Authorization"))
		switch r.URL.Path {
		case "/old":
			http.Redirect(w, r, "/new", http.StatusTemporaryRedirect)
		case "/new":
			http.Redirect(w, r, other.URL+"/blob", http.StatusFound)
		}
	}))
	defer hubSrv.Close()
	c := newClient(t, hubSrv.URL, "hf_tok")
	resp, err := c.get(context.Background(), hubSrv.URL+"/old", "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := []string{"hub /old Bearer hf_tok", "hub /new Bearer hf_tok", "other /blob "}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("requests %q, want %q", seen, want)
	}

	// A CDN that cannot be reached: the error names it without the presigned URL's
	// query, a credential for the file (as good as the token for that blob while it
	// lasts), which would otherwise reach the terminal and the logs.
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/blob?X-Amz-Signature=s3cr3t&Expires=9", http.StatusFound)
	}))
	defer dead.Close()
	dc := newClient(t, dead.URL, "hf_tok")
	if _, err := dc.get(context.Background(), dead.URL+"/x?a=1", "test", nil); err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "127.0.0.1:1/blob") {
		t.Errorf("unreachable CDN: %v, want an error naming the host and path without the query", err)
	}

	tlsHub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/blob", http.StatusFound)
	}))
	defer tlsHub.Close()
	tc, err := New(Options{Endpoint: tlsHub.URL, Token: "hf_tok", Transport: tlsHub.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.get(context.Background(), tlsHub.URL+"/x", "test", nil); err == nil || !strings.Contains(err.Error(), "refusing a redirect from https") {
		t.Errorf("https to http redirect: %v, want a refusal", err)
	}
}

// TestListHonoursRetryAfter: a listing refused 429 with Retry-After waits what the Hub
// asks, not the client's shorter pause, before it asks again.
func TestListHonoursRetryAfter(t *testing.T) {
	s, c, _ := newHub(t, hubtest.Options{PageSize: 2})
	c.RetryWait = time.Millisecond
	s.FailListing(hubtest.RateLimited)
	start := time.Now()
	files, err := c.List(context.Background(), repoName)
	if err != nil {
		t.Fatalf("List after a 429 = %v, want it retried", err)
	}
	if took := time.Since(start); took < time.Second || len(files) != 5 {
		t.Errorf("List after a 429 with Retry-After 1: %d files after %v, want 5 after at least 1s", len(files), took)
	}
}

// TestRetryAfter: the header's two forms, bounded.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"-4", 0},
		{"99999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"soon", 0},
	} {
		resp := &http.Response{Header: http.Header{"Retry-After": {tc.v}}}
		if got := retryAfter(resp, now); got != tc.want {
			t.Errorf("Retry-After %q = %v, want %v", tc.v, got, tc.want)
		}
	}
}
