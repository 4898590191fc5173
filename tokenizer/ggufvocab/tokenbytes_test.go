package ggufvocab_test

import (
	"bytes"
	"testing"

	"github.com/specd-dev/specd/tokenizer"
)

// TestTokenBytes: a text's tokens' bytes, one token at a time, spell the text — in
// SentencePiece vocabularies with the dummy-prefix space Decode drops at the start —
// even where a byte-level piece holds part of a UTF-8 character; tokens that decode to
// nothing (BOS, EOS) give their piece; ids outside the vocabulary give nil.
func TestTokenBytes(t *testing.T) {
	texts := []string{"Hello world", "  two spaces\nand a newline", "héllo wörld, 日本語 🙂!", "\x7f tab\there"}
	for _, name := range []string{"llama-spm", "llama-bpe", "qwen2", "gpt-2", "phi-3"} {
		t.Run(name, func(t *testing.T) {
			tok := loadVocab(t, "ggml-vocab-"+name+".gguf")
			for _, text := range texts {
				ids := tok.Encode(text, false)
				var got []byte
				for _, id := range ids {
					got = append(got, tok.TokenBytes(id)...)
				}
				want := tok.Decode(ids)
				if tok.Model() == tokenizer.SentencePiece {
					got = bytes.TrimPrefix(got, []byte(" ")) // the dummy prefix
				}
				if string(got) != want {
					t.Errorf("%q: the tokens' bytes spell %q, Decode %q", text, got, want)
				}
			}
			for _, id := range []int32{tok.BOS(), tok.EOS()} {
				if id >= 0 && string(tok.TokenBytes(id)) != tok.Piece(id) {
					t.Errorf("TokenBytes(%d) = %q, want its piece %q", id, tok.TokenBytes(id), tok.Piece(id))
				}
			}
			if b := tok.TokenBytes(int32(tok.VocabSize())); b != nil {
				t.Errorf("TokenBytes past the vocabulary = %q, want nil", b)
			}
		})
	}
}
