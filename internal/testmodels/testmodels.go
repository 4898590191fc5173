// Package testmodels locates the shared model files and golden references for tests.
package testmodels

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specd-dev/specd/gguf"
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

// WithMetadata writes a copy of the shared model file name to a temporary directory
// with the metadata kv added (a key already in the file is replaced) and returns its
// path: a real model carrying, say, a tokenizer.chat_template, which no shared file has.
func WithMetadata(tb testing.TB, name string, kv ...gguf.KV) string {
	tb.Helper()
	return rewrite(tb, name, func(meta []gguf.KV) []gguf.KV {
		meta = slices.DeleteFunc(meta, func(e gguf.KV) bool {
			return slices.ContainsFunc(kv, func(n gguf.KV) bool { return n.Key == e.Key })
		})
		return append(meta, kv...)
	})
}

// WithoutBOS writes a copy of the shared model file name whose vocabulary is replaced by
// a byte-level BPE one of as many tokens ("t0", "t1", …; the last is EOS) that names no
// BOS, as llama.cpp's own Qwen2 test vocabulary names none, and returns its path.
func WithoutBOS(tb testing.TB, name string) string {
	tb.Helper()
	return rewrite(tb, name, func(meta []gguf.KV) []gguf.KV {
		var n int
		for _, e := range meta {
			if e.Key == "tokenizer.ggml.tokens" {
				n = e.Value.Len()
			}
		}
		tokens := make([]string, n)
		for i := range tokens {
			tokens[i] = fmt.Sprintf("t%d", i)
		}
		meta = slices.DeleteFunc(meta, func(e gguf.KV) bool { return strings.HasPrefix(e.Key, "tokenizer.") })
		return append(meta,
			gguf.KV{Key: "tokenizer.ggml.model", Value: gguf.NewString("gpt2")},
			gguf.KV{Key: "tokenizer.ggml.pre", Value: gguf.NewString("qwen2")},
			gguf.KV{Key: "tokenizer.ggml.tokens", Value: gguf.NewStrings(tokens)},
			gguf.KV{Key: "tokenizer.ggml.merges", Value: gguf.NewStrings([]string{"t 1"})},
			gguf.KV{Key: "tokenizer.ggml.eos_token_id", Value: gguf.NewUint32(uint32(n - 1))},
		)
	})
}

// rewrite writes a copy of the shared model file name to a temporary directory with
// the metadata edit returns (given a copy of the file's) and returns its path.
func rewrite(tb testing.TB, name string, edit func([]gguf.KV) []gguf.KV) string {
	tb.Helper()
	f, err := gguf.Open(ForTest(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	meta := edit(slices.Clone(f.KV))
	ts := make([]gguf.TensorData, len(f.Tensors))
	for i, info := range f.Tensors {
		_, data, err := f.Tensor(info.Name)
		if err != nil {
			tb.Fatal(err)
		}
		ts[i] = gguf.TensorData{Name: info.Name, Dims: info.Dims, Type: info.Type, Data: data}
	}
	path := filepath.Join(tb.TempDir(), filepath.Base(name))
	out, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(out)
	if err := gguf.Write(w, meta, ts, f.Alignment); err != nil {
		tb.Fatal(err)
	}
	if err := errors.Join(w.Flush(), out.Close()); err != nil {
		tb.Fatal(err)
	}
	return path
}

// ChatCase is one rendering of Qwen2.5's chat template by Hugging Face's own Jinja
// (../shared/vocab/chat/qwen2.5-chat-cases.jsonl). Messages is the JSON array of
// {"role", "content"} objects as the file holds it.
type ChatCase struct {
	Messages            json.RawMessage `json:"messages"`
	AddGenerationPrompt bool            `json:"add_generation_prompt"`
	Text                string          `json:"text"`
}

// QwenChat returns the path and text of Qwen2.5's chat template and the shared cases
// rendered with it, failing the test when any is missing or unreadable.
func QwenChat(tb testing.TB) (path, src string, cases []ChatCase) {
	tb.Helper()
	dir := filepath.Join(VocabDir(tb), "chat")
	path = filepath.Join(dir, "qwen2.5-chat-template.jinja")
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "qwen2.5-chat-cases.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c ChatCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			tb.Fatalf("%s: case %d: %v", f.Name(), len(cases), err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(cases) == 0 {
		tb.Fatalf("%s: no cases", f.Name())
	}
	return path, string(b), cases
}
