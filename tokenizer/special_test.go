package tokenizer

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestStrip checks the whitespace rules of llama.cpp's tokenizer_st_partition on the
// byte-level vocabulary tinyBPE: a StripLeft token takes the whitespace (the six bytes of
// C's isspace, no other) before it back to the start of the raw stretch it is found in, a
// StripRight token the whitespace after it; a stretch left empty disappears. Control
// tokens strip only when special tokens are parsed, since only then are they split out.
// The shared vocabularies are checked against llama.cpp itself in package ggufvocab.
func TestStrip(t *testing.T) {
	// Ids of tinyBPE: the byte characters are their bytes; 258 "Ġab", 259 <|ctl|>
	// (control), 260 <u> (user-defined).
	const sp, nl, tab, ctl, user = ' ', '\n', '\t', 259, 260
	for _, tc := range []struct {
		name  string
		strip map[int32]Strip
		text  string
		parse bool
		want  []int32
	}{
		{"none", nil, "a <u> b", false, []int32{'a', sp, user, sp, 'b'}},
		{"right", map[int32]Strip{user: StripRight}, "a <u> \t\nb", false, []int32{'a', sp, user, 'b'}},
		{"left", map[int32]Strip{user: StripLeft}, "a \t<u> b", false, []int32{'a', user, sp, 'b'}},
		{"both", map[int32]Strip{user: StripLeft | StripRight}, "a  <u>  b", false, []int32{'a', user, 'b'}},
		{"all whitespace", map[int32]Strip{user: StripLeft | StripRight}, " \r\n\v\f<u>\t \n", false, []int32{user}},
		{"repeated", map[int32]Strip{user: StripRight}, "<u> <u>  <u>\n", false, []int32{user, user, user}},
		{"no-break space is not stripped", map[int32]Strip{user: StripRight}, "<u>\u00a0b", false, []int32{user, 0xc2, 0xa0, 'b'}},
		{"control, raw", map[int32]Strip{ctl: StripRight}, "<|ctl|> a", false, nil},
		{"control, parsed", map[int32]Strip{ctl: StripRight}, "x<|ctl|>\n\na", true, []int32{'x', ctl, 'a'}},
		// The user-defined token is split out later (it is shorter): the control
		// token's stripping reaches up to it, its own only within its stretch.
		{"next to each other", map[int32]Strip{ctl: StripRight, user: StripLeft}, "<|ctl|> \n <u>", true, []int32{ctl, user}},
		{"left stops at a special token", map[int32]Strip{user: StripLeft}, "<|ctl|> <u>", true, []int32{ctl, user}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tinyBPE("gpt-2")
			v.Strip = tc.strip
			tok, err := New(v)
			if err != nil {
				t.Fatal(err)
			}
			got := tok.Tokenize(tc.text, false, tc.parse)
			if tc.want == nil { // control text stays text: the same as without Strip
				v.Strip = nil
				plain, err := New(v)
				if err != nil {
					t.Fatal(err)
				}
				tc.want = plain.Tokenize(tc.text, false, tc.parse)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Tokenize(%q, false, %v) = %v, want %v", tc.text, tc.parse, got, tc.want)
			}
		})
	}
}

// TestTokenizeAddSpecial checks that Tokenize adds BOS and EOS as the vocabulary asks,
// as llama.cpp's llama_tokenize with add_special does, and only then.
func TestTokenizeAddSpecial(t *testing.T) {
	v := tinyBPE("gpt-2")
	v.BOS, v.EOS = 256, 257
	for _, tc := range []struct {
		addBOS, addEOS, addSpecial bool
		want                       []int32
	}{
		{false, false, true, []int32{'x'}},
		{true, false, true, []int32{256, 'x'}},
		{false, true, true, []int32{'x', 257}},
		{true, true, true, []int32{256, 'x', 257}},
		{true, true, false, []int32{'x'}},
	} {
		v.AddBOS, v.AddEOS = tc.addBOS, tc.addEOS
		tok, err := New(v)
		if err != nil {
			t.Fatal(err)
		}
		if tok.AddEOS() != tc.addEOS {
			t.Errorf("AddEOS() = %v, want %v", tok.AddEOS(), tc.addEOS)
		}
		for _, parse := range []bool{false, true} {
			if got := tok.Tokenize("x", tc.addSpecial, parse); !slices.Equal(got, tc.want) {
				t.Errorf("AddBOS %v, AddEOS %v: Tokenize(x, %v, %v) = %v, want %v", tc.addBOS, tc.addEOS, tc.addSpecial, parse, got, tc.want)
			}
		}
	}
	// Without an EOS id there is nothing to add.
	v.EOS, v.AddEOS = -1, true
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AddEOS() {
		t.Errorf("AddEOS() = true with no EOS id")
	}
	v.Strip = map[int32]Strip{-1: StripLeft}
	if _, err := New(v); !errors.Is(err, ErrInvalidVocab) {
		t.Errorf("New with a strip id of -1 = %v, want ErrInvalidVocab", err)
	}
}

// FuzzStrip checks partition's stripping against a plain model of it: with the
// user-defined token <u> (which cannot overlap itself) stripping on both sides, a text
// encodes as the text cut at each <u>, each piece trimmed of C whitespace next to a <u>,
// and joined again, encodes without stripping.
func FuzzStrip(f *testing.F) {
	for _, s := range []string{"a <u> b", " <u>", "<u> ", "\t<u>\n<u>\v\f\r x", "<u <u>>", "x<u>  <u>y", "é <u>\u00a0", ""} {
		f.Add(s)
	}
	v := tinyBPE("gpt-2")
	plain, err := New(v)
	if err != nil {
		f.Fatal(err)
	}
	v.Strip = map[int32]Strip{260: StripLeft | StripRight}
	tok, err := New(v)
	if err != nil {
		f.Fatal(err)
	}
	const cSpace = " \t\n\v\f\r"
	f.Fuzz(func(t *testing.T, text string) {
		parts := strings.Split(text, "<u>")
		for i := range parts {
			if i > 0 {
				parts[i] = strings.TrimLeft(parts[i], cSpace)
			}
			if i < len(parts)-1 {
				parts[i] = strings.TrimRight(parts[i], cSpace)
			}
		}
		want := strings.Join(parts, "<u>")
		for _, parse := range []bool{false, true} {
			if got, w := tok.Tokenize(text, false, parse), plain.Tokenize(want, false, parse); !slices.Equal(got, w) {
				t.Fatalf("Tokenize(%q, false, %v) = %v, want %v (the ids of %q)", text, parse, got, w, want)
			}
		}
	})
}
