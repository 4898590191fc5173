// Package testkeys writes API key files (package apikey's format) for tests.
package testkeys

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"
	"time"
)

// Line is the key file line of a key called name with the given secret and options
// ("rate=1 streams=2", or "").
func Line(name, secret, opts string) string {
	h := sha256.Sum256([]byte(secret))
	return name + " sha256:" + hex.EncodeToString(h[:]) + " " + opts + "\n"
}

// Write replaces the key file at path with content, stamped version seconds from now,
// so that a reload notices each version however coarse the file system's clock.
func Write(tb testing.TB, path, content string, version int) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	mod := time.Now().Add(time.Duration(version) * time.Second)
	if err := os.Chtimes(path, mod, mod); err != nil {
		tb.Fatal(err)
	}
}
