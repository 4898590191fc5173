package model_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
)

// headerSeeds are the real files FuzzLoadHeader mutates: llama (F32, Q4_0; tied), qwen2
// (Q/K/V biases, NEOX RoPE) and llama in Llama-3.1 shape (rope_freqs, untied output),
// the last two in Q4_K_M (Q4_K and Q6_K tensors).
var headerSeeds = []string{"stories260K-f32.gguf", "specd-draft-q4_0.gguf", "arch-qwen2-q4_k_m.gguf", "arch-llama3-q4_k_m.gguf"}

// FuzzLoadHeader mutates the header of real model files — the metadata, the vocabulary
// and the tensor table, everything before the tensor data — and loads the result with
// the file's own tensor data after it. Load returns an error, or a model whose tokenizer
// and forward pass run; it never panics. The seeds are the real headers, so every
// mutation starts from a file that reaches the hyperparameters, the vocabulary and every
// tensor's shape check.
func FuzzLoadHeader(f *testing.F) {
	bodies := make([][]byte, len(headerSeeds))
	for i, name := range headerSeeds {
		path := testmodels.ForTest(f, name)
		// Every seed loads as it is, so that mutations start deep in the loader.
		m, err := model.Load(path, model.LoadOptions{Context: 8})
		if err != nil {
			f.Fatalf("seed %s: %v", name, err)
		}
		m.Close()
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		gf, err := gguf.Parse(data)
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		off := gf.DataOffset()
		bodies[i] = data[off:]
		f.Add(uint8(i), data[:off])
	}
	f.Fuzz(func(t *testing.T, which uint8, header []byte) {
		body := bodies[int(which)%len(bodies)]
		path := filepath.Join(t.TempDir(), "fuzz.gguf")
		if err := os.WriteFile(path, append(header[:len(header):len(header)], body...), 0o600); err != nil {
			t.Fatal(err)
		}
		// A short context keeps a model that claims a long one cheap to run; one whose
		// trained context is shorter still is loaded whole.
		m, err := model.Load(path, model.LoadOptions{Context: 8})
		if errors.Is(err, model.ErrContextLength) {
			m, err = model.Load(path, model.LoadOptions{})
		}
		if err != nil {
			return
		}
		defer m.Close()
		ids := m.Tok.Encode("Once upon a time, 12 ü", false)
		for _, id := range ids {
			if id < 0 || int(id) >= m.Vocab {
				t.Fatalf("Encode gave id %d of a %d-token vocabulary", id, m.Vocab)
			}
		}
		_ = m.Tok.Decode(ids)
		toks := []int32{int32(m.Vocab - 1), 0, int32(m.Vocab / 2)}[:min(3, m.Context)]
		st := newState(t, m, 1, 4)
		logits, err := st.Forward(toks, true)
		if err != nil {
			t.Fatalf("Forward on a loaded model: %v", err)
		}
		if len(logits) != len(toks)*m.Vocab {
			t.Fatalf("Forward gave %d logits, want %d", len(logits), len(toks)*m.Vocab)
		}
	})
}
