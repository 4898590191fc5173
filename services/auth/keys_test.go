package auth_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/specd-dev/specd/apikey"
	"github.com/specd-dev/specd/services/auth"
)

func line(name, secret string) string {
	h := sha256.Sum256([]byte(secret))
	return name + " sha256:" + hex.EncodeToString(h[:]) + "\n"
}

// write replaces the file at path, stamped version seconds from now.
func write(t *testing.T, path, content string, version int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	mod := time.Now().Add(time.Duration(version) * time.Second)
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// TestKeysReload: Load refuses a missing or malformed file; Reload reads the file
// only when it changed; a malformed or vanished file leaves the keys in force, and
// is read again once fixed.
func TestKeysReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	if _, err := auth.Load(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want ErrNotExist", err)
	}
	write(t, path, "a plaintext-key\n", 0)
	if _, err := auth.Load(path); !errors.Is(err, apikey.ErrSyntax) {
		t.Errorf("Load of a malformed file = %v, want ErrSyntax", err)
	}
	write(t, path, line("a", "sa"), 0)
	k, err := auth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	has := func(secret string) bool { _, ok := k.Set().Lookup(secret); return ok }
	if changed, err := k.Reload(); changed || err != nil {
		t.Errorf("Reload of an unchanged file = %v, %v, want false, nil", changed, err)
	}
	write(t, path, line("a", "sa")+line("b", "sb"), 1)
	if changed, err := k.Reload(); !changed || err != nil || !has("sb") {
		t.Errorf("Reload after adding b = %v, %v (b known: %v), want true, nil, true", changed, err, has("sb"))
	}
	write(t, path, line("a", "sa")+"b sb\n", 2)
	if changed, err := k.Reload(); changed || !errors.Is(err, apikey.ErrSyntax) || !has("sa") || !has("sb") {
		t.Errorf("Reload of a malformed file = %v, %v, want false, ErrSyntax and both keys still in force", changed, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Reload(); !errors.Is(err, os.ErrNotExist) || !has("sa") {
		t.Errorf("Reload of a removed file = %v, want ErrNotExist and the keys still in force", err)
	}
	write(t, path, line("c", "sc"), 3)
	if changed, err := k.Reload(); !changed || err != nil || has("sa") || !has("sc") {
		t.Errorf("Reload of the fixed file = %v, %v, want only c in force", changed, err)
	}
}
