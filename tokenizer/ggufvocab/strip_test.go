package ggufvocab_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// llamaTokenize, when set, makes TestLlamaCppTokenize regenerate its reference ids with
// this llama-tokenize program instead of checking them: go test ./tokenizer/ggufvocab
// -run TestLlamaCppTokenize -llama-tokenize ../shared/tools/llama.cpp-b4748/llama-tokenize
var llamaTokenize = flag.String("llama-tokenize", "", "regenerate testdata/strip/llamacpp-b4748.jsonl with this llama-tokenize")

// A vocabVariant is a shared vocabulary, possibly with edited metadata: a model name
// that llama.cpp's whitespace rules match, an appended token, add_eos_token set.
type vocabVariant struct {
	name, file string
	edit       func(kv []gguf.KV) []gguf.KV // nil: the file as it is
	few        bool                         // tokenized on a few texts only
}

var stripVariants = []vocabVariant{
	{name: "llama-bpe", file: "ggml-vocab-llama-bpe.gguf"},
	{name: "qwen2", file: "ggml-vocab-qwen2.gguf"},
	{name: "gpt-2", file: "ggml-vocab-gpt-2.gguf"},
	{name: "deepseek-coder", file: "ggml-vocab-deepseek-coder.gguf"},
	{name: "starcoder", file: "ggml-vocab-starcoder.gguf"},
	{name: "llama-spm", file: "ggml-vocab-llama-spm.gguf"},
	// general.name "Phi3": every special token strips the whitespace after it, but <s>,
	// <unk> and <|endoftext|>.
	{name: "phi-3", file: "ggml-vocab-phi-3.gguf"},
	// The same vocabulary under another name: no whitespace is stripped.
	{name: "phi-3,name=Mistral", file: "ggml-vocab-phi-3.gguf", edit: func(kv []gguf.KV) []gguf.KV {
		return with(kv, "general.name", ptr(gguf.NewString("Mistral")))
	}},
	// A jina-v2 vocabulary's <mask> strips the whitespace before it: GPT-2's vocabulary
	// with the pre-tokenizer type renamed and a <mask> token appended, as a control token
	// (split out only when special tokens are parsed) and as a user-defined one (always).
	{name: "gpt-2,pre=jina-v2-code,mask=control", file: "ggml-vocab-gpt-2.gguf", edit: func(kv []gguf.KV) []gguf.KV {
		return appendToken(with(kv, "tokenizer.ggml.pre", ptr(gguf.NewString("jina-v2-code"))), "<mask>", tokenizer.TypeControl)
	}},
	{name: "gpt-2,pre=jina-v2-de,mask=user", file: "ggml-vocab-gpt-2.gguf", edit: func(kv []gguf.KV) []gguf.KV {
		return appendToken(with(kv, "tokenizer.ggml.pre", ptr(gguf.NewString("jina-v2-de"))), "<mask>", tokenizer.TypeUserDefined)
	}},
	// Another pre-tokenizer type with a <mask>: nothing is stripped.
	{name: "gpt-2,pre=roberta-bpe,mask=user", file: "ggml-vocab-gpt-2.gguf", few: true, edit: func(kv []gguf.KV) []gguf.KV {
		return appendToken(with(kv, "tokenizer.ggml.pre", ptr(gguf.NewString("roberta-bpe"))), "<mask>", tokenizer.TypeUserDefined)
	}},
	// tokenizer.ggml.add_eos_token true.
	{name: "llama-bpe,add_eos", file: "ggml-vocab-llama-bpe.gguf", few: true, edit: addEOS},
	{name: "qwen2,add_eos", file: "ggml-vocab-qwen2.gguf", few: true, edit: addEOS},
	{name: "llama-spm,add_eos", file: "ggml-vocab-llama-spm.gguf", few: true, edit: addEOS},
	{name: "phi-3,add_eos", file: "ggml-vocab-phi-3.gguf", few: true, edit: addEOS},
}

func addEOS(kv []gguf.KV) []gguf.KV {
	return with(kv, "tokenizer.ggml.add_eos_token", ptr(gguf.NewBool(true)))
}

// appendToken adds a token of type typ after the last id (with score 0 where the
// vocabulary has scores).
func appendToken(kv []gguf.KV, text string, typ tokenizer.TokenType) []gguf.KV {
	out := slices.Clone(kv)
	for i, e := range out {
		switch e.Key {
		case "tokenizer.ggml.tokens":
			toks, _ := e.Value.Strings()
			out[i].Value = gguf.NewStrings(append(toks, text))
		case "tokenizer.ggml.token_type":
			types, _ := e.Value.Int32s()
			out[i].Value = gguf.NewInt32s(append(types, int32(typ)))
		case "tokenizer.ggml.scores":
			scores, _ := e.Value.Float32s()
			out[i].Value = gguf.NewFloat32s(append(scores, 0))
		}
	}
	return out
}

// stripModes are the ways llama-tokenize is run on each text: --no-escape always, and
// --no-bos and --no-parse-special where the mode does not add special tokens or parse
// special-token text.
var stripModes = []struct {
	name              string
	addSpecial, parse bool
}{
	{"raw", false, false},
	{"special", false, true},
	{"bos", true, false},
	{"bos-special", true, true},
}

// stripRow is one line of testdata/strip/llamacpp-b4748.jsonl.
type stripRow struct {
	Vocab string  `json:"vocab"`
	Mode  string  `json:"mode"`
	Text  string  `json:"text"`
	IDs   []int32 `json:"ids"`
}

// TestLlamaCppTokenize checks Tokenize against llama.cpp b4748's llama-tokenize on texts
// with whitespace around special tokens (testdata/strip/texts.json), on every shared
// vocabulary and on edited ones (stripVariants) that llama.cpp's per-model whitespace
// rules and tokenizer.ggml.add_eos_token apply to, in each of stripModes. Run it with
// -llama-tokenize to regenerate testdata/strip/llamacpp-b4748.jsonl.
func TestLlamaCppTokenize(t *testing.T) {
	if *llamaTokenize != "" {
		regenerateStrip(t, *llamaTokenize)
		return
	}
	f, err := os.Open(filepath.Join("testdata", "strip", "llamacpp-b4748.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	counts := map[string]int{}
	for sc.Scan() {
		var r stripRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		i := slices.IndexFunc(stripModes, func(m struct {
			name              string
			addSpecial, parse bool
		}) bool {
			return m.name == r.Mode
		})
		if i < 0 {
			t.Fatalf("unknown mode %q", r.Mode)
		}
		m := stripModes[i]
		tok := loadVariant(t, r.Vocab)
		got := tok.Tokenize(r.Text, m.addSpecial && tok.AddBOS(), m.parse)
		if d := diffIDs(got, r.IDs); d != "" {
			t.Errorf("%s, %s: Tokenize(%q) = %v, want %v: %s\npieces: %q", r.Vocab, r.Mode, r.Text, got, r.IDs, d, pieces(tok, got, r.IDs))
		}
		counts[r.Vocab]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, v := range stripVariants {
		if counts[v.name] == 0 {
			t.Errorf("no reference ids for %s", v.name)
		}
	}
}

// variantKV returns the metadata of the named stripVariants entry.
func variantKV(tb testing.TB, name string) []gguf.KV {
	tb.Helper()
	i := slices.IndexFunc(stripVariants, func(v vocabVariant) bool { return v.name == name })
	if i < 0 {
		tb.Fatalf("unknown vocabulary variant %q", name)
	}
	v := stripVariants[i]
	f, err := gguf.Open(filepath.Join(testmodels.VocabDir(tb), v.file))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	kv := slices.Clone(f.KV)
	if v.edit != nil {
		kv = v.edit(kv)
	}
	return kv
}

// loadVariant returns the tokenizer of the named stripVariants entry.
func loadVariant(tb testing.TB, name string) *tokenizer.Tokenizer {
	tb.Helper()
	return cachedVocab(tb, "variant "+name, func() (*tokenizer.Tokenizer, error) {
		return ggufvocab.Load(parse(tb, variantKV(tb, name)))
	})
}

// regenerateStrip writes every variant to a GGUF, runs llama-tokenize on each text in
// each mode and rewrites testdata/strip/llamacpp-b4748.jsonl.
func regenerateStrip(t *testing.T, tool string) {
	data, err := os.ReadFile(filepath.Join("testdata", "strip", "texts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	if err := json.Unmarshal(data, &texts); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	textFiles := make([]string, len(texts))
	for i, s := range texts {
		textFiles[i] = filepath.Join(dir, fmt.Sprintf("text%d.txt", i))
		if err := os.WriteFile(textFiles[i], []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	for vi, v := range stripVariants {
		path := filepath.Join(dir, fmt.Sprintf("vocab%d.gguf", vi))
		var buf bytes.Buffer
		if err := gguf.Write(&buf, variantKV(t, v.name), nil, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		for ti, s := range texts {
			if v.few && ti%6 != 0 && s != "" {
				continue
			}
			for _, m := range stripModes {
				args := []string{"-m", path, "-f", textFiles[ti], "--ids", "--log-disable", "--no-escape"}
				if !m.addSpecial {
					args = append(args, "--no-bos")
				}
				if !m.parse {
					args = append(args, "--no-parse-special")
				}
				cmd := exec.Command(tool, args...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				stdout, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s %q: %v\n%s", tool, args, err, stderr.String())
				}
				var ids []int32
				if err := json.Unmarshal(bytes.TrimSpace(stdout), &ids); err != nil {
					t.Fatalf("%s %q printed %q: %v", tool, args, stdout, err)
				}
				if ids == nil {
					ids = []int32{}
				}
				if err := enc.Encode(stripRow{Vocab: v.name, Mode: m.name, Text: s, IDs: ids}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := os.WriteFile(filepath.Join("testdata", "strip", "llamacpp-b4748.jsonl"), out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStripMissingToken checks a vocabulary under a Phi-3 name that lacks some of the
// tokens llama.cpp's rule names (Llama 2's has no <|endoftext|>; llama.cpp b4748 then
// fails to load it): it loads, and </s> strips the whitespace after it.
func TestStripMissingToken(t *testing.T) {
	f, err := gguf.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := ggufvocab.Load(parse(t, with(f.KV, "general.name", ptr(gguf.NewString("Phi-3-mini-4k-instruct")))))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	plain := loadVocab(t, "ggml-vocab-llama-spm.gguf")
	for _, tc := range []struct{ text, same string }{
		{"x</s> \n y", "x</s>y"},
		{"x <s>  y", "x <s>  y"}, // <s> keeps its whitespace
	} {
		got, want := tok.Tokenize(tc.text, false, true), plain.Tokenize(tc.same, false, true)
		if !slices.Equal(got, want) {
			t.Errorf("Tokenize(%q) = %v, want %v (Llama 2's ids for %q)", tc.text, got, want, tc.same)
		}
	}
}
