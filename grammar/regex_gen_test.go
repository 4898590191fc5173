package grammar

import (
	"math/rand/v2"
	"regexp"
	"testing"
	"unicode/utf8"
)

// pySpace is what Python's \s holds in a str pattern (str.isspace), for a Go class.
const pySpace = `\t\n\v\f\r \x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}`

// regexGenCases are patterns as vLLM's users write them (Python's syntax), each with
// the Go regexp that means the same where Go's syntax differs: \s holds \v in Python
// (not in Go), {,n} {,} and octal escapes are Python's only, \A \Z (?#...) too; \S \W
// \D leave out what Python's Unicode reading of \s \w \d holds.
var regexGenCases = []struct{ pattern, goRE string }{
	{`\d{3}-\d{3}-\d{4}`, ""},
	{`[A-Z][a-z]+ [A-Z][a-z]+`, ""},
	{`(\d{1,3}\.){3}\d{1,3}`, ""},
	{`[\w.+-]+@[\w-]+\.[\w.]+`, ""},
	{`(true|false)`, ""},
	{`^(?:yes|no|maybe)$`, ""},
	{`\A\w+\Z`, `\w+`},
	{`\d{4}-\d{2}-\d{2}`, ""},
	{`(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)`, ""},
	{`-?\d+(\.\d+)?([eE][+-]?\d+)?`, ""},
	{`https?://[^\s/$.?#][^\s]*`, `https?://[^` + pySpace + `/$.?#][^` + pySpace + `]*`},
	{`\s*\S+`, `[\t\n\v\f\r ]*[^` + pySpace + `]+`},
	{`\W+\D`, `[^\pL\pM\pN\p{Pc}]+\P{Nd}`},
	{`[^\n]{1,20}\n`, ""},
	{`.{3}`, ""},
	{`a{,3}b`, `a{0,3}b`},
	{`x{,}y`, `x*y`},
	{`\012\101+`, `\nA+`},
	{`[\0-\37]?z`, `[\x00-\x1f]?z`},
	{`(?#a comment)\d+`, `\d+`},
	{`(a|b|)c`, ""},
	{`[]a]+`, `[\]a]+`},
	{`[^]x\n]+`, `[^\]x\n]+`},
	{`\$\d+\.\d{2}`, ""},
	{`"([^"\\\n]|\\.)*"`, ""},
	{`(?:[A-Z]{2}|\d{2})-\d{3,}`, ""},
	{`a+?b*?c??`, ""},
	{`\u00e9t\u00e9|\U0001F600+|\x41`, `\x{e9}t\x{e9}|\x{1F600}+|A`},
	{`[^\W\d_]+\d*`, ""},
	{`\(\d{3}\) \d{3}-\d{4}`, ""},
	{`[.\-/]{2}\.{1,2}`, ""},
	{`(?i)hello|world`, ""},
	{`(?i)[a-f0-9]{4}k`, ""},
	{`(?i)[^a-z\s]+`, `(?i)[^a-z` + pySpace + `]+`},
	{`(?s)<.{0,5}>`, ""},
	{`a(?i:bc)d`, ""},
	{`(?a)\W+\S`, `[^0-9A-Za-z_]+[^\t\n\v\f\r ]`},
	{`(?is)x.y|(?-i:z)`, `(?is)x.y|(?-i:z)`},
}

// TestRegexGenerate: outputs drawn through specd's mask at random under each pattern
// are matched whole by Go's regexp of the same meaning, and Check takes them whole.
func TestRegexGenerate(t *testing.T) {
	tok := specdVocab(t)
	runs := 40
	if testing.Short() {
		runs = 10
	}
	for i, c := range regexGenCases {
		f, err := RegexFormat(c.pattern)
		if err != nil {
			t.Errorf("RegexFormat(%q): %v", c.pattern, err)
			continue
		}
		goRE := c.goRE
		if goRE == "" {
			goRE = c.pattern
		}
		re := regexp.MustCompile(`^(?:` + goRE + `)$`)
		r := rand.New(rand.NewPCG(uint64(i), 11))
		done := 0
		for range runs {
			out, ended := generate(t, f, tok, r, 120)
			if !ended {
				continue
			}
			done++
			if !utf8.Valid(out) || !re.Match(out) {
				t.Errorf("%q: specd wrote %q, which Go's %q does not match", c.pattern, out, goRE)
			}
			if _, whole := f.Check(out); !whole {
				t.Errorf("%q: specd wrote %q, which Check does not take whole", c.pattern, out)
			}
		}
		if done < runs/3 {
			t.Errorf("%q: %d of %d outputs ended", c.pattern, done, runs)
		}
	}
}
