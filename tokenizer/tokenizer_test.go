package tokenizer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/specd-dev/specd/internal/testmodels"
)

// The shared vocabularies: the specd pair's (4096 pieces, one SentencePiece model) and
// stories260K's (512 pieces) in GGUF and in llama2.c's tokenizer.bin.
const (
	targetFile  = "specd-target-q8_0.gguf"
	draftFile   = "specd-draft-f16.gguf"
	storiesFile = "stories260K-f32.gguf"
	tok512File  = "tok512.bin"
)

var allVocabFiles = []string{targetFile, draftFile, storiesFile, tok512File}

// diffIDs describes where two id sequences first differ, or returns "".
func diffIDs(got, want []int32) string {
	if slices.Equal(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("first difference at index %d (len %d, want len %d)\n got %v\nwant %v", i, len(got), len(want), got, want)
}

// TestEncodeReference checks Encode against the prompt ids of every reference file:
// SentencePiece/llama.cpp for the specd pair, llama2.c's run.c for stories260K (whose
// GGUF vocabulary and tokenizer.bin must agree).
func TestEncodeReference(t *testing.T) {
	ref := testmodels.ReferenceDir(t)
	for _, tc := range []struct {
		file  string
		vocab []string
	}{
		{"pair_f32.jsonl", []string{targetFile, draftFile}},
		{"pair_llamacpp_teacher_forced.jsonl", []string{targetFile, draftFile}},
		{"stories260K_llama2c.jsonl", []string{storiesFile, tok512File}},
		{"stories260K_llama2c_stop_at_bos.jsonl", []string{storiesFile, tok512File}},
	} {
		prompts := readPrompts(t, filepath.Join(ref, tc.file))
		for _, vf := range tc.vocab {
			t.Run(tc.file+"/"+vf, func(t *testing.T) {
				tok := loadTokenizer(t, vf)
				for _, p := range prompts {
					if len(p.PromptIDs) == 0 {
						t.Fatalf("%s:%d has no prompt_ids", p.File, p.Line)
					}
					got := tok.Encode(p.Prompt, true)
					if d := diffIDs(got, p.PromptIDs); d != "" {
						t.Errorf("%s:%d Encode(%q, true): %s", p.File, p.Line, p.Prompt, d)
					}
				}
			})
		}
	}
}

// oracleCase is one line of testdata/spm_oracle.jsonl, answered by SentencePiece 0.1.97
// with specd-tok4096.model (see testdata/gen_spm_oracle.py).
type oracleCase struct {
	Op   string  `json:"op"`
	Text string  `json:"text"`
	IDs  []int32 `json:"ids"`
	line int
}

func readOracle(t *testing.T) []oracleCase {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "spm_oracle.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []oracleCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		c := oracleCase{line: line}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("spm_oracle.jsonl:%d: %v", line, err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil || len(cases) == 0 {
		t.Fatalf("spm_oracle.jsonl: %d cases, err %v", len(cases), err)
	}
	return cases
}

// TestSentencePieceOracle replays SentencePiece's own answers: encodings of prompts,
// fragments of prompts with odd characters spliced in (byte fallback, '▁', "<s>"), and
// random Unicode; decodings of random id sequences mixing control, byte and normal ids.
func TestSentencePieceOracle(t *testing.T) {
	for _, vf := range []string{targetFile, draftFile} {
		t.Run(vf, func(t *testing.T) {
			tok := loadTokenizer(t, vf)
			var nEnc, nDec int
			for _, c := range readOracle(t) {
				switch c.Op {
				case "encode":
					nEnc++
					got := tok.Encode(c.Text, false)
					if d := diffIDs(got, c.IDs); d != "" {
						t.Errorf("line %d: Encode(%q, false): %s", c.line, c.Text, d)
					}
				case "decode":
					nDec++
					if got := tok.Decode(c.IDs); got != c.Text {
						t.Errorf("line %d: Decode(%v) = %q, want %q", c.line, c.IDs, got, c.Text)
					}
					if got := streamDecode(tok, nil, c.IDs); got != c.Text {
						t.Errorf("line %d: streamed decode of %v = %q, want %q", c.line, c.IDs, got, c.Text)
					}
				default:
					t.Fatalf("line %d: unknown op %q", c.line, c.Op)
				}
			}
			if nEnc < 100 || nDec < 100 {
				t.Errorf("oracle has %d encode and %d decode cases, want at least 100 each", nEnc, nDec)
			}
		})
	}
}

// roundTripTexts are the texts every vocabulary must give back unchanged.
func roundTripTexts(t *testing.T) []string {
	t.Helper()
	texts := []string{
		"", "a", " ", "  ", " leading space", "trailing space ", "two  spaces", "\t\ttabs\n\nand newlines\r\n",
		"Once upon a time", "café naïve résumé Ångström", "e\u0301 (combining acute)",
		"中文字符和日本語の文字と한국어", "emoji 😀👍🏽 👩‍👩‍👧 🇫🇷 flags", "\x00\x01\x1f\x7f control bytes",
		"math 𝑦 = 𝑥² ≤ ∞", "\ufffd replacement char", "zero\u200bwidth\ufeffBOM", "\U0010ffff",
		"<s> </s> <unk> <0x41> look like special tokens", "<0xFF>", "Python: def f(x):\n    return {'a': [1, 2]}",
		"Ⅰ Ⅷ Ⅸ ♟ 太郎 ట",
	}
	ref := testmodels.ReferenceDir(t)
	for _, name := range []string{
		filepath.Join(ref, "pair_f32.jsonl"),
		filepath.Join(ref, "stories260K_llama2c.jsonl"),
		benchPromptsPath(t),
	} {
		for _, p := range readPrompts(t, name) {
			texts = append(texts, p.Prompt)
		}
	}
	return texts
}

// TestRoundTrip checks Decode(Encode(s)) == s, with and without BOS, on every vocabulary:
// prompts, and strings that need byte fallback (emoji, CJK, combining marks, control
// characters) in all of them and especially in the 512-piece ones.
func TestRoundTrip(t *testing.T) {
	texts := roundTripTexts(t)
	for _, vf := range allVocabFiles {
		t.Run(vf, func(t *testing.T) {
			tok := loadTokenizer(t, vf)
			for _, s := range texts {
				for _, bos := range []bool{true, false} {
					ids := tok.Encode(s, bos)
					if got := tok.Decode(ids); got != s {
						t.Errorf("Decode(Encode(%q, %v)) = %q, want %q (ids %v)", s, bos, got, s, ids)
					}
					if got := streamDecode(tok, nil, ids); got != s {
						t.Errorf("streamed decode of Encode(%q, %v) = %q, want %q", s, bos, got, s)
					}
				}
			}
		})
	}
}

// TestEncodeCases pins down behaviour on small inputs of the specd vocabulary.
func TestEncodeCases(t *testing.T) {
	tok := loadTokenizer(t, targetFile)
	id := func(piece string) int32 {
		t.Helper()
		for i := range tok.VocabSize() {
			if tok.Piece(int32(i)) == piece {
				return int32(i)
			}
		}
		t.Fatalf("no piece %q", piece)
		return -1
	}
	b := func(c byte) int32 { return id(fmt.Sprintf("<0x%02X>", c)) }
	for _, tc := range []struct {
		name, text string
		bos        bool
		want       []int32
	}{
		{"empty without BOS", "", false, []int32{}},
		{"empty with BOS", "", true, []int32{1}},
		{"dummy prefix merges into the word", "the", true, []int32{1, id("▁the")}},
		{"a lone space is two spaces", " ", false, []int32{id("▁▁")}},
		{"missing character falls back to its UTF-8 bytes", "中", false,
			[]int32{id("▁"), b(0xE4), b(0xB8), b(0xAD)}},
		{"invalid UTF-8 is one byte token per byte", "\xff\xe4\xb8", false,
			[]int32{id("▁"), b(0xFF), b(0xE4), b(0xB8)}},
		{"NUL is a byte", "\x00", false, []int32{id("▁"), b(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tok.Encode(tc.text, tc.bos)
			if d := diffIDs(got, tc.want); d != "" {
				t.Errorf("Encode(%q, %v): %s", tc.text, tc.bos, d)
			}
		})
	}

	// A literal '▁' reads as a space, as in SentencePiece.
	if got, want := tok.Encode("\u2581the\u2581", false), tok.Encode(" the ", false); !slices.Equal(got, want) {
		t.Errorf("Encode(%q) = %v, want Encode(%q) = %v", "\u2581the\u2581", got, " the ", want)
	}
	// Text that spells a control token is text: no control id comes out.
	for _, s := range []string{"<s>", "</s>", "<unk>", "a<s>b"} {
		for _, id := range tok.Encode(s, false) {
			if typ := tok.Type(id); typ != TypeNormal && typ != TypeByte {
				t.Errorf("Encode(%q) contains id %d of type %v", s, id, typ)
			}
		}
	}
}

// TestDecodeCases pins down Decode's rules for control, unknown and byte tokens and for
// the dummy-prefix space.
func TestDecodeCases(t *testing.T) {
	tok := loadTokenizer(t, targetFile)
	enc := func(s string) []int32 { return tok.Encode(s, false) }
	join := func(parts ...[]int32) []int32 { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name string
		ids  []int32
		want string
	}{
		{"nothing", nil, ""},
		{"BOS and EOS vanish", []int32{1, 2, 1}, ""},
		{"the dummy space goes after BOS", join([]int32{1}, enc("Hi there")), "Hi there"},
		{"and without BOS", enc("Hi there"), "Hi there"},
		{"only the first piece loses it", join(enc("Hi"), enc("Hi")), "Hi Hi"},
		{"EOS does not reset it", join(enc("Hi"), []int32{2}, enc("Hi")), "Hi Hi"},
		{"unknown", []int32{0}, " \u2047 "},
		{"out of range ids are skipped", []int32{-1, 4096, 1 << 30}, ""},
		{"a byte first keeps the next space", []int32{3 + 'A', 261}, "A a"},
		{"incomplete UTF-8 at the end", []int32{3 + 0xE4, 3 + 0xB8}, "\ufffd\ufffd"},
		{"surrogate bytes are three errors", []int32{3 + 0xED, 3 + 0xA0, 3 + 0x80}, "\ufffd\ufffd\ufffd"},
		{"stray continuation byte", []int32{3 + 0x80, 3 + 'a'}, "\ufffda"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tok.Decode(tc.ids); got != tc.want {
				t.Errorf("Decode(%v) = %q, want %q", tc.ids, got, tc.want)
			}
		})
	}
}

// TestDecodeSpecial checks that BOS, EOS and control tokens show as their pieces, and
// that the rest decodes as Decode does.
func TestDecodeSpecial(t *testing.T) {
	tok := loadTokenizer(t, targetFile)
	enc := func(s string) []int32 { return tok.Encode(s, false) }
	for _, tc := range []struct {
		name string
		ids  []int32
		want string
	}{
		{"nothing", nil, ""},
		{"BOS keeps the dummy space after it", slices.Concat([]int32{1}, enc("Hi there")), "<s> Hi there"},
		{"EOS shows", slices.Concat(enc("Hi"), []int32{2}), "Hi</s>"},
		{"text after EOS keeps its space", slices.Concat(enc("Hi"), []int32{2}, enc("Hi")), "Hi</s> Hi"},
		{"without special tokens as Decode", enc("Hi there"), "Hi there"},
		{"unknown as Decode", []int32{0}, " \u2047 "},
		{"out of range ids are skipped", []int32{-1, 1, 4096}, "<s>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tok.DecodeSpecial(tc.ids); got != tc.want {
				t.Errorf("DecodeSpecial(%v) = %q, want %q", tc.ids, got, tc.want)
			}
		})
	}
}

// streamDecode decodes ids[k:] with a Decoder that continues after prev = ids[:k] and
// returns the concatenated deltas including Flush.
func streamDecode(tok *Tokenizer, prev, ids []int32) string {
	d := tok.NewDecoder(prev)
	var sb strings.Builder
	for _, id := range ids {
		sb.WriteString(d.Next(id))
	}
	sb.WriteString(d.Flush())
	return sb.String()
}

// emitted is the text a Decoder returns from Next for ids, without Flush.
func emitted(tok *Tokenizer, ids []int32) string {
	d := tok.NewDecoder(nil)
	var sb strings.Builder
	for _, id := range ids {
		sb.WriteString(d.Next(id))
	}
	return sb.String()
}

// checkStreaming checks the Decoder's contract on ids at every split point: the deltas
// are valid UTF-8, and emitted(ids[:k]) + deltas(ids[k:]) + Flush == Decode(ids).
func checkStreaming(t *testing.T, tok *Tokenizer, ids []int32) {
	t.Helper()
	want := tok.Decode(ids)
	if !utf8.ValidString(want) {
		t.Fatalf("Decode(%v) = %q is not valid UTF-8", ids, want)
	}
	for k := 0; k <= len(ids); k++ {
		d := tok.NewDecoder(ids[:k])
		got := emitted(tok, ids[:k])
		for _, id := range ids[k:] {
			delta := d.Next(id)
			if !utf8.ValidString(delta) {
				t.Fatalf("Next(%d) = %q is not valid UTF-8 (ids %v)", id, delta, ids)
			}
			got += delta
		}
		got += d.Flush()
		if got != want {
			t.Fatalf("split at %d of %v: streamed %q, want Decode = %q", k, ids, got, want)
		}
	}
}

// TestDecoder checks streaming against Decode on prompts, byte-fallback text and id
// sequences that cut characters short, and that a character's bytes are held back until
// it is complete.
func TestDecoder(t *testing.T) {
	tok := loadTokenizer(t, targetFile)
	for _, s := range []string{"Hello, world", " two  spaces", "中文 and 😀 and e\u0301", "\xe4\xb8 cut \xf0\x9f"} {
		checkStreaming(t, tok, tok.Encode(s, true))
		checkStreaming(t, tok, tok.Encode(s, false))
	}
	for _, ids := range [][]int32{
		{3 + 0xE4, 3 + 0xB8}, {3 + 0xE4, 3 + 0xB8, 261}, {3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80},
		{3 + 0xF0, 3 + 0x9F, 3 + 0x98, 2, 3 + 0x80}, {3 + 0xC3, 1, 3 + 0xA9}, {3 + 0xFF, 3 + 0xC3, 3 + 0xA9},
	} {
		checkStreaming(t, tok, ids)
	}

	// "▁中" is the piece ▁ and three byte tokens: nothing shows until the third byte.
	d := tok.NewDecoder([]int32{1})
	var got []string
	for _, id := range tok.Encode("中", false) {
		got = append(got, d.Next(id))
	}
	got = append(got, d.Flush())
	if want := []string{"", "", "", "中", ""}; !slices.Equal(got, want) {
		t.Errorf("deltas for BOS, ▁中 = %q, want %q", got, want)
	}

	// After a prompt that produced text, a leading space is a real space.
	prompt := tok.Encode("Once upon", true)
	d = tok.NewDecoder(prompt)
	cont := tok.Encode("a time", false) // its first piece is "▁a"
	var sb strings.Builder
	for _, id := range cont {
		sb.WriteString(d.Next(id))
	}
	if got, want := sb.String(), " a time"; got != want {
		t.Errorf("continuation after %q = %q, want %q", "Once upon", got, want)
	}
	// After BOS alone, it is the dummy prefix.
	if got, want := streamDecode(tok, []int32{1}, cont), "a time"; got != want {
		t.Errorf("continuation after BOS = %q, want %q", got, want)
	}
}

// TestDecoderPeek: Peek(id) returns what Next(id) would, wherever the Decoder stands
// (inside a split character, at the dummy prefix, after a control token), and leaves
// it there: the rest of the stream decodes as without the peek.
func TestDecoderPeek(t *testing.T) {
	tok := loadTokenizer(t, targetFile)
	ids := append(tok.Encode("中文 and 😀", true), 2, 3+0xE4, 3+0xB8, 1, 3+0xAD, 261)
	candidates := []int32{1, 2, 261, 3 + 0xAD, 3 + 0xE4, 3 + 0x41, 0}
	for cut := range len(ids) + 1 {
		d := tok.NewDecoder(nil)
		var before []string
		for _, id := range ids[:cut] {
			before = append(before, d.Next(id))
		}
		for _, c := range candidates {
			fresh := tok.NewDecoder(nil)
			for _, id := range ids[:cut] {
				fresh.Next(id)
			}
			if got, want := d.Peek(c), fresh.Next(c); got != want {
				t.Fatalf("after %d ids: Peek(%d) = %q, Next gives %q", cut, c, got, want)
			}
		}
		var rest strings.Builder
		for _, id := range ids[cut:] {
			rest.WriteString(d.Next(id))
		}
		rest.WriteString(d.Flush())
		if got, want := strings.Join(before, "")+rest.String(), tok.Decode(ids); got != want {
			t.Fatalf("peeking after %d ids changed the text: %q, want %q", cut, got, want)
		}
	}
}

// TestNewInvalid checks that New refuses vocabularies it cannot use, with ErrInvalidVocab.
func TestNewInvalid(t *testing.T) {
	good := func() Vocab {
		return Vocab{
			Tokens: []string{"<unk>", "<s>", "</s>", "▁", "a"},
			Scores: []float32{0, 0, 0, -1, -2},
			BOS:    1, EOS: 2, UNK: 0, SpaceIsMeta: true,
		}
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("New(good vocabulary) = %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Vocab)
	}{
		{"no tokens", func(v *Vocab) { *v = Vocab{} }},
		{"short scores", func(v *Vocab) { v.Scores = v.Scores[:4] }},
		{"short types", func(v *Vocab) { v.Types = []TokenType{2, 3, 3} }},
		{"BOS out of range", func(v *Vocab) { v.BOS = 5 }},
		{"negative EOS", func(v *Vocab) { v.EOS = -1 }},
		{"UNK below -1", func(v *Vocab) { v.UNK = -2 }},
		{"no UNK and no byte tokens", func(v *Vocab) { v.UNK = -1 }},
		{"NaN score", func(v *Vocab) { v.Scores[4] = float32(math.NaN()) }},
		{"type out of range", func(v *Vocab) { v.Types = []TokenType{2, 3, 3, 1, 7} }},
		{"malformed byte token", func(v *Vocab) { v.Types = []TokenType{2, 3, 3, 1, TypeByte} }},
		{"strip id out of range", func(v *Vocab) { v.Strip = map[int32]Strip{5: StripRight} }},
		{"unknown strip bit", func(v *Vocab) { v.Strip = map[int32]Strip{2: 4} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := good()
			tc.mutate(&v)
			tok, err := New(v)
			if !errors.Is(err, ErrInvalidVocab) {
				t.Errorf("New = %v, %v; want an error wrapping ErrInvalidVocab", tok, err)
			}
		})
	}
}

// TestSyntheticVocab covers what the shared vocabularies lack: duplicate pieces,
// user-defined and unused pieces, inferred types, plain-space vocabularies and UNK.
func TestSyntheticVocab(t *testing.T) {
	tokens := []string{"<unk>", "<s>", "</s>", "▁", "a", "b", "c", "ab", "ab", "▁ab", "<X>", "bc", "abc", "x"}
	scores := []float32{0, 0, 0, -1, -2, -3, -4, -5, -5, -6, 0, -7, -8, -9}
	types := []TokenType{2, 3, 3, 1, 1, 1, 1, 1, 1, 5, 4, 1, 1, 0}
	tok, err := New(Vocab{Tokens: tokens, Scores: scores, Types: types, BOS: 1, EOS: 2, UNK: 0, SpaceIsMeta: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text string
		want []int32
	}{
		// "ab" twice (ids 7 and 8): the lower id. "▁ab" is unused: formed, then
		// emitted as the halves it was merged from.
		{"ab", []int32{3, 7}},
		// "ab" (-5) merges before "bc" (-7), then "▁ab" (-6) before "abc" (-8); "▁abc"
		// is no piece, so the unused "▁ab" is split again: ▁, ab, c.
		{"abc", []int32{3, 7, 6}},
		// <X> is user-defined: split out whole, and "a" beside it does not merge into it;
		// the text after it gets the dummy prefix, as in llama.cpp.
		{"a<X>b", []int32{3, 4, 10, 3, 5}},
		{"<X>b", []int32{10, 3, 5}},
		// No byte tokens: a missing character is one UNK.
		{"é", []int32{3, 0}},
		{"\xff", []int32{3, 0}},
		// Type 0 is inferred: "x" is normal.
		{"x", []int32{3, 13}},
	} {
		if got := tok.Encode(tc.text, false); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	if got, want := tok.Decode([]int32{1, 3, 7, 10, 9}), "ab<X> ab"; got != want {
		t.Errorf("Decode = %q, want %q", got, want)
	}

	// The same vocabulary spelt with plain spaces and no types encodes alike.
	plain := slices.Clone(tokens)
	plain[3], plain[9] = " ", " ab"
	ptok, err := New(Vocab{Tokens: plain, Scores: scores, BOS: 1, EOS: 2, UNK: 0})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text string
		want []int32
	}{
		{"ab", []int32{9}}, // untyped, " ab" is normal here
		{"a b", []int32{3, 4, 3, 5}},
	} {
		if got := ptok.Encode(tc.text, false); !slices.Equal(got, tc.want) {
			t.Errorf("plain-space Encode(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	for id, want := range map[int32]TokenType{0: TypeUnknown, 1: TypeControl, 2: TypeControl, 4: TypeNormal, 99: 0} {
		if got := ptok.Type(id); got != want {
			t.Errorf("inferred Type(%d) = %v, want %v", id, got, want)
		}
	}
}

// TestHash checks that Hash separates vocabularies and identifies equal ones across file
// formats, and that it is stable (draft/verifier pairing compares hashes across builds).
func TestHash(t *testing.T) {
	target, draft := loadTokenizer(t, targetFile), loadTokenizer(t, draftFile)
	stories, tok512 := loadTokenizer(t, storiesFile), loadTokenizer(t, tok512File)
	if target.Hash() != draft.Hash() {
		t.Errorf("target and draft share a SentencePiece model but hash %s and %s", target.Hash(), draft.Hash())
	}
	if stories.Hash() != tok512.Hash() {
		t.Errorf("stories260K's GGUF vocabulary hashes %s, its tokenizer.bin %s; want equal", stories.Hash(), tok512.Hash())
	}
	if target.Hash() == stories.Hash() {
		t.Errorf("target and stories260K hash alike: %s", target.Hash())
	}
	// Pinned: a change of the hash's definition would refuse pairs that older builds accept.
	for _, tc := range []struct {
		tok  *Tokenizer
		name string
		want string
	}{
		{target, targetFile, "0267b524ef0827524caafa0adeda35d0048d088562557db801f372dfebba4ea3"},
		{tok512, tok512File, "f1b5033c06ee4c4209572d7214a36526a255bde274d45f9db88ef311aeaf425a"},
	} {
		if got := tc.tok.Hash(); got != tc.want {
			t.Errorf("Hash() of %s = %s, want %s", tc.name, got, tc.want)
		}
	}

	base := Vocab{Tokens: []string{"<unk>", "<s>", "</s>", "▁", "a"}, Scores: []float32{0, 0, 0, -1, -2}, BOS: 1, EOS: 2, UNK: 0, SpaceIsMeta: true}
	h0 := mustNew(t, base).Hash()
	for _, tc := range []struct {
		name   string
		mutate func(*Vocab)
	}{
		{"piece", func(v *Vocab) { v.Tokens[4] = "b" }},
		{"score", func(v *Vocab) { v.Scores[4] = -2.5 }},
		{"type", func(v *Vocab) { v.Types = []TokenType{2, 3, 3, 1, 4} }},
		{"EOS", func(v *Vocab) { v.EOS = 1 }},
		{"UNK", func(v *Vocab) { v.UNK = 2 }},
		{"extra token", func(v *Vocab) { v.Tokens = append(v.Tokens, "c"); v.Scores = append(v.Scores, -3) }},
	} {
		v := base
		v.Tokens, v.Scores = slices.Clone(base.Tokens), slices.Clone(base.Scores)
		tc.mutate(&v)
		if h := mustNew(t, v).Hash(); h == h0 {
			t.Errorf("changing the %s left the hash at %s", tc.name, h)
		}
	}
}

func mustNew(t *testing.T, v Vocab) *Tokenizer {
	t.Helper()
	tok, err := New(v)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tok
}

// TestAccessors checks the small accessors on the specd vocabulary.
func TestAccessors(t *testing.T) {
	tok := loadTokenizer(t, targetFile)
	if tok.VocabSize() != 4096 || tok.BOS() != 1 || tok.EOS() != 2 || tok.UNK() != 0 || !tok.AddBOS() {
		t.Errorf("VocabSize, BOS, EOS, UNK, AddBOS = %d, %d, %d, %d, %v; want 4096, 1, 2, 0, true",
			tok.VocabSize(), tok.BOS(), tok.EOS(), tok.UNK(), tok.AddBOS())
	}
	for id, want := range map[int32]string{1: "<s>", 3: "<0x00>", 264: "▁the", -1: "", 4096: ""} {
		if got := tok.Piece(id); got != want {
			t.Errorf("Piece(%d) = %q, want %q", id, got, want)
		}
	}
	for id, want := range map[int32]TokenType{0: TypeUnknown, 1: TypeControl, 3: TypeByte, 264: TypeNormal} {
		if got := tok.Type(id); got != want {
			t.Errorf("Type(%d) = %v, want %v", id, got, want)
		}
	}
}

// TestEncodeChunks checks the chunking of very long texts, with the chunk size lowered:
// the text still round-trips, and cuts fall between characters.
func TestEncodeChunks(t *testing.T) {
	old := maxChunk
	maxChunk = 41 // odd, so that a blind cut would split a 2-byte character
	t.Cleanup(func() { maxChunk = old })

	for _, vf := range []string{targetFile, tok512File} {
		tok := loadTokenizer(t, vf)
		long := strings.Join(roundTripTexts(t), " ")
		if got := tok.Decode(tok.Encode(long, true)); got != long {
			t.Errorf("%s: Decode(Encode(%d bytes in chunks of %d)) differs from the text", vf, len(long), maxChunk)
		}
	}
	// "é" is a piece of the stories vocabulary: a cut inside one would need byte tokens.
	tok := loadTokenizer(t, tok512File)
	text := strings.Repeat("é", 100)
	for _, id := range tok.Encode(text, false) {
		if tok.Type(id) == TypeByte {
			t.Fatalf("Encode(%q) in chunks of %d has byte token %d: a cut split a character", text, maxChunk, id)
		}
	}
	if got := tok.Decode(tok.Encode(text, false)); got != text {
		t.Errorf("Decode(Encode(%q)) = %q", text, got)
	}
}
