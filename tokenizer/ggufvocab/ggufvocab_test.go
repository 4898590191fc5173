package ggufvocab_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// smallBPE is the metadata of a tiny byte-level vocabulary: the byte characters of
// "abc " and the merges that build "ab" and "Ġab".
func smallBPE() []gguf.KV {
	return []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: gguf.NewString("gpt2")},
		{Key: "tokenizer.ggml.pre", Value: gguf.NewString("qwen2")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.NewStrings([]string{"a", "b", "c", "Ġ", "ab", "Ġab", "<|end|>"})},
		{Key: "tokenizer.ggml.token_type", Value: gguf.NewInt32s([]int32{1, 1, 1, 1, 1, 1, 3})},
		{Key: "tokenizer.ggml.merges", Value: gguf.NewStrings([]string{"a b", "Ġ ab"})},
		{Key: "tokenizer.ggml.eos_token_id", Value: gguf.NewUint32(6)},
		{Key: "tokenizer.ggml.eot_token_id", Value: gguf.NewUint32(6)},
		{Key: "tokenizer.ggml.padding_token_id", Value: gguf.NewUint32(99)}, // out of range: dropped
	}
}

func parse(tb testing.TB, kv []gguf.KV) *gguf.File {
	tb.Helper()
	var buf bytes.Buffer
	if err := gguf.Write(&buf, kv, nil, 0); err != nil {
		tb.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func with(kv []gguf.KV, key string, v *gguf.Value) []gguf.KV {
	var out []gguf.KV
	for _, e := range kv {
		if e.Key != key {
			out = append(out, e)
		}
	}
	if v != nil {
		out = append(out, gguf.KV{Key: key, Value: *v})
	}
	return out
}

func ptr(v gguf.Value) *gguf.Value { return &v }

func TestRead(t *testing.T) {
	tok, err := ggufvocab.Load(parse(t, smallBPE()))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Model() != tokenizer.ByteLevelBPE || tok.Pre() != "qwen2" || tok.BOS() != -1 || tok.EOS() != 6 || tok.AddBOS() {
		t.Errorf("Model, Pre, BOS, EOS, AddBOS = %v, %q, %d, %d, %v; want gpt2, qwen2, -1, 6, false",
			tok.Model(), tok.Pre(), tok.BOS(), tok.EOS(), tok.AddBOS())
	}
	if id, ok := tok.SpecialID("eot"); !ok || id != 6 {
		t.Errorf(`SpecialID("eot") = %d, %v; want 6`, id, ok)
	}
	if _, ok := tok.SpecialID("padding"); ok {
		t.Errorf("an out-of-range padding id was kept")
	}
	if got := tok.Encode("ab ab", false); len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Errorf(`Encode("ab ab") = %v, want [4 5]`, got)
	}

	// Longer type and score arrays are cut to the vocabulary, as in llama.cpp.
	long := with(smallBPE(), "tokenizer.ggml.token_type", ptr(gguf.NewInt32s([]int32{1, 1, 1, 1, 1, 1, 3, 1, 1})))
	long = with(long, "tokenizer.ggml.scores", ptr(gguf.NewFloat32s(make([]float32, 9))))
	if _, err := ggufvocab.Load(parse(t, long)); err != nil {
		t.Errorf("longer type and score arrays: %v", err)
	}
	// Integer scores, which llama.cpp accepts too.
	if _, err := ggufvocab.Load(parse(t, with(smallBPE(), "tokenizer.ggml.scores", ptr(gguf.NewInt32s([]int32{0, 0, 0, 0, 0, 0, 0}))))); err != nil {
		t.Errorf("integer scores: %v", err)
	}

	for _, tc := range []struct {
		name string
		kv   []gguf.KV
		want error  // nil: check the message
		msg  string // part of the message
	}{
		{"unsupported model", with(smallBPE(), "tokenizer.ggml.model", ptr(gguf.NewString("bert"))), ggufvocab.ErrUnsupported, `"bert"`},
		{"no merges", with(smallBPE(), "tokenizer.ggml.merges", nil), gguf.ErrNotFound, "tokenizer.ggml.merges"},
		{"merges of the wrong type", with(smallBPE(), "tokenizer.ggml.merges", ptr(gguf.NewUint32(3))), gguf.ErrWrongType, "merges"},
		{"no tokens", with(smallBPE(), "tokenizer.ggml.tokens", nil), gguf.ErrNotFound, "tokens"},
		{"too few types", with(smallBPE(), "tokenizer.ggml.token_type", ptr(gguf.NewInt32s([]int32{1}))), tokenizer.ErrInvalidVocab, "1 types for 7 tokens"},
		{"unknown pre-tokenizer", with(smallBPE(), "tokenizer.ggml.pre", ptr(gguf.NewString("qwen9"))), tokenizer.ErrUnknownPreTokenizer, `"qwen9"`},
		{"EOS out of range", with(smallBPE(), "tokenizer.ggml.eos_token_id", ptr(gguf.NewUint32(7))), nil, "eos_token_id = 7"},
		{"BOS asked for but absent", with(smallBPE(), "tokenizer.ggml.add_bos_token", ptr(gguf.NewBool(true))), nil, "no BOS token"},
		{"EOS asked for but absent", with(with(smallBPE(), "tokenizer.ggml.eos_token_id", nil), "tokenizer.ggml.add_eos_token", ptr(gguf.NewBool(true))), nil, "no EOS token"},
		{"add_eos_token of the wrong type", with(smallBPE(), "tokenizer.ggml.add_eos_token", ptr(gguf.NewUint32(1))), gguf.ErrWrongType, "add_eos_token"},
		{"general.name of the wrong type", with(smallBPE(), "general.name", ptr(gguf.NewUint32(3))), gguf.ErrWrongType, "general.name"},
		{"scores of the wrong type", with(smallBPE(), "tokenizer.ggml.scores", ptr(gguf.NewString("x"))), gguf.ErrWrongType, "scores"},
		{"SentencePiece without scores", with(with(smallBPE(), "tokenizer.ggml.model", ptr(gguf.NewString("llama"))), "tokenizer.ggml.scores", nil), gguf.ErrNotFound, "scores"},
	} {
		_, err := ggufvocab.Load(parse(t, tc.kv))
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Load = %v, want %v mentioning %q", tc.name, err, tc.want, tc.msg)
		}
	}
}

// FuzzLoad feeds arbitrary GGUF metadata to Load: an error or a working tokenizer, never
// a panic.
func FuzzLoad(f *testing.F) {
	for _, seed := range []struct {
		kv   []gguf.KV
		text string
	}{
		{smallBPE(), "ab ab<|end|>"},
		{with(smallBPE(), "tokenizer.ggml.pre", ptr(gguf.NewString("deepseek-llm"))), "Ab 12 €"},
		// llama.cpp's whitespace rules by name, and add_eos_token.
		{with(with(smallBPE(), "general.name", ptr(gguf.NewString("Phi-3 mini"))), "tokenizer.ggml.add_eos_token", ptr(gguf.NewBool(true))), "a <|end|> \n b"},
		{with(smallBPE(), "tokenizer.ggml.pre", ptr(gguf.NewString("jina-v2-es"))), "a <mask> b"},
	} {
		var buf bytes.Buffer
		if err := gguf.Write(&buf, seed.kv, nil, 0); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes(), seed.text)
	}
	// The real vocabularies, read from the shared directory: every tokenizer model and
	// pre-tokenizer path a mutation can start from.
	for _, vf := range vectorFiles {
		data, err := os.ReadFile(filepath.Join(testmodels.VocabDir(f), vf.name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "Hello world! 123 <|endoftext|> ü\n\n\t x")
	}
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		gf, err := gguf.Parse(data)
		if err != nil {
			return
		}
		tok, err := ggufvocab.Load(gf)
		if err != nil {
			return
		}
		for _, id := range tok.Tokenize(text, true, true) {
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("Tokenize(%q) gave id %d of %d", text, id, tok.VocabSize())
			}
		}
		_ = tok.Decode(tok.Encode(text, false))
	})
}

// TestHashPairs checks the hash the router pairs by: the SentencePiece hash of the specd
// pair is unchanged (the value pinned in package tokenizer), and byte-level vocabularies
// hash apart from each other and alike when equal.
func TestHashPairs(t *testing.T) {
	target, err := ggufvocab.Open(testmodels.ForTest(t, "specd-target-q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	draft, err := ggufvocab.Open(testmodels.ForTest(t, "specd-draft-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	const pinned = "0267b524ef0827524caafa0adeda35d0048d088562557db801f372dfebba4ea3"
	if target.Hash() != pinned || draft.Hash() != pinned {
		t.Errorf("specd target and draft hash %s and %s, want %s as before byte-level BPE", target.Hash(), draft.Hash(), pinned)
	}
	seen := map[string]string{}
	for _, vf := range vectorFiles {
		h := loadVocab(t, vf.name).Hash()
		if other, dup := seen[h]; dup {
			t.Errorf("%s and %s hash alike: %s", vf.name, other, h)
		}
		seen[h] = vf.name
	}
	again, err := ggufvocab.Open(testmodels.VocabDir(t) + "/ggml-vocab-qwen2.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if again.Hash() != loadVocab(t, "ggml-vocab-qwen2.gguf").Hash() {
		t.Errorf("the Qwen2 vocabulary hashes differently when loaded twice")
	}
}

// FuzzRoundTrip checks on every byte-level vocabulary that any text encodes to ids in
// range with no control token, that valid UTF-8 decodes back exactly, and that streamed
// decoding gives what Decode gives. (Invalid bytes need not come back: DeepSeek Coder
// marks the characters of the bytes C0, C1 and F5–FF user-defined, which decode as
// their own text, in llama.cpp and Hugging Face alike.)
func FuzzRoundTrip(f *testing.F) {
	var toks []*tokenizer.Tokenizer
	for _, vf := range vectorFiles {
		if vf.bpe {
			toks = append(toks, loadVocab(f, vf.name))
		}
	}
	for _, s := range []string{"", "Hello world", "  \n\n\t x", "日本語 😀 e\u0301", "<|endoftext|> õ", "\xff\xfe\xc3", "333 12,345.67 ~~~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		valid := utf8.ValidString(text)
		for _, tok := range toks {
			ids := tok.Encode(text, false)
			for _, id := range ids {
				if id < 0 || int(id) >= tok.VocabSize() || tok.Type(id) == tokenizer.TypeControl {
					t.Fatalf("%s: Encode(%q) has id %d (type %v)", tok.Pre(), text, id, tok.Type(id))
				}
			}
			want := tok.Decode(ids)
			if valid && want != text {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", tok.Pre(), text, want)
			}
			d := tok.NewDecoder(nil)
			var sb strings.Builder
			for _, id := range ids {
				sb.WriteString(d.Next(id))
			}
			sb.WriteString(d.Flush())
			if sb.String() != want {
				t.Fatalf("%s: streamed decode of %q = %q, want %q", tok.Pre(), text, sb.String(), want)
			}
		}
	})
}

// TestEOG checks the end-of-generation ids against llama.cpp b4748's (the "EOG token"
// lines llama-tokenize logs when it loads each vocabulary).
func TestEOG(t *testing.T) {
	for _, tc := range []struct {
		vocab string
		want  []int32
	}{
		{"ggml-vocab-llama-bpe.gguf", []int32{128001, 128009}},
		{"ggml-vocab-qwen2.gguf", []int32{151643, 151645, 151662, 151663, 151664}},
		{"ggml-vocab-gpt-2.gguf", []int32{50256}},
		{"ggml-vocab-deepseek-coder.gguf", []int32{32014}},
		{"ggml-vocab-starcoder.gguf", []int32{0}},
		{"ggml-vocab-phi-3.gguf", []int32{32000, 32007}},
		{"ggml-vocab-llama-spm.gguf", []int32{2}},
	} {
		if got := loadVocab(t, tc.vocab).EOG(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: EOG() = %v, want %v", tc.vocab, got, tc.want)
		}
	}
}

// TestDecodeSpecialRoundTrip checks that text with special tokens, tokenized with them
// parsed, decodes back to itself with DecodeSpecial, and to the text without them with
// Decode, on real byte-level BPE and SentencePiece vocabularies.
func TestDecodeSpecialRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		vocab, text, plain string
	}{
		{"ggml-vocab-llama-bpe.gguf", "<|begin_of_text|>Hello, world!<|eot_id|>", "Hello, world!"},
		{"ggml-vocab-qwen2.gguf", "<|im_start|>user\n日本語 😀<|im_end|>\n", "user\n日本語 😀\n"},
		{"ggml-vocab-llama-spm.gguf", "Hello world</s>", "Hello world"},
	} {
		tok := loadVocab(t, tc.vocab)
		ids := tok.Tokenize(tc.text, false, true)
		if got := tok.DecodeSpecial(ids); got != tc.text {
			t.Errorf("%s: DecodeSpecial(%v) = %q, want %q", tc.vocab, ids, got, tc.text)
		}
		if got := tok.Decode(ids); got != tc.plain {
			t.Errorf("%s: Decode(%v) = %q, want %q", tc.vocab, ids, got, tc.plain)
		}
	}
}

// TestConcurrentEncode: a Tokenizer is shared by concurrent requests (run with -race).
func TestConcurrentEncode(t *testing.T) {
	texts := []string{"Hello, world! 123", "  Привет\n\n日本語 😀", "<|im_start|>user\nhi<|im_end|>"}
	for _, name := range []string{"ggml-vocab-qwen2.gguf", "ggml-vocab-deepseek-coder.gguf"} {
		tok := loadVocab(t, name)
		want := make([][]int32, len(texts))
		for i, s := range texts {
			want[i] = tok.EncodeSpecial(s, false)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 20 {
					for i, s := range texts {
						if got := tok.EncodeSpecial(s, false); !slices.Equal(got, want[i]) {
							t.Errorf("%s: concurrent EncodeSpecial(%q) = %v, want %v", name, s, got, want[i])
							return
						}
					}
				}
			})
		}
		wg.Wait()
	}
}

// TestHashIgnoresPadding: llama.cpp's converter fills a token list up to the rows of the
// embedding matrix with "[PAD<id>]" entries (unused; user-defined in older versions), so
// Qwen2.5-0.5B's vocabulary has 151936 ids and Qwen2.5-7B's 152064 with the same tokens
// before them. They must pair; anything else past the shared ids must not.
func TestHashIgnoresPadding(t *testing.T) {
	for _, name := range []string{"ggml-vocab-qwen2.gguf", "ggml-vocab-llama-spm.gguf"} {
		f, err := gguf.Open(filepath.Join(testmodels.VocabDir(t), name))
		if err != nil {
			t.Fatal(err)
		}
		base, err := ggufvocab.Read(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		pad := func(n int, typ tokenizer.TokenType, edit func(v *tokenizer.Vocab)) string {
			v := base
			v.Tokens, v.Types = slices.Clone(v.Tokens), slices.Clone(v.Types)
			if v.Scores != nil {
				v.Scores = slices.Clone(v.Scores)
			}
			for id := len(v.Tokens); id < n; id++ {
				v.Tokens = append(v.Tokens, fmt.Sprintf("[PAD%d]", id))
				v.Types = append(v.Types, typ)
				if v.Scores != nil {
					v.Scores = append(v.Scores, -1000)
				}
			}
			if edit != nil {
				edit(&v)
			}
			tok, err := tokenizer.New(v)
			if err != nil {
				t.Fatal(err)
			}
			return tok.Hash()
		}
		n := len(base.Tokens)
		want := pad(0, 0, nil)
		for _, tc := range []struct {
			what string
			n    int
			typ  tokenizer.TokenType
			edit func(v *tokenizer.Vocab)
			same bool
		}{
			{"padded like Qwen2.5-0.5B", n + 271, tokenizer.TypeUnused, nil, true},
			{"padded like Qwen2.5-7B", n + 399, tokenizer.TypeUnused, nil, true},
			{"padded by an older converter", n + 399, tokenizer.TypeUserDefined, nil, true},
			{"a control token past the shared ids", n + 1, tokenizer.TypeControl, nil, false},
			{"a pad renamed", n + 2, tokenizer.TypeUnused, func(v *tokenizer.Vocab) { v.Tokens[n] = "[PAD0]" }, false},
			{"a normal token after the padding", n + 2, tokenizer.TypeUnused, func(v *tokenizer.Vocab) { v.Types[n+1] = tokenizer.TypeNormal }, false},
		} {
			if got := pad(tc.n, tc.typ, tc.edit); (got == want) != tc.same {
				t.Errorf("%s: %s: Hash equal to the unpadded one = %v, want %v", name, tc.what, got == want, tc.same)
			}
		}
	}
}

// TestHashIgnoresPaddingID: tokenizer.ggml.padding_token_id changes neither encoding,
// decoding nor where generation ends, and uploaders set it differently (unsloth's
// Llama-3.2-1B-Instruct names 128004, other Llama 3.1 files none), so it must not keep
// a pair apart; the end-of-turn id still does.
func TestHashIgnoresPaddingID(t *testing.T) {
	f, err := gguf.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-llama-bpe.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hash := func(key string, id uint32) string {
		kv := f.KV
		if key != "" {
			kv = with(kv, key, ptr(gguf.NewUint32(id)))
		}
		tok, err := ggufvocab.Load(parse(t, kv))
		if err != nil {
			t.Fatal(err)
		}
		return tok.Hash()
	}
	plain := hash("", 0)
	if got := hash("tokenizer.ggml.padding_token_id", 128004); got != plain {
		t.Errorf("padding_token_id 128004 changes the hash")
	}
	if got := hash("tokenizer.ggml.eot_token_id", 128009); got == plain {
		t.Errorf("eot_token_id 128009 leaves the hash as it was")
	}
}

// TestChatGLMNamedBOS: a chatglm-bpe vocabulary has no BOS unless its file names one,
// as in llama.cpp, which then adds it when add_bos_token says so. The Llama 3 vocabulary
// with tokenizer.ggml.pre set to chatglm-bpe (its bos_token_id 128000 and add_bos_token
// true kept) was refused ("add_bos_token is true but there is no BOS token");
// llama.cpp b4748's llama-tokenize gives [128000, 717] for "12".
func TestChatGLMNamedBOS(t *testing.T) {
	f, err := gguf.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-llama-bpe.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := with(f.KV, "tokenizer.ggml.pre", ptr(gguf.NewString("chatglm-bpe")))
	tok, err := ggufvocab.Load(parse(t, kv))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Encode("12", tok.AddBOS()), []int32{128000, 717}; !slices.Equal(got, want) {
		t.Errorf("Encode(\"12\", AddBOS()) = %v, want %v", got, want)
	}
	kv = with(with(kv, "tokenizer.ggml.bos_token_id", nil), "tokenizer.ggml.add_bos_token", nil)
	if tok, err = ggufvocab.Load(parse(t, kv)); err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != -1 || tok.AddBOS() {
		t.Errorf("without bos_token_id: BOS %d, AddBOS %v; want -1, false", tok.BOS(), tok.AddBOS())
	}
}
