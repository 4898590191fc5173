package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specd-dev/specd/apikey"
	"github.com/specd-dev/specd/quota"
)

// TestKeyCommands follows an operator: `specd key new --append` makes a key and adds
// its hash to a file (the key itself appears in no file), `specd up --api-keys` serves
// with it, and `specd generate` is refused without the key and served with
// --api-key-file. A broken key file stops up from starting.
func TestKeyCommands(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	stdout, stderr, code := run(t, "key", "new", "ci-bot", "--streams", "2", "--append", keys)
	if code != 0 {
		t.Fatalf("key new: exit %d: %s", code, stderr)
	}
	secret := strings.TrimSpace(stdout)
	if !strings.HasPrefix(secret, "specd_") || strings.Contains(secret, "\n") {
		t.Fatalf("key new printed %q, want the key alone", stdout)
	}
	file, err := os.ReadFile(keys)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(file), secret) || !strings.HasPrefix(string(file), "ci-bot sha256:") || !strings.Contains(string(file), "streams=2") {
		t.Fatalf("key file %q: want ci-bot's hash and streams=2, never the key", file)
	}
	if _, stderr, code := run(t, "key", "new", "ci-bot", "--append", keys); code == 0 || !strings.Contains(stderr, "appears twice") {
		t.Errorf("a second ci-bot: exit %d, %s; want a refusal", code, stderr)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("ci-bot "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := run(t, "up", "--listen", "127.0.0.1:0", "--api-keys", bad); code != 2 || strings.Contains(stderr, secret) {
		t.Errorf("up with a plaintext key in the file: exit %d, %q; want 2 without the key echoed", code, stderr)
	}

	addr := startUpWith(t, secret, "--api-keys", keys)
	keyFile := filepath.Join(dir, "ci-bot.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"generate", "--addr", addr, "-p", "Once upon a time", "-n", "8", "--json"}
	if _, stderr, code := run(t, args...); code != 1 || !strings.Contains(stderr, "Unauthenticated") {
		t.Errorf("generate without a key: exit %d, %q; want 1 and Unauthenticated", code, stderr)
	}
	stdout, stderr, code = run(t, append(args, "--api-key-file", keyFile)...)
	if code != 0 {
		t.Fatalf("generate with the key: exit %d: %s", code, stderr)
	}
	var res generateResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Tokens == 0 {
		t.Errorf("generate with the key: %v, %s; want tokens", err, stdout)
	}
}

// TestAppendKeyReplacesWhole: --append replaces the key file whole instead of
// rewriting it in place, since the router rereads it every few seconds. A reader
// that opened the file before an append reads the old file to its end, not a
// truncated one; a reader polling during appends never sees fewer keys than were
// there; no temporary file is left behind and the file stays mode 0600.
func TestAppendKeyReplacesWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.txt")
	line := func(name string) string {
		_, k, err := apikey.New(name, quota.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return k.Line()
	}
	if err := appendKey(path, line("first")); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := appendKey(path, line("second")); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != string(old) {
		t.Errorf("a reader opened before the append read %q, %v; want the old file %q", got, err, old)
	}

	const appends = 50
	stop := make(chan struct{})
	fewest := make(chan int, 1)
	go func() {
		low := 1 << 30
		for {
			select {
			case <-stop:
				fewest <- low
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			set, err := apikey.Parse(bytes.NewReader(b))
			if err != nil {
				low = -1 // a torn file
				continue
			}
			low = min(low, set.Len())
		}
	}()
	for i := range appends {
		if err := appendKey(path, line(fmt.Sprintf("k%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if low := <-fewest; low < 2 {
		t.Errorf("a reader during the appends saw %d keys (-1: a file that does not parse), want at least the 2 there before", low)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if set, err := apikey.Parse(bytes.NewReader(b)); err != nil || set.Len() != 2+appends {
		t.Fatalf("the file after %d appends: %v, %v; want %d keys", appends, set, err, 2+appends)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the key file's mode: %v, %v; want 0600", st.Mode(), err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
		t.Errorf("the directory holds %v, %v; want the key file alone", ents, err)
	}
}

// TestGenerateWithModelKey: a key limited to models (models=, as docs/operations.md
// shows one) is refused for a request that names no model, so `specd generate` and
// `specd bench` name one with --model; the name is the one the router lists.
func TestGenerateWithModelKey(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	stdout, stderr, code := run(t, "key", "new", "ci-bot", "--streams", "1", "--models", "specd-target,specd-draft", "--append", keys)
	if code != 0 {
		t.Fatalf("key new: exit %d: %s", code, stderr)
	}
	secret := strings.TrimSpace(stdout)
	keyFile := filepath.Join(dir, "ci-bot.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := startUpWith(t, secret, "--api-keys", keys)
	args := []string{"generate", "--addr", addr, "--api-key-file", keyFile, "-p", "Once upon a time", "-n", "4", "--json"}
	if _, stderr, code := run(t, args...); code != 1 || !strings.Contains(stderr, "PermissionDenied") {
		t.Errorf("generate naming no model: exit %d, %q; want 1 and PermissionDenied", code, stderr)
	}
	// Streaming text, a refused request prints nothing on stdout: not the prompt with the
	// error run on after it ("Once upon a timespecd generate: rpc error: …").
	if stdout, _, code := run(t, args[:len(args)-1]...); code != 1 || stdout != "" {
		t.Errorf("generate refused, text mode: exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	stdout, stderr, code = run(t, append(args, "--model", "specd-target")...)
	var res generateResult
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.Tokens != 4 {
		t.Errorf("generate --model specd-target: exit %d, %s %s; want 4 tokens", code, stdout, stderr)
	}
	if _, stderr, code := run(t, "bench", "--addr", addr, "--api-key-file", keyFile, "--model", "specd-target", "-n", "2", "--concurrency", "1", "--requests", "1"); code != 0 {
		t.Errorf("bench --model specd-target: exit %d: %s", code, stderr)
	}
}
