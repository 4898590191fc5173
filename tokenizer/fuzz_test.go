package tokenizer

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// encodeLlama2c restates llama2.c's encode (run.c) as plainly as possible, as a reference
// for Encode: a dummy " " token, one token per character (a lead byte and up to three
// continuation bytes) or its bytes as ids byte+3, then, while any adjacent pair of tokens
// spells a piece, the best-scored pair (the leftmost of equal scores) merges. Pieces are
// compared in llama2.c's spelling, with ' ' for '▁'. Like run.c it stops at a NUL byte.
// It agrees with Encode on valid UTF-8 only (see FuzzEncodeDecode).
func encodeLlama2c(tok *Tokenizer, text string) []int32 {
	lookup := llama2cLookup(tok)
	if i := strings.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	var ids []int32
	if text != "" {
		ids = append(ids, lookup[" "])
	}
	var buf []byte
	for i := 0; i < len(text); i++ {
		if text[i]&0xC0 != 0x80 {
			buf = buf[:0]
		}
		buf = append(buf, text[i])
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && len(buf) < 4 {
			continue
		}
		if id, ok := lookup[string(buf)]; ok {
			ids = append(ids, id)
		} else {
			for _, c := range buf {
				ids = append(ids, int32(c)+3)
			}
		}
		buf = buf[:0]
	}
	for {
		best, bestID, bestScore := -1, int32(-1), float32(-1e10)
		for i := 0; i+1 < len(ids); i++ {
			buf = append(append(buf[:0], llama2cPiece(tok, ids[i])...), llama2cPiece(tok, ids[i+1])...)
			if id, ok := lookup[string(buf)]; ok && tok.scores[id] > bestScore {
				best, bestID, bestScore = i, id, tok.scores[id]
			}
		}
		if best < 0 {
			return ids
		}
		ids[best] = bestID
		ids = slices.Delete(ids, best+1, best+2)
	}
}

func llama2cPiece(tok *Tokenizer, id int32) string {
	p := tok.pieces[id]
	if tok.spaceIsMeta && strings.Contains(p, metaSpace) {
		return strings.ReplaceAll(p, metaSpace, " ")
	}
	return p
}

var llama2cLookups sync.Map // *Tokenizer → map[string]int32

// llama2cLookup maps every piece, in llama2.c's spelling, to its lowest id.
func llama2cLookup(tok *Tokenizer) map[string]int32 {
	if m, ok := llama2cLookups.Load(tok); ok {
		return m.(map[string]int32)
	}
	m := make(map[string]int32, len(tok.pieces))
	for i := range tok.pieces {
		p := llama2cPiece(tok, int32(i))
		if _, dup := m[p]; !dup {
			m[p] = int32(i)
		}
	}
	llama2cLookups.Store(tok, m)
	return m
}

// wantDecode is what Decode(Encode(text)) must give: text with each invalid byte as
// U+FFFD (ranging over a Go string does exactly that) and, for '▁' vocabularies, '▁'
// read as a space.
func wantDecode(tok *Tokenizer, text string) string {
	var sb strings.Builder
	for _, r := range text {
		sb.WriteRune(r)
	}
	s := sb.String()
	if tok.spaceIsMeta {
		s = strings.ReplaceAll(s, metaSpace, " ")
	}
	return s
}

// FuzzEncodeDecode checks, on the specd vocabulary and on llama2.c's tok512.bin, that any
// bytes encode without panicking to ids in range, the same ids as llama2.c's algorithm,
// and that decoding gives the text back (valid UTF-8 exactly; invalid bytes as U+FFFD),
// whole or streamed. Seeds: testdata/fuzz/FuzzEncodeDecode.
func FuzzEncodeDecode(f *testing.F) {
	toks := []*Tokenizer{loadTokenizer(f, targetFile), loadTokenizer(f, tok512File)}
	f.Fuzz(func(t *testing.T, data []byte) {
		text := string(data)
		for _, tok := range toks {
			ids := tok.Encode(text, true)
			if len(ids) == 0 || ids[0] != tok.BOS() {
				t.Fatalf("Encode(%q, true) = %v, want BOS first", text, ids)
			}
			for _, id := range ids[1:] {
				if typ := tok.Type(id); typ != TypeNormal && typ != TypeByte {
					t.Fatalf("Encode(%q) has id %d of type %v", text, id, typ)
				}
			}
			// On invalid UTF-8 run.c glues a stray continuation byte to the character
			// before it ("a\x80" is one unit, so 'a' falls back to a byte too); Encode,
			// like llama.cpp, keeps the character and falls back for the stray byte only.
			if len(text) <= 256 && utf8.Valid(data) {
				ref := text
				if tok.spaceIsMeta {
					ref = strings.ReplaceAll(ref, metaSpace, " ")
				}
				if strings.IndexByte(ref, 0) < 0 {
					if d := diffIDs(ids[1:], encodeLlama2c(tok, ref)); d != "" {
						t.Fatalf("Encode(%q) differs from llama2.c's encode: %s", text, d)
					}
				}
			}
			want := wantDecode(tok, text)
			if utf8.Valid(data) && !strings.Contains(text, metaSpace) && want != text {
				t.Fatalf("wantDecode(%q) = %q: the reference itself is wrong", text, want)
			}
			if got := tok.Decode(ids); got != want {
				t.Fatalf("Decode(Encode(%q)) = %q, want %q (ids %v)", text, got, want, ids)
			}
			if got := tok.Decode(ids[1:]); got != want {
				t.Fatalf("Decode(Encode(%q) without BOS) = %q, want %q", text, got, want)
			}
			k := len(ids) / 2
			if got := emitted(tok, ids[:k]) + streamDecode(tok, ids[:k], ids[k:]); got != want {
				t.Fatalf("streamed Decode(Encode(%q)) split at %d = %q, want %q", text, k, got, want)
			}
		}
	})
}

// FuzzDecoder checks Decode and the streaming Decoder on arbitrary id sequences (half of
// them byte tokens, some out of range): no panic, valid UTF-8, and the streaming contract
// at every split point. Each two input bytes make one id. Seeds: testdata/fuzz/FuzzDecoder.
func FuzzDecoder(f *testing.F) {
	tok := loadTokenizer(f, targetFile)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 128 {
			data = data[:128]
		}
		ids := make([]int32, 0, len(data)/2)
		for i := 0; i+1 < len(data); i += 2 {
			v := binary.LittleEndian.Uint16(data[i:])
			if v&1 == 0 {
				ids = append(ids, tok.byteID[byte(v>>1)])
			} else {
				ids = append(ids, int32(v>>1)%int32(tok.VocabSize()+6)-3)
			}
		}
		checkStreaming(t, tok, ids)
	})
}

// BenchmarkEncode encodes the benchmark prompts (a few hundred characters each).
func BenchmarkEncode(b *testing.B) {
	tok := loadTokenizer(b, targetFile)
	texts := benchTexts(b)
	var n int64
	for _, s := range texts {
		n += int64(len(s))
	}
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range texts {
			tok.Encode(s, true)
		}
	}
}

// BenchmarkDecoder streams the benchmark prompts' ids through a Decoder.
func BenchmarkDecoder(b *testing.B) {
	tok := loadTokenizer(b, targetFile)
	var all [][]int32
	var n int64
	for _, s := range benchTexts(b) {
		all = append(all, tok.Encode(s, true))
		n += int64(len(s))
	}
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		for _, ids := range all {
			d := tok.NewDecoder(nil)
			for _, id := range ids {
				d.Next(id)
			}
			d.Flush()
		}
	}
}

func benchTexts(b *testing.B) []string {
	var texts []string
	for _, p := range readPrompts(b, benchPromptsPath(b)) {
		texts = append(texts, p.Prompt)
	}
	return texts
}
