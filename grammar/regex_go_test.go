package grammar

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// regexPieces are the parts FuzzRegexGo builds patterns of: syntax Python's re (whose
// reading RegexFormat follows) and Go's regexp read alike. Not \s (Python's holds \v,
// Go's does not), {,n} (a quantifier in Python, literal text in Go), nor \W \D (which
// leave out the Unicode letters and digits, Go's only ASCII ones).
var regexPieces = []string{
	"a", "b", "é", "世", " ", `\n`, ".", `\d`, `\w`, "c", "[0-9]", "[ab]", "[^a]", "[a-c1]", `[^\n]`,
	"(", "(?:", ")", "|", "*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}", "*?", "+?", "??",
}

// regexFromBytes builds a pattern of regexPieces, a byte for each.
func regexFromBytes(b []byte) string {
	var p strings.Builder
	for _, c := range b {
		p.WriteString(regexPieces[int(c)%len(regexPieces)])
	}
	return p.String()
}

// FuzzRegexGo: for a pattern of regexPieces that both take, the matcher takes a text
// whole exactly when Go's regexp matches it whole.
func FuzzRegexGo(f *testing.F) {
	f.Add([]byte{0, 15, 0, 19, 1, 16, 20}, "aab")
	f.Add([]byte{15, 0, 19, 10, 17, 21, 5}, "ab\n")
	f.Add([]byte{8, 22, 2, 18}, "x1é")
	f.Fuzz(func(t *testing.T, pb []byte, text string) {
		if len(pb) > 24 || len(text) > 24 {
			return
		}
		p := regexFromBytes(pb)
		re, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			return
		}
		fm, err := RegexFormat(p)
		if err != nil {
			if !errors.Is(err, ErrGrammar) {
				t.Fatalf("%q: %v does not wrap ErrGrammar", p, err)
			}
			return // refused: a pattern RegexFormat does not take (a repetition of what may be empty)
		}
		_, whole := fm.Check([]byte(text))
		if !utf8.ValidString(text) { // Go's regexp reads a bad byte as U+FFFD
			if whole {
				t.Fatalf("%q takes %q whole, which is not UTF-8", p, text)
			}
			return
		}
		if want := re.MatchString(text); whole != want {
			if s := fm.rules.after(fm.rules.start(), []byte(text)); s.set != nil && s.set.short {
				// A step visited more than maxExpands elements and followed the first
				// found, as docs/operations.md says a guided regex's step does:
				// ((a*|){1,3}){1,3}a misses "a" so.
				return
			}
			t.Fatalf("%q on %q: whole %v, Go's regexp %v", p, text, whole, want)
		}
	})
}
