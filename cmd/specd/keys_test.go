package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
