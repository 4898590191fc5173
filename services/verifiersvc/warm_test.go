package verifiersvc

import (
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/services"
)

// TestEngineWithoutBOS: the engine's warm-up passes run on a model whose byte-level
// vocabulary names no BOS (as llama.cpp's own Qwen2 test vocabulary names none), so
// specd up serves it rather than failing at start on the id -1.
func TestEngineWithoutBOS(t *testing.T) {
	m, err := model.Load(testmodels.WithoutBOS(t, "arch-qwen2-f16.gguf"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	eng, err := services.NewEngine(m, services.EngineConfig{Threads: 1, KVBudget: 32 << 20, KVType: ggml.F32, MaxBlock: 64})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Engine: EngineConfig{Threads: 1}}, nil)
	t.Cleanup(s.Close)
	if err := s.SetEngine(eng); err != nil {
		t.Fatalf("SetEngine of a model without BOS: %v", err)
	}
}
