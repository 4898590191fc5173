package grammar

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRegexCheck(t *testing.T) {
	tests := []struct {
		pattern, text string
		prefix, whole bool
	}{
		{`\d{3}-\d{4}`, "555-1234", true, true},
		{`\d{3}-\d{4}`, "555-12", true, false},
		{`\d{3}-\d{4}`, "55a", false, false},
		{`^(yes|no)$`, "no", true, true},
		{`(?:ab)+c?`, "ababc", true, true},
		{`(?P<word>\w+)@(?<host>[a-z.]+)`, "me_1@ex.org", true, true},
		{`[^\d\s]+`, "abc", true, true},
		{`[^\d\s]+`, "ab c", false, false},
		{`.*`, "any thing", true, true},
		{`.*`, "line\nbreak", false, false},
		{`a{2,}?b`, "aaab", true, true},
		{`a{,2}b`, "b", true, true},
		{`a{,2}b`, "aaab", false, false},
		{`x{`, "x{", true, true},
		{`[]a]+`, "]a]", true, true},
		{`[\]\\-]`, `-`, true, true},
		{`\$\.\*\(`, "$.*(", true, true},
		{`\u00e9\x41\U0001F600`, "éA😀", true, true},
		{`[\w-]+`, "a-b_c", true, true},
		{`\S\W\D`, "a_b", false, false},
		{`\S\W\D`, "a!b", true, true},
		{`(a|bc)*`, "", true, true},
		{`(\d+\.)?\d+`, "3.14", true, true},
		{`[a-c-e]`, "-", true, true},
		{`\s`, "\v", true, true},
		// \A and \Z are the ends, as ^ and $ are.
		{`\A\d+\Z`, "12", true, true},
		{`\Aa|b\Z`, "b", true, true},
		// {,} is {0,}, "{}" and "{ 2}" are literal text, as Python reads them.
		{`x{,}y`, "xxxy", true, true},
		{`x{,}y`, "x{,}y", false, false},
		{`x{}`, "x{}", true, true},
		{`x{ 2}`, "x{ 2}", true, true},
		// Octal escapes: \0 and two more digits, three digits, one to three in a class.
		{`\012\101`, "\nA", true, true},
		{`\0`, "\x00", true, true},
		{`\07`, "\a", true, true},
		{`[\1-\37]`, "\x1f", true, true},
		// Comments are skipped.
		{`a(?#note)b`, "ab", true, true},
		// \D \W \S and classes that negate \d \w \s leave out what Python's Unicode
		// reading holds, so that re.fullmatch takes the output with and without re.ASCII;
		// \d \w \s are ASCII.
		{`\W`, "é", false, false},
		{`\W`, "!", true, true},
		{`\D`, "٣", false, false},
		{`\S`, "\x1e", false, false},
		{`\S`, "\u00a0", false, false},
		{`[^\s]`, "\u3000", false, false},
		{`[^\d]`, "٣", false, false},
		{`[^\W\d_]+`, "abc", true, true},
		{`[^\W\d_]+`, "é", false, false},
		{`\w`, "é", false, false},
		{`\d`, "٣", false, false},
		{`[\S\s]`, "é", true, true},
		// Inline flags: i folds case (ASCII letters; a negated class leaves out
		// Unicode's other cases too), s lets '.' take a newline, a makes \W ASCII.
		{`(?i)abc`, "aBC", true, true},
		{`(?i)^abc$`, "ABC", true, true},
		{`a(?i:b)c`, "aBc", true, true},
		{`a(?i:b)c`, "aBC", false, false},
		{`(?i)a(?-i:b)`, "Ab", true, true},
		{`(?i)a(?-i:b)`, "AB", false, false},
		{`(?i)[a-c]+`, "AbC", true, true},
		{`(?i)k`, "\u212a", false, false}, // the Kelvin sign: Python's ASCII reading does not fold it
		{`(?i)[^k]`, "\u212a", false, false},
		{`(?i)[^k]`, "K", false, false},
		{`(?i)[^i]`, "\u0131", false, false}, // ı, which Python pairs with I
		{`(?i)[^i]`, "\u0130", false, false}, // İ, whose lower case is i
		{`(?i)[^i]`, "j", true, true},
		{`(?i)[^ı]`, "i", false, false},      // Python pairs i with ı
		{`(?i)[^ı]`, "\u0130", false, false}, // İ, whose lower case is i
		{`(?i)[^İ]`, "\u0131", false, false},
		{`(?i)[^\uFB05]`, "\uFB06", false, false}, // ﬅ and ﬆ, which Python takes as one
		{`(?i)[^ı]`, "j", true, true},
		{`(?i)\x41`, "a", true, true},
		{`(?i)é`, "É", false, false},
		{`(?s)a.b`, "a\nb", true, true},
		{`(?s:.)|.`, "\n", true, true},
		{`.|(?s:a)`, "\n", false, false},
		{`(?a)\W`, "é", true, true},
		{`(?m)^a$`, "a", true, true},
		// ^ \A and $ \Z inside groups where the output begins and ends.
		{`(^a$)`, "a", true, true},
		{`(\Aa)`, "a", true, true},
		{`(?:^a|^b)c`, "bc", true, true},
		{`((^a)|b)(c$|d$)`, "bd", true, true},
		{`x|(^y(z$))`, "yz", true, true},
		{`(?i)(^a)`, "A", true, true},
	}
	for _, tt := range tests {
		f, err := RegexFormat(tt.pattern)
		if err != nil {
			t.Errorf("RegexFormat(%q): %v", tt.pattern, err)
			continue
		}
		prefix, whole := f.Check([]byte(tt.text))
		if prefix != tt.prefix || whole != tt.whole {
			t.Errorf("RegexFormat(%q).Check(%q) = %v, %v, want %v, %v", tt.pattern, tt.text, prefix, whole, tt.prefix, tt.whole)
		}
	}
}

func TestRegexErrors(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{``, "empty pattern"},
		{`[^\s\S]`, "the pattern matches no text"},
		{`(a)\1`, `column 4: back-references (\1)`},
		{`(?P<n>a)(?P=n)`, "back-references ((?P=name))"},
		{`\k<n>`, "back-references"},
		{`a(?=b)`, "look-arounds ((?=...))"},
		{`a(?!b)`, "look-arounds"},
		{`(?<=a)b`, "look-arounds ((?<=...))"},
		{`(?<!a)b`, "look-arounds"},
		{`\bword\b`, `word boundaries (\b)`},
		{`(?x)a b`, "verbose patterns ((?x))"},
		{`a(?i)b`, "column 2: global flags ((?i)) only at the start"},
		{`(?)`, "unknown or unsupported inline flag ')'"},
		{`(?-i)a`, "unknown or unsupported inline flag ')'"},
		{`(?au)a`, "inline flags a and u together"},
		{`(?a-a:x)`, "unknown or unsupported inline flag 'a'"},
		{`(?L)a`, "the locale flag"},
		{`(?i`, "inline flags that do not end"},
		{`(?>a)`, "atomic groups"},
		{`a++`, "possessive quantifiers (++)"},
		{`a{2}+`, "possessive quantifiers ({2}+)"},
		{`\p{L}`, "Unicode property classes"},
		{`a\Zb`, `'\Z' only at the end`},
		{`a\A`, `'\A' only at the start`},
		{`a\z`, `anchors (\z)`},
		{`a{2}{3}`, `column 5: multiple repeat: "{3}"`},
		{`a*{2}`, `multiple repeat: "{2}"`},
		{`a+?*`, `multiple repeat: "*"`},
		{`\1`, `back-references (\1)`},
		{`\12`, `back-references (\12)`},
		{`\8`, `back-references (\8)`},
		{`\400`, `octal escape \400 is above \377`},
		{`[\d-z]`, `a range that begins with a class (\d)`},
		{`(?#no end`, "a comment ((?#...)) that does not end"},
		{`\N{EM DASH}`, `unknown escape \N`},
		{`a^b`, "'^' only at the start"},
		{`a$b`, "'$' only at the end"},
		{`x(^a)`, "column 3: '^' only at the start"},
		{`a(?:b|^c)`, "column 7: '^' only at the start"},
		{`a*(\Ab)`, `'\A' only at the start`},
		{`(a$)b`, "column 1: a group with '$' only at the end"},
		{`(a$)*`, "a group with '$' only at the end"},
		{`((a$))?`, "a group with '$' only at the end"},
		{`(a$|b)c`, "a group with '$' only at the end"},
		{`(a$b)`, "'$' only at the end"},
		{`*a`, `nothing to repeat before '*'`},
		{`a|*`, `nothing to repeat`},
		{`{2}`, `nothing to repeat before "{2}"`},
		{`a**`, "multiple repeat"},
		{`(ab`, "column 1: missing ')'"},
		{`ab)`, "column 3: unbalanced ')'"},
		{`[ab`, "class that does not end"},
		{`[z-a]`, "end is below the start"},
		{`[a-\d]`, `a range that ends in a class (\d)`},
		{`\q`, `unknown escape \q`},
		{`\x4`, "want 2 hex digits"},
		{`a\`, "'\\' at the end"},
		{`a{3,2}`, "maximum is below the minimum"},
		{`(a{1000}){1000}x{65536}`, "more than"},
	}
	for _, tt := range tests {
		_, err := RegexFormat(tt.pattern)
		if err == nil || !errors.Is(err, ErrGrammar) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("RegexFormat(%q) = %v, want an ErrGrammar with %q", tt.pattern, err, tt.want)
		}
	}
}

// diffPatterns are patterns whose meaning Go's regexp shares with Python's.
var diffPatterns = []string{
	`\d{3}-\d{2,4}`,
	`(a|ab)(c|bcd)(d*)`,
	`[A-Z][a-z]*( [A-Z][a-z]*){0,2}`,
	`(\w+@\w+\.(com|org))?`,
	`[^aeiou\n]+x?`,
	`(é|世界|[α-ω])+\.?`,
	`-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`,
	`((a|b)c?){2,3}`,
}

// FuzzRegexDiff: the matcher takes a text whole exactly when Go's regexp matches it
// whole, for patterns both read alike; and it agrees with the rules' reference.
func FuzzRegexDiff(f *testing.F) {
	for i, s := range []string{"555-12", "abcd", "Ab Cd", "x@y.com", "bcdx", "世界é.", "-0.5e+3", "acbbc", ""} {
		f.Add(uint8(i), s)
	}
	f.Fuzz(func(t *testing.T, which uint8, text string) {
		p := diffPatterns[int(which)%len(diffPatterns)]
		fm, err := RegexFormat(p)
		if err != nil {
			t.Fatal(err)
		}
		_, whole := fm.Check([]byte(text))
		if !utf8.ValidString(text) { // Go's regexp reads a bad byte as U+FFFD
			if whole {
				t.Fatalf("%q takes %q whole, which is not UTF-8", p, text)
			}
			return
		}
		if want := regexp.MustCompile(`^(?:` + p + `)$`).MatchString(text); whole != want {
			t.Fatalf("%q on %q: whole %v, Go's regexp %v", p, text, whole, want)
		}
		checkAgainstRef(t, fm.rules, text)
	})
}

// FuzzRegex: any pattern is taken or refused with an ErrGrammar, never a panic or a
// hang; a pattern taken agrees with the reference on any text.
func FuzzRegex(f *testing.F) {
	for _, p := range append(diffPatterns, `(?P<x>a)\1`, `[\]-]`, `x{`, `a{,3}?`, `(?:a|)b`, `\u00e9+`, `^a|b$`,
		`a{2}{3}`, `\400`, `\0777`, `[\777]`, `(?#`, `(?#x)*`, `\A\Z`, `\Aa|\Zb`, `[\d-z]`, `x{,}`, `[^\W\d]`, `\S*\D`, `\12`,
		`(?i)[^a-z]k`, `(?is)a.`, `(^a$)`, `((^a)|b)(c$|d$)`, `(a$)*`, `a(?:b|^c)`, `(?#x)(^a)`, `a(?i:b(?-i:c))`, `(?)`, `(?au)`, `(?i`, `(?i)(?s)^a`, `(?a)\W`, `(?i)[\x00-\U0010FFFF]`, `(?i)[^ı]`, `(?i)[^İ]k`, `(?i)[^\uFB05]`, `(?i)[^\w][^\w]`) {
		f.Add(p, "ab")
	}
	f.Fuzz(func(t *testing.T, p, text string) {
		fm, err := RegexFormat(p)
		if err != nil {
			if !errors.Is(err, ErrGrammar) {
				t.Fatalf("%q: %v does not wrap ErrGrammar", p, err)
			}
			return
		}
		checkAgainstRef(t, fm.rules, text[:min(len(text), 64)])
	})
}

// TestRegexEmptyRepetition: an unbounded repetition of something that may be empty
// matches what Go's regexp (and Python's re) matches, in both readings.
func TestRegexEmptyRepetition(t *testing.T) {
	texts := []string{"", "a", "aa", "ab", "ba", "abab", "b", "bb", "c", "abc", "acb", "cab", "aab", "x"}
	for _, p := range []string{`(a?)*`, `(a*)+`, `(a|)+b`, `(a?b?)*`, `(a?)*(b?)+`, `((a?)*b?)*c`, `()*a`, `(?:)+b`,
		`(a?){2,}`, `(a?){0,}b`, `(a*b*)*c?`, `x|(a?)*`} {
		re := regexp.MustCompile(`^(?:` + p + `)$`)
		f, err := RegexFormat(p)
		if err != nil {
			t.Errorf("RegexFormat(%q) = %v", p, err)
			continue
		}
		auto, err := compilePattern(`^(?:`+p+`)$`, 0)
		if err != nil {
			t.Errorf("compilePattern(%q) = %v", p, err)
			continue
		}
		for _, s := range texts {
			want := re.MatchString(s)
			if _, whole := f.Check([]byte(s)); whole != want {
				t.Errorf("RegexFormat(%q).Check(%q) whole = %v, want %v", p, s, whole, want)
			}
			if got := (&strRule{max: -1, auto: auto}).matches(s); got != want {
				t.Errorf("pattern %q on %q: %v, want %v", p, s, got, want)
			}
		}
	}
}
