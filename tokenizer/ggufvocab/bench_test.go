package ggufvocab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer"
)

// BenchmarkNew times building the Llama 3 tokenizer (128,256 pieces, 280,147 merges).
func BenchmarkNew(b *testing.B) {
	v := readVocab(b, filepath.Join(testmodels.VocabDir(b), "ggml-vocab-llama-bpe.gguf"))
	for b.Loop() {
		if _, err := tokenizer.New(v); err != nil {
			b.Fatal(err)
		}
	}
}

// benchText is size bytes of the pre-tokenizer texts, repeated.
func benchText(b *testing.B, size int) string {
	var sb strings.Builder
	for sb.Len() < size {
		for _, name := range []string{"vectors", "multilingual", "code"} {
			t, err := os.ReadFile(filepath.Join("testdata", "pretok", name+".txt"))
			if err != nil {
				b.Fatal(err)
			}
			sb.Write(t)
			sb.WriteByte('\n')
		}
	}
	return strings.ToValidUTF8(sb.String()[:size], "")
}

// BenchmarkEncode reports encoding throughput (bytes of text per second) on each
// byte-level vocabulary, for a prompt-sized text (4 KiB) and a long one (1 MiB).
func BenchmarkEncode(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		text := benchText(b, size)
		for _, vf := range vectorFiles {
			if !vf.bpe {
				continue
			}
			name := strings.TrimSuffix(strings.TrimPrefix(vf.name, "ggml-vocab-"), ".gguf")
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				tok := loadVocab(b, vf.name)
				b.SetBytes(int64(len(text)))
				for b.Loop() {
					tok.Encode(text, false)
				}
			})
		}
	}
}

// BenchmarkEncodeDegenerate times texts with no word boundaries, one long white-space
// run, digits and emoji, at 64 KiB and at 1 MiB: the time per byte must stay flat (no
// quadratic blow-up) on Llama 3 and Qwen2.
func BenchmarkEncodeDegenerate(b *testing.B) {
	for _, vf := range []string{"ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf"} {
		tok := loadVocab(b, vf)
		for _, unit := range []struct{ name, s string }{{"letters", "a"}, {"spaces", " "}, {"newlines", "\n"}, {"digits", "7"}, {"emoji", "😀"}, {"punct", "!?"}} {
			for _, size := range []int{64 << 10, 1 << 20} {
				text := strings.Repeat(unit.s, size/len(unit.s))
				b.Run(fmt.Sprintf("%s/%s/%dKiB", strings.TrimSuffix(strings.TrimPrefix(vf, "ggml-vocab-"), ".gguf"), unit.name, size>>10), func(b *testing.B) {
					b.SetBytes(int64(len(text)))
					for b.Loop() {
						tok.Encode(text, false)
					}
				})
			}
		}
	}
}
