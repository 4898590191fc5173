package tokenizer

// The shared vocabularies, read with the project's own file readers (gguf, llama2c) and
// turned into a Vocab the way the model loader does.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/llama2c"
)

// vocabFromGGUF builds a Vocab from a GGUF file's tokenizer.ggml.* metadata.
func vocabFromGGUF(path string) (Vocab, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return Vocab{}, err
	}
	defer f.Close()
	if model, err := f.String("tokenizer.ggml.model"); err != nil || model != "llama" {
		return Vocab{}, fmt.Errorf("tokenizer.ggml.model = %q (%v), want llama", model, err)
	}
	v := Vocab{SpaceIsMeta: true}
	if v.Tokens, err = f.Strings("tokenizer.ggml.tokens"); err != nil {
		return Vocab{}, err
	}
	if v.Scores, err = f.Float32s("tokenizer.ggml.scores"); err != nil {
		return Vocab{}, err
	}
	types, err := f.Int32s("tokenizer.ggml.token_type")
	if err != nil {
		return Vocab{}, err
	}
	v.Types = make([]TokenType, len(types))
	for i, tt := range types {
		v.Types[i] = TokenType(tt)
	}
	for _, id := range []struct {
		key string
		dst *int32
	}{
		{"tokenizer.ggml.bos_token_id", &v.BOS},
		{"tokenizer.ggml.eos_token_id", &v.EOS},
		{"tokenizer.ggml.unknown_token_id", &v.UNK},
	} {
		x, err := f.Uint(id.key)
		if err != nil {
			return Vocab{}, err
		}
		*id.dst = int32(x)
	}
	if v.AddBOS, err = f.Bool("tokenizer.ggml.add_bos_token"); err != nil {
		return Vocab{}, err
	}
	return v, nil
}

// vocabFromTokenizerBin builds a Vocab from llama2.c's tokenizer.bin, which has no types
// or special ids: llama2.c fixes <unk>=0, <s>=1, </s>=2 and always starts with BOS.
func vocabFromTokenizerBin(path string, size int) (Vocab, error) {
	tv, err := llama2c.ReadTokenizer(path, size)
	if err != nil {
		return Vocab{}, err
	}
	return Vocab{Tokens: tv.Tokens, Scores: tv.Scores, BOS: 1, EOS: 2, UNK: 0, AddBOS: true}, nil
}

// The shared tokenizers, loaded once per test binary.
var (
	vocabMu    sync.Mutex
	vocabCache = map[string]*Tokenizer{}
)

// loadTokenizer returns the tokenizer of a shared GGUF model file, or of tok512.bin.
func loadTokenizer(tb testing.TB, name string) *Tokenizer {
	tb.Helper()
	vocabMu.Lock()
	defer vocabMu.Unlock()
	if tok, ok := vocabCache[name]; ok {
		return tok
	}
	path := testmodels.ForTest(tb, name)
	var v Vocab
	var err error
	if name == tok512File {
		v, err = vocabFromTokenizerBin(path, 512)
	} else {
		v, err = vocabFromGGUF(path)
	}
	if err != nil {
		tb.Fatalf("reading %s: %v", name, err)
	}
	tok, err := New(v)
	if err != nil {
		tb.Fatalf("New(vocabulary of %s): %v", name, err)
	}
	vocabCache[name] = tok
	return tok
}

// refPrompt is one prompt and its ids from a reference file.
type refPrompt struct {
	File      string
	Line      int
	Model     string  `json:"model"`
	ID        string  `json:"id"`
	Prompt    string  `json:"prompt"`
	PromptIDs []int32 `json:"prompt_ids"`
}

// benchPromptsPath is ../shared/bench/prompts.jsonl, beside the reference directory.
func benchPromptsPath(tb testing.TB) string {
	return filepath.Join(filepath.Dir(testmodels.ReferenceDir(tb)), "bench", "prompts.jsonl")
}

// readPrompts reads the prompts (and their ids, when given) of a JSON Lines file.
func readPrompts(tb testing.TB, path string) []refPrompt {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("reference file: %v", err)
	}
	defer f.Close()
	var out []refPrompt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		var p refPrompt
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			tb.Fatalf("%s:%d: %v", path, line, err)
		}
		p.File, p.Line = filepath.Base(path), line
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	if len(out) == 0 {
		tb.Fatalf("%s: no prompts", path)
	}
	return out
}
