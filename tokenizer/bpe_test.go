package tokenizer

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// tinyBPE is a byte-level vocabulary small enough to reason about: the 256 byte
// characters (id = byte), then a few merged pieces, a control and a user-defined token.
func tinyBPE(pre string) Vocab {
	toks := make([]string, 0, 270)
	for b := range 256 {
		toks = append(toks, byteChar[b])
	}
	toks = append(toks,
		"ab",      // 256
		"abc",     // 257
		"Ġab",     // 258
		"<|ctl|>", // 259: control
		"<u>",     // 260: user-defined
		"Ã©",      // 261: "é"
		"bc",      // 262: a piece no merge forms
		"ca",      // 263
	)
	types := make([]TokenType, len(toks))
	for i := range types {
		types[i] = TypeNormal
	}
	types[259], types[260] = TypeControl, TypeUserDefined
	return Vocab{
		Model:  ByteLevelBPE,
		Tokens: toks,
		Types:  types,
		Merges: []string{"a b", "ab c", "Ġ ab", "Ã ©", "c a"},
		Pre:    pre,
		BOS:    259, EOS: 259, UNK: -1,
		SpecialIDs: map[string]int32{"eot": 259},
	}
}

func TestByteLevelEncode(t *testing.T) {
	gpt2 := mustNew(t, tinyBPE("gpt-2"))
	llama3 := mustNew(t, tinyBPE("llama3"))
	for _, tc := range []struct {
		name, text string
		tok        *Tokenizer
		special    bool
		want       []int32
	}{
		{"merges in rank order", "abc", gpt2, false, []int32{257}},
		{"space is Ġ", " ab", gpt2, false, []int32{258}},
		{"a two-byte character", "é", gpt2, false, []int32{261}},
		// "cab": "c a" (rank 4) loses to "a b" (rank 0): c, ab.
		{"lower rank first", "cab", gpt2, false, []int32{'c', 256}},
		{"no merge forms bc", "bc", gpt2, false, []int32{'b', 'c'}},
		{"ignore_merges takes a whole-word piece", "bc", llama3, false, []int32{262}},
		{"user-defined is split out", "x<u>y", gpt2, false, []int32{'x', 260, 'y'}},
		{"control text is text", "<|ctl|>", gpt2, false, []int32{'<', '|', 'c', 't', 'l', '|', '>'}},
		{"EncodeSpecial parses control text", "a<|ctl|>b", gpt2, true, []int32{'a', 259, 'b'}},
		// As llama.cpp reads text (see asCodePoints and ggufvocab's TestInvalidUTF8).
		{"a stray byte reads as U+FFFD", "\xff\xc3", gpt2, false, []int32{0xef, 0xbf, 0xbd, 0xef, 0xbf, 0xbd}},
		{"an overlong form reads as its code point", "\xc0\x80", gpt2, false, []int32{0}},
		{"empty", "", gpt2, false, []int32{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int32
			if tc.special {
				got = tc.tok.EncodeSpecial(tc.text, false)
			} else {
				got = tc.tok.Encode(tc.text, false)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
			}
		})
	}
	if got := gpt2.Encode("ab", true); !slices.Equal(got, []int32{259, 256}) {
		t.Errorf("Encode(%q, true) = %v, want BOS first", "ab", got)
	}
	noBOS := tinyBPE("gpt-2")
	noBOS.BOS = -1
	if got := mustNew(t, noBOS).Encode("ab", true); !slices.Equal(got, []int32{256}) {
		t.Errorf("without a BOS token Encode(%q, true) = %v, want [256]", "ab", got)
	}
}

func TestByteLevelDecode(t *testing.T) {
	tok := mustNew(t, tinyBPE("gpt-2"))
	for _, tc := range []struct {
		ids  []int32
		want string
	}{
		{[]int32{258, 261}, " abé"},
		{[]int32{259, 'x', 260}, "x<u>"}, // control gives nothing, user-defined its text
		{[]int32{0xc3}, "\uFFFD"},
		{[]int32{0xc3, 0xa9}, "é"},
		{[]int32{-1, 9999, 'a'}, "a"},
	} {
		if got := tok.Decode(tc.ids); got != tc.want {
			t.Errorf("Decode(%v) = %q, want %q", tc.ids, got, tc.want)
		}
	}
	// A character split over two tokens streams out whole.
	d := tok.NewDecoder(nil)
	if got := d.Next(0xc3); got != "" {
		t.Errorf("Next(first byte of é) = %q, want nothing yet", got)
	}
	if got := d.Next(0xa9); got != "é" {
		t.Errorf("Next(second byte of é) = %q, want %q", got, "é")
	}
	if got := d.Next(0xe4) + d.Flush(); got != "\uFFFD" {
		t.Errorf("Flush after an incomplete character = %q, want U+FFFD", got)
	}
	for _, s := range []string{"abc é <u> x", "\t\n  tabs", "日本語 😀"} {
		if got := tok.Decode(tok.Encode(s, true)); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
	}
}

func TestByteLevelAccessors(t *testing.T) {
	tok := mustNew(t, tinyBPE("llama-bpe"))
	if tok.Model() != ByteLevelBPE || tok.Pre() != "llama-bpe" || tok.UNK() != -1 {
		t.Errorf("Model, Pre, UNK = %v, %q, %d", tok.Model(), tok.Pre(), tok.UNK())
	}
	if id, ok := tok.SpecialID("eot"); !ok || id != 259 {
		t.Errorf(`SpecialID("eot") = %d, %v`, id, ok)
	}
	if _, ok := tok.SpecialID("fim_pre"); ok {
		t.Errorf(`SpecialID("fim_pre") found`)
	}
	spm := loadTokenizer(t, targetFile)
	if spm.Model() != SentencePiece || spm.Pre() != "" {
		t.Errorf("SentencePiece Model, Pre = %v, %q", spm.Model(), spm.Pre())
	}
}

func TestByteLevelInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Vocab)
		want   error
	}{
		{"no tokens", func(v *Vocab) { v.Tokens, v.Types = nil, nil }, ErrInvalidVocab},
		{"types length", func(v *Vocab) { v.Types = v.Types[:3] }, ErrInvalidVocab},
		{"scores length", func(v *Vocab) { v.Scores = []float32{1} }, ErrInvalidVocab},
		{"BOS out of range", func(v *Vocab) { v.BOS = 1000 }, ErrInvalidVocab},
		{"UNK below -1", func(v *Vocab) { v.UNK = -2 }, ErrInvalidVocab},
		{"bad type", func(v *Vocab) { v.Types[5] = 9 }, ErrInvalidVocab},
		{"duplicate piece", func(v *Vocab) { v.Tokens[262] = "ab" }, ErrInvalidVocab},
		{"special id out of range", func(v *Vocab) { v.SpecialIDs = map[string]int32{"eot": 5000} }, ErrInvalidVocab},
		{"unknown pre-tokenizer", func(v *Vocab) { v.Pre = "no-such-type" }, ErrUnknownPreTokenizer},
		{"unknown model", func(v *Vocab) { v.Model = 7 }, ErrInvalidVocab},
	} {
		v := tinyBPE("gpt-2")
		v.Types = slices.Clone(v.Types)
		v.Tokens = slices.Clone(v.Tokens)
		tc.mutate(&v)
		if _, err := New(v); !errors.Is(err, tc.want) {
			t.Errorf("%s: New = %v, want %v", tc.name, err, tc.want)
		}
	}
	_, err := New(func() Vocab { v := tinyBPE("no-such-type"); return v }())
	if err == nil || !strings.Contains(err.Error(), `"no-such-type"`) {
		t.Errorf("the error %v does not name the unknown type", err)
	}
}

// TestByteLevelHash checks that the hash covers pieces, merges, the pre-tokenizer and
// special ids (but the padding id), and that aliases of one pre-tokenizer type hash alike.
func TestByteLevelHash(t *testing.T) {
	h0 := mustNew(t, tinyBPE("llama3")).Hash()
	if h := mustNew(t, tinyBPE("llama-bpe")).Hash(); h != h0 {
		t.Errorf("llama3 and its alias llama-bpe hash %s and %s", h0, h)
	}
	if h := mustNew(t, tinyBPE("llama3")).Hash(); h != h0 {
		t.Errorf("the same vocabulary hashes %s and %s", h0, h)
	}
	padded := tinyBPE("llama3")
	padded.SpecialIDs = maps.Clone(padded.SpecialIDs)
	padded.SpecialIDs["padding"] = 263
	if h := mustNew(t, padded).Hash(); h != h0 {
		t.Errorf("a padding id changed the hash to %s", h)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Vocab)
	}{
		{"piece", func(v *Vocab) { v.Tokens[263] = "cb" }},
		{"control piece", func(v *Vocab) { v.Tokens[259] = "<|other|>" }},
		{"type", func(v *Vocab) { v.Types[262] = TypeUserDefined }},
		{"merge order", func(v *Vocab) { v.Merges[0], v.Merges[1] = v.Merges[1], v.Merges[0] }},
		{"merge dropped", func(v *Vocab) { v.Merges = v.Merges[:4] }},
		{"pre-tokenizer", func(v *Vocab) { v.Pre = "qwen2" }},
		{"BOS", func(v *Vocab) { v.BOS = -1 }},
		{"EOS", func(v *Vocab) { v.EOS = 260 }},
		{"extra special id", func(v *Vocab) { v.SpecialIDs["fim_pre"] = 263 }},
		{"special id moved", func(v *Vocab) { v.SpecialIDs["eot"] = 260 }},
	} {
		v := tinyBPE("llama3")
		v.Tokens, v.Types, v.Merges = slices.Clone(v.Tokens), slices.Clone(v.Types), slices.Clone(v.Merges)
		v.SpecialIDs = maps.Clone(v.SpecialIDs)
		tc.mutate(&v)
		if h := mustNew(t, v).Hash(); h == h0 {
			t.Errorf("changing the %s left the hash at %s", tc.name, h)
		}
	}
}

// FuzzAsCodePoints: any bytes read as llama.cpp reads them come back as UTF-8 but for
// surrogates (ED A0..BF 80..BF, which llama.cpp keeps), and valid UTF-8 comes back as it
// is.
func FuzzAsCodePoints(f *testing.F) {
	for _, s := range []string{"héllo", "\xff\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x9f\x98", "a\xe4bc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := asCodePoints(s)
		if utf8.ValidString(s) && out != s {
			t.Fatalf("asCodePoints(%q) = %q, want it unchanged", s, out)
		}
		for i := 0; i < len(out); {
			r, n := utf8.DecodeRuneInString(out[i:])
			if r == utf8.RuneError && n == 1 {
				if i+3 > len(out) || out[i] != 0xed || out[i+1] < 0xa0 || out[i+1] > 0xbf || out[i+2]&0xc0 != 0x80 {
					t.Fatalf("asCodePoints(%q) = %q: invalid byte at %d", s, out, i)
				}
				n = 3
			}
			i += n
		}
	})
}
