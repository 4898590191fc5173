package tokenizer

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
)

// issueTypes are the pre-tokenizer types issue 13 asks for (jina-* spelled out).
var issueTypes = []string{
	"default", "llama3", "llama-v3", "llama-bpe", "falcon3", "deepseek-llm", "deepseek-coder", "deepseek-v3",
	"falcon", "mpt", "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de", "jina-v1-en", "jina-v2-es", "jina-v2-de",
	"jina-v2-code", "gigachat", "roberta-bpe", "refact", "command-r", "qwen2", "deepseek-r1-qwen", "stablelm2",
	"olmo", "dbrx", "smaug-bpe", "poro-chat", "chatglm-bpe", "viking", "jais", "tekken", "smollm", "codeshell",
	"bloom", "gpt3-finnish", "exaone", "chameleon", "minerva-7b", "megrez", "qwen35", "gpt-4o", "llama4",
}

// splitWords returns the words p cuts text into.
func splitWords(p *preTokenizer, text string) []string {
	var sc scratch
	var out []string
	for _, w := range p.words(text, &sc, nil) {
		out = append(out, text[w[0]:w[1]])
	}
	return out
}

// TestPreTokenizerTypes checks that every type compiles and cuts text into words that
// cover it, and that an unknown type is refused by name.
func TestPreTokenizerTypes(t *testing.T) {
	text := "Hello, wörld! It's 12345 items;\n\n  indented\t\ttabs 你好世界 😀 ~~~ <sentinel:3> IMGIMGABZ"
	for _, name := range issueTypes {
		p, err := newPreTokenizer(name)
		if err != nil {
			t.Errorf("newPreTokenizer(%q): %v", name, err)
			continue
		}
		words := splitWords(p, text)
		if got := strings.Join(words, ""); got != text {
			t.Errorf("%s: words %q do not join to the text", name, words)
		}
		if slices.Contains(words, "") {
			t.Errorf("%s: an empty word in %q", name, words)
		}
	}
	for _, name := range []string{"llama5", "Qwen2", "gpt2"} {
		_, err := newPreTokenizer(name)
		if !errors.Is(err, ErrUnknownPreTokenizer) || !errors.Is(err, ErrInvalidVocab) || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("newPreTokenizer(%q) = %v, want ErrUnknownPreTokenizer naming it", name, err)
		}
	}
	if p, err := newPreTokenizer(""); err != nil || p.name != "default" {
		t.Errorf(`newPreTokenizer("") = %v, %v; want the default type`, p, err)
	}
}

// TestPreTokenizerCases pins down the split rules llama.cpp's own tests rely on.
func TestPreTokenizerCases(t *testing.T) {
	for _, tc := range []struct {
		pre, text string
		want      []string
	}{
		{"gpt-2", "  Hello", []string{" ", " Hello"}},
		{"gpt-2", "Hello   world\n", []string{"Hello", "  ", " world", "\n"}},
		{"gpt-2", "it's I'M", []string{"it", "'s", " I", "'", "M"}},
		{"llama3", "it's I'M", []string{"it", "'s", " I", "'M"}},
		{"llama3", "12345 x", []string{"123", "45", " x"}},
		{"qwen2", "12345", []string{"1", "2", "3", "4", "5"}},
		{"llama3", "a \n\n b", []string{"a", " \n\n", " b"}},
		{"llama3", "x  ", []string{"x", "  "}},
		{"llama3", "(x)\n\ny", []string{"(x", ")\n\n", "y"}},
		{"starcoder", "a123b", []string{"a", "1", "2", "3", "b"}},
		{"deepseek-coder", "Hi 你好\nx", []string{"Hi", " ", "你好", "\n", "x"}},
		// llama.cpp's collapsed \p{S} leaves out '~' (see collapsePattern).
		{"deepseek-v3", " ~~~ a", []string{" ", "~~~", " a"}},
		{"bloom", "Hello, world!", []string{"Hello", ",", " world", "!"}},
	} {
		p, err := newPreTokenizer(tc.pre)
		if err != nil {
			t.Fatal(err)
		}
		if got := splitWords(p, tc.text); !slices.Equal(got, tc.want) {
			t.Errorf("%s: words(%q) = %q, want %q", tc.pre, tc.text, got, tc.want)
		}
	}
}

// scannerCases are the hand-written scanners and the patterns they stand for. The GPT-2
// and Llama 3 scanners follow llama.cpp's, which treat unassigned code points apart from
// the regular expression; texts with those are not compared for them.
var scannerCases = []struct {
	pat        string
	hand       splitter
	unassigned bool // the scanner must agree on unassigned code points too
}{
	{patGPT2, gpt2Split{}, false},
	{patLlama3, llama3Split{maxDigits: 3}, false},
	{patQwen2, llama3Split{maxDigits: 1, regexUndefined: true}, true},
	{patDigit, digitSplit{}, true},
}

// checkScanners compares each hand-written scanner with regexp2 running its pattern on
// llama.cpp's collapsed text.
func checkScanners(t *testing.T, text string) {
	t.Helper()
	unassigned := false
	for _, r := range text {
		unassigned = unassigned || charFlags(r) == 0
	}
	for _, sc := range scannerCases {
		if unassigned && !sc.unassigned {
			continue
		}
		re := regexp2.MustCompile(collapsePattern(sc.pat), regexp2.None)
		hand := &preTokenizer{stages: []splitter{sc.hand}}
		regex := &preTokenizer{stages: []splitter{regexSplit{re: re, collapsed: true}}, needRegex: true}
		if got, want := splitWords(hand, text), splitWords(regex, text); !slices.Equal(got, want) {
			t.Errorf("pattern %.30q… on %q: scanner %q, regexp2 %q", sc.pat, text, got, want)
		}
	}
}

func TestScannersMatchRegexp(t *testing.T) {
	for _, s := range scannerSeeds {
		checkScanners(t, s)
	}
}

var scannerSeeds = []string{
	"", "Hello world", " Hello World!", "  Hello", "   Hello\n    Hello", "\n =", "' era", "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
	"it's IT'S we'Ve 'll 'd'", "3333333 1 22 ½ ²", "a\t\tb  \n\n  c\r\n\r\n", "   ", "x ", " \n", "\u00a0\u3000 a\u2028b\u0085",
	"e\u0301 x\u200by \U000e0001 \U0010fffd", "((x)) [[y]] !!!\n\n", "\u0378\u0379x .\u0378 \u0378!", "\xff\xfe a\xc3", "~~~ $$ ++ || ^^",
}

// FuzzScanners checks the hand-written scanners against regexp2 on any text.
func FuzzScanners(f *testing.F) {
	for _, s := range scannerSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		checkScanners(t, s)
	})
}

// BenchmarkPreTokenize compares the Llama 3 pattern as the hand-written scanner with the
// same pattern on regexp2, on about 64 KiB of mixed text.
func BenchmarkPreTokenize(b *testing.B) {
	text := strings.Repeat(strings.Join(scannerSeeds, "\n")+" The quick brown fox jumps over the lazy dog; 1234 times.\n", 128)
	for _, tc := range []struct {
		name string
		p    *preTokenizer
	}{
		{"scanner", &preTokenizer{stages: []splitter{llama3Split{maxDigits: 3}}}},
		{"regexp2", &preTokenizer{stages: []splitter{regexSplit{re: regexp2.MustCompile(collapsePattern(patLlama3), regexp2.None), collapsed: true}}, needRegex: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var sc scratch
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				sc.words = tc.p.words(text, &sc, sc.words[:0])
			}
		})
	}
}
