package ggufvocab_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// The vocabulary-only GGUFs of ../shared/vocab (see its README): llama.cpp's
// test-tokenizer-0 texts (NAME.gguf.inp) and the ids Hugging Face's tokenizers give them
// (NAME.gguf.out), tokenized as raw text without BOS.
var vectorFiles = []struct {
	name string
	bpe  bool
}{
	{"ggml-vocab-llama-bpe.gguf", true},
	{"ggml-vocab-qwen2.gguf", true},
	{"ggml-vocab-gpt-2.gguf", true},
	{"ggml-vocab-deepseek-coder.gguf", true},
	{"ggml-vocab-starcoder.gguf", true},
	{"ggml-vocab-llama-spm.gguf", false},
	{"ggml-vocab-phi-3.gguf", false},
}

var (
	vocabMu    sync.Mutex
	vocabCache = map[string]*tokenizer.Tokenizer{}
)

// loadVocab returns the tokenizer of a file in ../shared/vocab, failing the test when the
// file is missing.
func loadVocab(tb testing.TB, name string) *tokenizer.Tokenizer {
	tb.Helper()
	return cachedVocab(tb, name, func() (*tokenizer.Tokenizer, error) {
		return ggufvocab.Open(filepath.Join(testmodels.VocabDir(tb), name))
	})
}

// cachedVocab returns the tokenizer cached under key, loading it on first use; a load
// error fails the test.
func cachedVocab(tb testing.TB, key string, load func() (*tokenizer.Tokenizer, error)) *tokenizer.Tokenizer {
	tb.Helper()
	vocabMu.Lock()
	defer vocabMu.Unlock()
	if tok, ok := vocabCache[key]; ok {
		return tok
	}
	tok, err := load()
	if err != nil {
		tb.Fatalf("%s: %v", key, err)
	}
	vocabCache[key] = tok
	return tok
}

type vector struct {
	text string
	ids  []int32
}

// readVectors reads NAME.inp and NAME.out: the texts are separated by lines
// "__ggml_vocab_test__" (each text ends with the newline before one), the ids are one
// line per text.
func readVectors(tb testing.TB, path string) []vector {
	tb.Helper()
	inp, err := os.ReadFile(path + ".inp")
	if err != nil {
		tb.Fatal(err)
	}
	out, err := os.ReadFile(path + ".out")
	if err != nil {
		tb.Fatal(err)
	}
	const sep = "\n__ggml_vocab_test__\n"
	texts := strings.Split(string(inp), sep)
	if last := texts[len(texts)-1]; last != "" {
		tb.Fatalf("%s.inp does not end with the separator (trailing %q)", path, last)
	}
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		tb.Fatalf("%s: %d texts but %d id lines", path, len(texts), len(lines))
	}
	vs := make([]vector, len(texts))
	for i, line := range lines {
		vs[i].text = texts[i]
		vs[i].ids = []int32{}
		for _, f := range strings.Fields(line) {
			id, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				tb.Fatalf("%s.out line %d: %v", path, i+1, err)
			}
			vs[i].ids = append(vs[i].ids, int32(id))
		}
	}
	return vs
}

// TestVectors checks Encode against every test vector of every shared vocabulary, and
// that no vocabulary there goes untested.
func TestVectors(t *testing.T) {
	dir := testmodels.VocabDir(t)
	onDisk, err := filepath.Glob(filepath.Join(dir, "*.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range onDisk {
		if !slices.ContainsFunc(vectorFiles, func(f struct {
			name string
			bpe  bool
		}) bool {
			return f.name == filepath.Base(p)
		}) {
			t.Errorf("%s has no entry in vectorFiles", filepath.Base(p))
		}
	}
	for _, vf := range vectorFiles {
		t.Run(vf.name, func(t *testing.T) {
			tok := loadVocab(t, vf.name)
			if got, want := tok.Model() == tokenizer.ByteLevelBPE, vf.bpe; got != want {
				t.Errorf("Model() = %v, want byte-level BPE %v", tok.Model(), want)
			}
			for i, v := range readVectors(t, filepath.Join(dir, vf.name)) {
				got := tok.Encode(v.text, false)
				if !slices.Equal(got, v.ids) {
					t.Errorf("case %d: Encode(%q) = %v, want %v", i, v.text, got, v.ids)
				}
				if back := tok.Decode(got); vf.bpe && back != v.text {
					t.Errorf("case %d: Decode(Encode(%q)) = %q", i, v.text, back)
				}
			}
		})
	}
}
