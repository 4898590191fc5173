package ggufvocab_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// TestSpecialMatchesLlamaCpp checks EncodeSpecial and BOS handling against llama.cpp on a
// text full of special-token markup (testdata/special/chat.txt), for every shared
// vocabulary. testdata/special/llamacpp-b4748.tsv was produced by
// ../shared/tools/llama.cpp-b4748/llama-tokenize -f chat.txt --ids with --no-bos (mode
// "special"), with nothing (mode "special-bos": BOS as the vocabulary asks, special
// tokens parsed) and with --no-parse-special (mode "raw-bos").
func TestSpecialMatchesLlamaCpp(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("testdata", "special", "chat.txt"))
	if err != nil {
		t.Fatal(err)
	}
	rows := readTSV(t, filepath.Join("testdata", "special", "llamacpp-b4748.tsv"))
	for _, r := range rows {
		t.Run(r[0]+"/"+r[1], func(t *testing.T) {
			tok := loadVocab(t, "ggml-vocab-"+r[0]+".gguf")
			var want []int32
			if err := json.Unmarshal([]byte(r[2]), &want); err != nil {
				t.Fatalf("ids %q: %v", r[2], err)
			}
			var got []int32
			switch r[1] {
			case "special":
				got = tok.EncodeSpecial(string(text), false)
			case "special-bos":
				got = tok.EncodeSpecial(string(text), tok.AddBOS())
			case "raw-bos":
				got = tok.Encode(string(text), tok.AddBOS())
			default:
				t.Fatalf("unknown mode %q", r[1])
			}
			if d := diffIDs(got, want); d != "" {
				t.Errorf("%s\npieces: %q", d, pieces(tok, got, want))
			}
		})
	}
}

// TestControlLookingTokens checks that a token spelled like an end-of-turn or
// fill-in-the-middle marker is a control token whatever type the file gives it, as
// llama.cpp's loader makes it ("control-looking token … its type will be overridden"), so
// raw text spelling it stays text. DeepSeek Coder's shipped vocabulary has its FIM markers
// as user-defined; the other rows retype tokens of a shared vocabulary (or rename them) as
// older converters and fine-tunes wrote them.
//
// testdata/special/control-looking.tsv holds: the vocabulary, its edits (id:type or
// id:type:text), the text (JSON) and llama.cpp b4748's ids for it, made by writing the
// edited vocabulary to a GGUF and running ../shared/tools/llama.cpp-b4748/llama-tokenize
// -f TEXT --ids --no-bos --no-parse-special on it.
func TestControlLookingTokens(t *testing.T) {
	testEditedVocabs(t, "control-looking.tsv")
}

// TestUserDefinedSentencePiece checks that a SentencePiece vocabulary's user-defined
// pieces are split out of the text before encoding, as llama.cpp (and Hugging Face's
// Llama tokenizers) do: the raw text after one gets the dummy-prefix space, as at the
// start of a text, and a text that starts with one gets none before it. Phi-3's "</s>" is
// user-defined; the other rows make a piece of the Llama 2 vocabulary one.
// testdata/special/user-defined-spm.tsv is laid out and made as control-looking.tsv is
// (with --no-escape).
func TestUserDefinedSentencePiece(t *testing.T) {
	testEditedVocabs(t, "user-defined-spm.tsv")
}

// testEditedVocabs compares Encode with llama.cpp's ids on the rows of a TSV file in
// testdata/special: vocabulary, edits (see editedVocab), text (JSON), ids (JSON).
func testEditedVocabs(t *testing.T, name string) {
	data, err := os.ReadFile(filepath.Join("testdata", "special", name))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		r := strings.Split(line, "\t")
		if len(r) != 4 {
			t.Fatalf("bad line %q", line)
		}
		var text string
		var want []int32
		if err := errors.Join(json.Unmarshal([]byte(r[2]), &text), json.Unmarshal([]byte(r[3]), &want)); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		t.Run(r[0]+"/"+r[1], func(t *testing.T) {
			tok := editedVocab(t, r[0], r[1])
			if got := tok.Encode(text, false); !slices.Equal(got, want) {
				t.Errorf("Encode(%q) = %v, want %v\npieces: %q", text, got, want, pieces(tok, got, want))
			}
		})
	}
}

// editedVocab loads a shared vocabulary after applying edits: space-separated id:type or
// id:type:text, setting the token's type (and text).
func editedVocab(t *testing.T, name, edits string) *tokenizer.Tokenizer {
	t.Helper()
	f, err := gguf.Open(filepath.Join(testmodels.VocabDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	toks, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	types, err := f.Int32s("tokenizer.ggml.token_type")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range strings.Fields(edits) {
		p := strings.SplitN(e, ":", 3)
		id, err1 := strconv.Atoi(p[0])
		typ, err2 := strconv.Atoi(p[1])
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("edit %q: %v", e, err)
		}
		types[id] = int32(typ)
		if len(p) == 3 {
			toks[id] = p[2]
		}
	}
	kv := with(f.KV, "tokenizer.ggml.tokens", ptr(gguf.NewStrings(toks)))
	kv = with(kv, "tokenizer.ggml.token_type", ptr(gguf.NewInt32s(types)))
	tok, err := ggufvocab.Load(parse(t, kv))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestNoDummyPrefix checks a SentencePiece vocabulary with tokenizer.ggml.add_space_prefix
// false (Gemma's, and any whose SentencePiece model turns add_dummy_prefix off): no space
// goes in front of the text, as llama.cpp does, and Decode gives the text back. The ids
// are llama.cpp b4748's (llama-tokenize --ids --no-bos --no-parse-special) on
// ggml-vocab-llama-spm.gguf with add_space_prefix set to false.
func TestNoDummyPrefix(t *testing.T) {
	f, err := gguf.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := ggufvocab.Load(parse(t, with(f.KV, "tokenizer.ggml.add_space_prefix", ptr(gguf.NewBool(false)))))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text string
		want []int32
	}{
		{"Hello world  x", []int32{10994, 3186, 29871, 921}},
		{"  two leading spaces", []int32{29871, 1023, 8236, 8162}},
		{"\nnewline first", []int32{13, 1482, 1220, 937}},
		{"def f(x):", []int32{1753, 285, 29898, 29916, 1125}},
	} {
		if got := tok.Encode(tc.text, false); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
		}
		if got := tok.Decode(tok.Encode(tc.text, true)); got != tc.text {
			t.Errorf("Decode(Encode(%q)) = %q", tc.text, got)
		}
	}
	if tok.Hash() == loadVocab(t, "ggml-vocab-llama-spm.gguf").Hash() {
		t.Errorf("Hash() is the same with and without the dummy prefix")
	}
}
