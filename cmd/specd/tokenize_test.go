package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
)

// TestTokenize runs `specd tokenize` on vocabulary-only GGUFs and on a model; the
// expected ids are llama.cpp's (../shared/vocab/*.out and its llama-tokenize).
func TestTokenize(t *testing.T) {
	vocab := func(name string) string { return filepath.Join(testmodels.VocabDir(t), "ggml-vocab-"+name+".gguf") }
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, []byte("Hello world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	latin1 := filepath.Join(t.TempDir(), "latin1.txt") // not UTF-8: read byte for byte
	if err := os.WriteFile(latin1, []byte("caf\xe9 au lait"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-m", vocab("qwen2"), "-p", "Hello"}, "9707\n"},
		{[]string{"-m", vocab("qwen2"), "-p", "Hello", "--bos"}, "9707\n"}, // Qwen2 asks for no BOS
		{[]string{"-m", vocab("llama-bpe"), "-p", "Hello world", "--bos"}, "128000 9906 1917\n"},
		{[]string{"-m", vocab("llama-bpe"), "-p", "<|begin_of_text|>Hi", "--json"}, `{"ids":[27,91,7413,3659,4424,91,29,13347]}` + "\n"},
		{[]string{"-m", vocab("llama-bpe"), "-p", "<|begin_of_text|>Hi", "--special", "--json"}, `{"ids":[128000,13347]}` + "\n"},
		{[]string{"-m", vocab("gpt-2"), "--file", text}, "15496 995 198\n"},
		{[]string{"-m", vocab("qwen2"), "--file", latin1}, "68796 5691 7906 1187 275\n"}, // llama-tokenize's: é's byte as U+FFFD
		{[]string{"-m", vocab("llama-spm"), "-p", ""}, "\n"},
		{[]string{"-m", vocab("llama-spm"), "-p", "", "--json"}, `{"ids":[]}` + "\n"},
		{[]string{"-m", "stories260K", "-p", "Once upon a time", "--bos"}, "1 403 407 261 378\n"},
	} {
		stdout, stderr, code := run(t, append([]string{"tokenize"}, c.args...)...)
		if code != 0 || stdout != c.want {
			t.Errorf("tokenize %q: exit %d, stdout %q, stderr %q; want %q", c.args, code, stdout, stderr, c.want)
		}
	}

	// A vocabulary with a pre-tokenizer specd does not know: a runtime error naming it.
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	f, err := os.Create(bad)
	if err != nil {
		t.Fatal(err)
	}
	err = gguf.Write(f, []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: gguf.NewString("gpt2")},
		{Key: "tokenizer.ggml.pre", Value: gguf.NewString("future-bpe")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.NewStrings([]string{"a"})},
		{Key: "tokenizer.ggml.merges", Value: gguf.NewStrings(nil)},
	}, nil, 0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := run(t, "tokenize", "-m", bad, "-p", "a"); code != 1 || !strings.Contains(stderr, `"future-bpe"`) {
		t.Errorf("unknown pre-tokenizer: exit %d, stderr %q; want exit 1 naming it", code, stderr)
	}

	for _, args := range [][]string{
		{"tokenize", "-p", "x"},
		{"tokenize", "-m", vocab("qwen2")},
		{"tokenize", "-m", vocab("qwen2"), "-p", "x", "--file", text},
		{"tokenize", "-m", vocab("qwen2"), "--file", filepath.Join(t.TempDir(), "missing.txt")},
		{"tokenize", "-m", "no-such-model", "-p", "x"},
	} {
		_, stderr, code := run(t, args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
}

// TestTokenizeAddEOS runs `specd tokenize --bos` on vocabularies with
// tokenizer.ggml.add_eos_token set: EOS goes last when BOS is added, as llama-tokenize
// b4748 does without --no-bos (its ids: Llama 3 [128000, 9906, 1917, 128001], Llama 2 [1,
// 15043, 3186, 2]); Qwen2 asks for no BOS, so llama-tokenize adds neither ([9707, 1879]).
// Special-token whitespace follows llama.cpp's Phi-3 rule: [1, 32007, 15043, 32000].
func TestTokenizeAddEOS(t *testing.T) {
	dir := t.TempDir()
	edited := func(name string) string {
		f, err := gguf.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-"+name+".gguf"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var kv []gguf.KV
		for _, e := range f.KV {
			if e.Key != "tokenizer.ggml.add_eos_token" {
				kv = append(kv, e)
			}
		}
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: gguf.NewBool(true)})
		path := filepath.Join(dir, name+".gguf")
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(gguf.Write(out, kv, nil, 0), out.Close()); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-m", edited("llama-bpe"), "-p", "Hello world", "--bos"}, "128000 9906 1917 128001\n"},
		{[]string{"-m", edited("llama-bpe"), "-p", "Hello world"}, "9906 1917\n"},
		{[]string{"-m", edited("llama-spm"), "-p", "Hello world", "--bos", "--special"}, "1 15043 3186 2\n"},
		{[]string{"-m", edited("qwen2"), "-p", "Hello world", "--bos"}, "9707 1879\n"},
		{[]string{"-m", edited("phi-3"), "-p", "<|end|>\n Hello", "--bos", "--special"}, "1 32007 15043 32000\n"},
	} {
		stdout, stderr, code := run(t, append([]string{"tokenize"}, c.args...)...)
		if code != 0 || stdout != c.want {
			t.Errorf("tokenize %q: exit %d, stdout %q, stderr %q; want %q", c.args, code, stdout, stderr, c.want)
		}
	}
}
