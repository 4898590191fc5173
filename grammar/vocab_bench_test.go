package grammar_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// BenchmarkVocab: building a vocabulary's tries, once per tokenizer (Qwen2's).
func BenchmarkVocab(b *testing.B) {
	path := filepath.Join(testmodels.VocabDir(b), "ggml-vocab-qwen2.gguf")
	for b.Loop() {
		b.StopTimer()
		tok, err := ggufvocab.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		grammar.ObjectFormat().Grammar(tok)
	}
}

// BenchmarkVocabBurst: eight requests under a format arriving at once for a tokenizer
// whose tries are not built yet build them once between them.
func BenchmarkVocabBurst(b *testing.B) {
	path := filepath.Join(testmodels.VocabDir(b), "ggml-vocab-qwen2.gguf")
	for b.Loop() {
		b.StopTimer()
		tok, err := ggufvocab.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { grammar.ObjectFormat().Grammar(tok) })
		}
		wg.Wait()
	}
}
