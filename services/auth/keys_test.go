package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/apikey"
	"github.com/specd-dev/specd/internal/testkeys"
	"github.com/specd-dev/specd/services/auth"
)

// TestKeysReload: Load refuses a missing or malformed file; Reload reads the file
// only when it changed and then stayed the same for one more call; a malformed or
// vanished file leaves the keys in force, and is read again once fixed.
func TestKeysReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	if _, err := auth.Load(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want ErrNotExist", err)
	}
	testkeys.Write(t, path, "a plaintext-key\n", 0)
	if _, err := auth.Load(path); !errors.Is(err, apikey.ErrSyntax) {
		t.Errorf("Load of a malformed file = %v, want ErrSyntax", err)
	}
	testkeys.Write(t, path, testkeys.Line("a", "sa", ""), 0)
	k, err := auth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	has := func(secret string) bool { _, ok := k.Set().Lookup(secret); return ok }
	if changed, err := k.Reload(); changed || err != nil {
		t.Errorf("Reload of an unchanged file = %v, %v, want false, nil", changed, err)
	}
	testkeys.Write(t, path, testkeys.Line("a", "sa", ""), 1) // being written in place
	if changed, err := k.Reload(); changed || err != nil {
		t.Errorf("Reload of a file that just changed = %v, %v, want false, nil", changed, err)
	}
	testkeys.Write(t, path, testkeys.Line("a", "sa", "")+testkeys.Line("b", "sb", ""), 1)
	if changed, err := k.Reload(); changed || err != nil || has("sb") {
		t.Errorf("Reload of a file still changing = %v, %v (b known: %v), want false, nil, false", changed, err, has("sb"))
	}
	if changed, err := k.Reload(); !changed || err != nil || !has("sb") {
		t.Errorf("Reload after adding b = %v, %v (b known: %v), want true, nil, true", changed, err, has("sb"))
	}
	testkeys.Write(t, path, testkeys.Line("a", "sa", "")+"b sb\n", 2)
	k.Reload()
	if changed, err := k.Reload(); changed || !errors.Is(err, apikey.ErrSyntax) || !has("sa") || !has("sb") {
		t.Errorf("Reload of a malformed file = %v, %v, want false, ErrSyntax and both keys still in force", changed, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Reload(); !errors.Is(err, os.ErrNotExist) || !has("sa") {
		t.Errorf("Reload of a removed file = %v, want ErrNotExist and the keys still in force", err)
	}
	testkeys.Write(t, path, testkeys.Line("c", "sc", ""), 3)
	k.Reload()
	if changed, err := k.Reload(); !changed || err != nil || has("sa") || !has("sc") {
		t.Errorf("Reload of the fixed file = %v, %v, want only c in force", changed, err)
	}
}
