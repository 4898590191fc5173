// Package testmodels locates the shared model files and golden references for tests.
package testmodels

import (
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/modelpath"
)

// ForTest returns the path of a shared model file for a test, failing the test (not
// skipping it) when the file is missing: in CI a missing model is a failure.
func ForTest(tb testing.TB, name string) string {
	tb.Helper()
	p, err := modelpath.Resolve(modelpath.Dir(""), name)
	if err != nil {
		tb.Fatalf("model %s: %v (set %s or place ../shared beside the checkout)", name, err, modelpath.EnvVar)
	}
	return p
}

// ReferenceDir returns the directory of golden references (../shared/reference), found
// next to the model directory.
func ReferenceDir(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(filepath.Dir(modelpath.Dir("")), "reference")
}

// VocabDir returns the directory of tokenizer test vocabularies (../shared/vocab), found
// next to the model directory.
func VocabDir(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(filepath.Dir(modelpath.Dir("")), "vocab")
}
