package tokenizer

import (
	"slices"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
)

// withSpecials returns the shared target's tokenizer with AddBOS and AddEOS set as given.
func withSpecials(t testing.TB, addBOS, addEOS bool) *Tokenizer {
	t.Helper()
	v, err := vocabFromGGUF(testmodels.ForTest(t, targetFile))
	if err != nil {
		t.Fatal(err)
	}
	v.AddBOS, v.AddEOS = addBOS, addEOS
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// promptCase is a text encoded with the target's vocabulary, AddBOS and AddEOS set as
// given, and the ids it should give.
type promptCase struct {
	name           string
	addBOS, addEOS bool
	text           string
	want           func(tok *Tokenizer) []int32
}

// TestPrompt: a text prompt gets BOS first and EOS last exactly when the vocabulary asks
// for each, as llama_tokenize with add_special does, and special-token text in it stays
// text, so "</s>" at its end is not mistaken for the EOS the vocabulary adds.
func TestPrompt(t *testing.T) {
	const bos, eos = 1, 2
	text := func(tok *Tokenizer, s string) []int32 { return tok.Encode(s, false) }
	for _, tc := range []promptCase{
		{"shipped: BOS only", true, false, "Once upon a time", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos}, text(tok, "Once upon a time"))
		}},
		{"add_eos", true, true, "Once upon a time", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos}, text(tok, "Once upon a time"), []int32{eos})
		}},
		{"add_eos without BOS", false, true, "Once upon a time", func(tok *Tokenizer) []int32 {
			return slices.Concat(text(tok, "Once upon a time"), []int32{eos})
		}},
		{"neither", false, false, "Once upon a time", func(tok *Tokenizer) []int32 { return text(tok, "Once upon a time") }},
		{"EOS text stays text", true, true, "The end</s>", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos}, text(tok, "The end</s>"), []int32{eos})
		}},
		{"empty text", true, true, "", func(*Tokenizer) []int32 { return []int32{bos, eos} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := withSpecials(t, tc.addBOS, tc.addEOS)
			want := tc.want(tok)
			if got := tok.Prompt(tc.text); !slices.Equal(got, want) {
				t.Errorf("Prompt(%q) = %v, want %v", tc.text, got, want)
			}
			if got := tok.Tokenize(tc.text, true, false); !slices.Equal(got, want) {
				t.Errorf("Tokenize(%q, true, false) = %v, want Prompt's %v", tc.text, got, want)
			}
		})
	}
}

// TestChatPrompt: a rendered conversation loses the BOS text that starts it and the EOS
// text that ends it, whatever the vocabulary asks for, and then gets BOS and EOS as the
// vocabulary asks, with special-token text parsed — llama-server b4748's rule (its ids
// for a real file are checked in package verifiersvc). Special-token text between turns
// stays and becomes its token.
func TestChatPrompt(t *testing.T) {
	const bos, eos = 1, 2
	special := func(tok *Tokenizer, s string) []int32 { return tok.EncodeSpecial(s, false) }
	for _, tc := range []promptCase{
		{"template BOS, vocabulary BOS: one BOS", true, false, "<s>user: Hi\n", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos}, special(tok, "user: Hi\n"))
		}},
		{"no BOS text: BOS added", true, false, "user: Hi\n", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos}, special(tok, "user: Hi\n"))
		}},
		{"EOS text removed, vocabulary adds none", true, false, "<s>user: Hi\n</s>", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos}, special(tok, "user: Hi\n"))
		}},
		{"EOS text removed, vocabulary adds it: one EOS", true, true, "<s>user: Hi\n</s>", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos}, special(tok, "user: Hi\n"), []int32{eos})
		}},
		{"BOS text removed, vocabulary adds none", false, true, "<s>user: Hi\n</s>", func(tok *Tokenizer) []int32 {
			return slices.Concat(special(tok, "user: Hi\n"), []int32{eos})
		}},
		{"inner BOS and EOS stay", true, true, "<s>[INST] a [/INST] b </s><s>[INST] c [/INST]", func(tok *Tokenizer) []int32 {
			in := special(tok, "[INST] a [/INST] b </s><s>[INST] c [/INST]")
			if !slices.Contains(in, bos) || !slices.Contains(in, eos) {
				t.Fatalf("reference %v lacks the inner BOS and EOS", in)
			}
			return slices.Concat([]int32{bos}, in, []int32{eos})
		}},
		{"only one of each removed", true, true, "<s><s>x</s></s>", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos, bos}, special(tok, "x"), []int32{eos, eos})
		}},
		{"BOS text with a space first stays", true, false, " <s>x", func(tok *Tokenizer) []int32 {
			return slices.Concat([]int32{bos}, special(tok, " <s>x"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := withSpecials(t, tc.addBOS, tc.addEOS)
			want := tc.want(tok)
			if got := tok.ChatPrompt(tc.text); !slices.Equal(got, want) {
				t.Errorf("ChatPrompt(%q) = %v, want %v", tc.text, got, want)
			}
		})
	}
}

// FuzzPrompt: for any text, Prompt is the raw ids with BOS and EOS around them as the
// vocabulary asks, and ChatPrompt starts with BOS and ends with EOS when it asks,
// whatever BOS and EOS text the rendering holds.
func FuzzPrompt(f *testing.F) {
	for _, s := range []string{"", "Once upon a time", "<s>", "</s>", "<s>user: Hi\n</s>", "</s><s>", " <s> </s> ", "\xff<s"} {
		f.Add(s)
	}
	toks := []*Tokenizer{withSpecials(f, true, true), withSpecials(f, false, true), withSpecials(f, true, false)}
	f.Fuzz(func(t *testing.T, text string) {
		for _, tok := range toks {
			var want []int32
			if tok.AddBOS() {
				want = append(want, tok.BOS())
			}
			want = append(want, tok.Encode(text, false)...)
			if tok.AddEOS() {
				want = append(want, tok.EOS())
			}
			if got := tok.Prompt(text); !slices.Equal(got, want) {
				t.Fatalf("AddBOS %v AddEOS %v: Prompt(%q) = %v, want %v", tok.AddBOS(), tok.AddEOS(), text, got, want)
			}
			got := tok.ChatPrompt(text)
			if tok.AddBOS() && (len(got) == 0 || got[0] != tok.BOS()) || tok.AddEOS() && (len(got) == 0 || got[len(got)-1] != tok.EOS()) {
				t.Fatalf("AddBOS %v AddEOS %v: ChatPrompt(%q) = %v", tok.AddBOS(), tok.AddEOS(), text, got)
			}
		}
	})
}

// TestHashLeavesOutAddBOSAndAddEOS: AddBOS and AddEOS change a prompt's ids but not what
// an id means, and only a verifier encodes text, so the hash a draft is paired by does
// not cover them (see Hash).
func TestHashLeavesOutAddBOSAndAddEOS(t *testing.T) {
	want := withSpecials(t, true, false).Hash()
	for _, c := range [][2]bool{{true, true}, {false, true}, {false, false}} {
		if got := withSpecials(t, c[0], c[1]).Hash(); got != want {
			t.Errorf("AddBOS %v AddEOS %v: Hash() = %.12s, want %.12s", c[0], c[1], got, want)
		}
	}
}
