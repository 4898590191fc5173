package ggufvocab_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// testdata/pretok/llamacpp-b4748.tsv holds llama.cpp's ids for the texts of
// testdata/pretok (TEXT.txt) under every pre-tokenizer type: the Llama 3 vocabulary of
// ../shared/vocab with tokenizer.ggml.pre set to the type, tokenized by
// ../shared/tools/llama.cpp-b4748/llama-tokenize --ids --no-bos --no-parse-special (see
// testdata/pretok/README.md). A type that build does not know is recorded as
// "ERROR …" and left to the pattern tests in package tokenizer.
func TestPreTokenizersMatchLlamaCpp(t *testing.T) {
	path := filepath.Join(testmodels.VocabDir(t), "ggml-vocab-llama-bpe.gguf")
	base := readVocab(t, path)
	rows := readTSV(t, filepath.Join("testdata", "pretok", "llamacpp-b4748.tsv"))
	toks := map[string]*tokenizer.Tokenizer{}
	checked := map[string]bool{}
	// With -short, one name of each group of aliases (building the Llama 3 vocabulary
	// takes a quarter of a second, and much longer under -race).
	short := map[string]bool{
		"default": true, "llama-bpe": true, "dbrx": true, "chatglm-bpe": true, "deepseek-llm": true,
		"deepseek-coder": true, "deepseek-v3": true, "falcon": true, "starcoder": true, "gpt-2": true,
		"qwen2": true, "poro-chat": true, "viking": true, "tekken": true, "chameleon": true,
	}
	for _, r := range rows {
		if strings.HasPrefix(r[2], "ERROR") || testing.Short() && !short[r[0]] {
			continue
		}
		pre, textName := r[0], r[1]
		tok, ok := toks[pre]
		if !ok {
			v := base
			v.Pre = pre
			var err error
			if tok, err = tokenizer.New(v); err != nil {
				t.Fatalf("New(llama-bpe vocabulary with pre %q): %v", pre, err)
			}
			toks[pre] = tok
		}
		text, err := os.ReadFile(filepath.Join("testdata", "pretok", textName+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		var want []int32
		if err := json.Unmarshal([]byte(r[2]), &want); err != nil {
			t.Fatalf("%s/%s: ids %q: %v", pre, textName, r[2], err)
		}
		got := tok.Encode(string(text), false)
		if d := diffIDs(got, want); d != "" {
			t.Errorf("pre %s, text %s: %s\nwords: %q", pre, textName, d, pieces(tok, got, want))
		}
		checked[pre] = true
	}
	if testing.Short() {
		return
	}
	// The types of issue 13 that llama.cpp b4748 already had must all have been checked.
	for _, pre := range []string{
		"default", "llama3", "llama-v3", "llama-bpe", "falcon3", "deepseek-llm", "deepseek-coder", "deepseek-v3",
		"falcon", "mpt", "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de", "jina-v1-en",
		"gigachat", "roberta-bpe", "refact", "command-r", "qwen2",
		"deepseek-r1-qwen", "stablelm2", "olmo", "dbrx", "smaug-bpe", "poro-chat", "chatglm-bpe", "viking",
		"jais", "tekken", "smollm", "codeshell", "bloom", "gpt3-finnish", "exaone", "chameleon", "minerva-7b",
		"megrez",
	} {
		if !checked[pre] {
			t.Errorf("pre-tokenizer %q has no llama.cpp reference in the table", pre)
		}
	}
}

// pieces shows the pieces around the first difference of got and want, for a failure
// message.
func pieces(tok *tokenizer.Tokenizer, got, want []int32) [2][]string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	show := func(ids []int32) []string {
		var out []string
		for _, id := range ids[max(0, i-3):min(len(ids), i+5)] {
			out = append(out, tok.Piece(id))
		}
		return out
	}
	return [2][]string{show(got), show(want)}
}

func readVocab(tb testing.TB, path string) tokenizer.Vocab {
	tb.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	v, err := ggufvocab.Read(f)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func readTSV(tb testing.TB, path string) [][3]string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var rows [][3]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "\t", 3)
		if len(parts) != 3 {
			tb.Fatalf("%s: bad line %q", path, sc.Text())
		}
		rows = append(rows, [3]string(parts))
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(rows) == 0 {
		tb.Fatalf("%s: empty", path)
	}
	return rows
}

func diffIDs(got, want []int32) string {
	if slices.Equal(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("first difference at index %d (len %d, want len %d)", i, len(got), len(want))
}
