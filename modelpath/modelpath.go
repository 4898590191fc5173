// Package modelpath finds model files: an explicit directory (the --models flag or the
// SPECD_MODELS environment variable), else ../shared/models beside the checkout when it
// exists, else the user's cache directory. It depends only on the standard library.
package modelpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnvVar names the environment variable that sets the model directory.
const EnvVar = "SPECD_MODELS"

// ErrNotFound is returned by Resolve when no file of that name exists in the directory.
var ErrNotFound = errors.New("model not found")

// Dir returns the model directory: flagDir if set, else $SPECD_MODELS, else the first
// ../shared/models found walking up from the working directory, else
// $XDG_CACHE_HOME/specd/models (or the platform equivalent).
func Dir(flagDir string) string {
	if flagDir != "" {
		return flagDir
	}
	if d := os.Getenv(EnvVar); d != "" {
		return d
	}
	if d := sharedDir(); d != "" {
		return d
	}
	if c, err := os.UserCacheDir(); err == nil {
		return filepath.Join(c, "specd", "models")
	}
	return filepath.Join(".", "models")
}

// sharedDir walks up from the working directory looking for ../shared/models, the layout
// of this workplace and of CI (the checkout with shared/ beside it).
func sharedDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; {
		cand := filepath.Join(filepath.Dir(d), "shared", "models")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

// Resolve turns a model argument into a file path. An argument that names an existing
// file (or contains a path separator or a file extension) is a path; otherwise it is a
// model name looked up in dir, with ".gguf" or ".bin" appended when missing.
// It returns an error wrapping ErrNotFound when nothing matches.
func Resolve(dir, model string) (string, error) {
	if strings.TrimSpace(model) == "" {
		return "", errors.New("empty model path")
	}
	if st, err := os.Stat(model); err == nil && !st.IsDir() {
		return model, nil
	}
	if strings.ContainsRune(model, os.PathSeparator) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, model)
	}
	for _, cand := range []string{model, model + ".gguf", model + ".bin"} {
		p := filepath.Join(dir, cand)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %q in %s", ErrNotFound, model, dir)
}
