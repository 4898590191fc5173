package grammar

import (
	"math"
	"math/bits"
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// TestFreeFindsRuns: where most characters may come next though the set changes with
// each — a period, a counted run, a run an end closes — free finds them, so that a mask
// scans the vocabulary rather than walking all of its trie (20-80 ms over Qwen2's
// tokens: only a set that leads back to itself was found before); where few may, it
// finds none.
func TestFreeFindsRuns(t *testing.T) {
	tok, err := ggufvocab.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-qwen2.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		gbnf, regex, text string
		bytes, depth      int // at least; 0: none
	}{
		{regex: `[^\n]*x`, text: "hello wo", bytes: 127, depth: math.MaxInt},
		{regex: `(.{3})*x`, text: "hello wo", bytes: 127, depth: math.MaxInt},
		{regex: `[^\n]{1,500}`, text: "hello wo", bytes: 127, depth: maxFreeDepth},
		{regex: `.{0,300}\n`, text: "hello wo", bytes: 126, depth: maxFreeDepth},
		{gbnf: `root ::= "{" [^}]{0,20} "}"`, text: "{hello wo", bytes: 126, depth: 12},
		{regex: `[a-z]+`, text: "hello"},
		{regex: `\d{3}-\d{4}`, text: "55"},
	} {
		var f Format
		if tc.gbnf != "" {
			f, err = GBNFFormat(tc.gbnf)
		} else {
			f, err = RegexFormat(tc.regex)
		}
		if err != nil {
			t.Fatal(err)
		}
		m := f.Grammar(tok).NewMatcher().(*ruleMatcher)
		m.st = m.r.after(m.st, []byte(tc.text))
		free, _, depth := m.free()
		n := bits.OnesCount64(free[0]) + bits.OnesCount64(free[1])
		if tc.bytes == 0 && n != 0 || n < tc.bytes || depth < tc.depth {
			t.Errorf("%s%s after %q: free() = %d bytes, depth %d; want at least %d, %d", tc.gbnf, tc.regex, tc.text, n, depth, tc.bytes, tc.depth)
		}
	}
}
