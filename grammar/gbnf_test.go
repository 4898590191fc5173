package grammar

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// arith is the arithmetic grammar of llama.cpp's grammars/README.md, written again.
const arith = `# arithmetic
root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
`

func TestGBNFCheck(t *testing.T) {
	tests := []struct {
		grammar string
		text    string
		prefix  bool
		whole   bool
	}{
		{arith, "1+2=3\n", true, true},
		{arith, "(a +b_1)*c = x\n1=2\n", true, true},
		{arith, "1+2=3", true, false},
		{arith, "1+=3\n", false, false},
		{`root ::= "a" | "ab" | "abc"`, "ab", true, true},
		{`root ::= "a" | "ab" | "abc"`, "abcd", false, false},
		{`root ::= "x"{2,4}`, "x", true, false},
		{`root ::= "x"{2,4}`, "xx", true, true},
		{`root ::= "x"{2,4}`, "xxxx", true, true},
		{`root ::= "x"{2,4}`, "xxxxx", false, false},
		{`root ::= "ab"{2,}`, "abababab", true, true},
		{`root ::= "ab"{2,}`, "aba", true, false},
		{`root ::= "ab"{3}`, "ababab", true, true},
		{`root ::= "ab"{3}`, "abababab", false, false},
		{`root ::= [^a-c]+`, "xyz", true, true},
		{`root ::= [^a-c]+`, "xaz", false, false},
		{`root ::= .+`, "héllo 世界 🎉", true, true},
		{`root ::= "é"`, "\xc3", true, false},
		{`root ::= "é"`, "\xc3\xa9", true, true},
		{`root ::= "é"`, "\xc3\xa8", false, false},
		{`root ::= "e"`, "\xc3", false, false},
		{`root ::= .`, "\xed\xa0\x80", false, false}, // a surrogate
		{`root ::= .`, "\xc0\x80", false, false},     // overlong
		// What llama.cpp b4748 writes under these (its partial-character check lets
		// them through) is not UTF-8, and refused: a surrogate, past U+10FFFF, U+2603
		// in four bytes.
		{`root ::= [^a]`, "\xed\xa0\xa0", false, false},
		{`root ::= .`, "\xf4\x90\x90\x90", false, false},
		{`root ::= "\u2603"`, "\xf0\x82\x98\x83", false, false},
		{`root ::= "\u2603"`, "\xf0", false, false},
		{`root ::= [\u4e00-\u9fff]`, "世", true, true},
		{`root ::= [\u4e00-\u9fff]`, "\xe4", true, false},
		{`root ::= [\u4e00-\u9fff]`, "\xe3", false, false},
		{`root ::= "\x41\u00e9\U0001F389\t\"\\"`, "Aé🎉\t\"\\", true, true},
		{"root ::= item (\",\" item)*\nitem ::= [0-9]", "1,2,3", true, true},
		{"root ::= \"(\" root \")\" | \"\"", "((()))", true, true},
		{"root ::= \"(\" root \")\" | \"\"", "(()", true, false},
		{"root ::= \"(\" root \")\" | \"\"", "())", false, false},
		{"root ::= a b\na ::= \"x\"?\nb ::= \"y\"?", "", true, true},
		{"root ::= a b\na ::= \"x\"?\nb ::= \"y\"?", "y", true, true},
		{"root ::= (\n  \"a\" |\n  \"b\"\n)", "b", true, true},
		{"root ::= \"a\" |\n \"b\"", "b", true, true},
		{`root ::= [\]\[\\]*`, `][\`, true, true},
		{`root ::= [a-]`, `-`, true, true},
		// \- is '-', as llama.cpp reads it after b4748 (b4748 refuses it).
		{`root ::= [a\-z]+`, `-az-`, true, true},
		{`root ::= [a\-z]+`, `b`, false, false},
		{`root ::= "\-"`, `-`, true, true},
		// A repetition may span lines inside parentheses.
		{"root ::= (\"a\"{1,\n 2})", "aa", true, true},
		// . is any character, a newline too.
		{`root ::= "<" . ">"`, "<\n>", true, true},
		// An alternative no text completes is dropped: it is not a way in.
		{`root ::= "a" [^\x01-\U0010FFFF] | "b"`, `a`, false, false},
		{`root ::= "a" [^\x01-\U0010FFFF] | "b"`, `b`, true, true},
		// llama.cpp never writes U+0000: '.', [^a] and ranges leave it out.
		{`root ::= .`, "\x00", false, false},
		{`root ::= [^a]`, "\x00", false, false},
		{`root ::= [\x00-\x1f]`, "\x00", false, false},
		{`root ::= [\x00-\x1f]`, "\x01", true, true},
	}
	for _, tt := range tests {
		f, err := GBNFFormat(tt.grammar)
		if err != nil {
			t.Errorf("GBNFFormat(%q): %v", tt.grammar, err)
			continue
		}
		prefix, whole := f.Check([]byte(tt.text))
		if prefix != tt.prefix || whole != tt.whole {
			t.Errorf("GBNFFormat(%q).Check(%q) = %v, %v, want %v, %v", tt.grammar, tt.text, prefix, whole, tt.prefix, tt.whole)
		}
	}
}

func TestGBNFErrors(t *testing.T) {
	tests := []struct {
		grammar string
		want    string // in the error
	}{
		{``, "no rule named root"},
		{`rot ::= "a"`, "no rule named root"},
		{`root ::= x`, `line 1, column 10: rule "x" is not defined`},
		{"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule \"root\" defined twice"},
		{`root ::= root "a"`, "left recursion"},
		{"root ::= a\na ::= b? root\nb ::= \"x\"", "left recursion: rule \"root\" → rule \"a\" → rule \"root\""},
		{`root ::= ("a"?)*`, "column 16: a repetition of something that may be empty"},
		// A grammar no text completes left a mask no token, not even the end.
		{`root ::= [\x01-\x00]`, `the end is below the start`},
		{`root ::= [\x00]`, `rule "root" matches no text`},
		// llama.cpp reads [] and [^] as nothing at all (its class loop never runs).
		{`root ::= []`, `column 10: an empty character class []`},
		{`root ::= "a" [^]`, `column 14: an empty character class [^]`},
		{`root ::= "\x00"`, `column 11: U+0000 in a literal`},
		{`root ::= [^\x00-\U0010FFFF] | "a" x` + "\nx ::= \"b\" x", `rule "root" matches no text`},
		{`root ::= "a`, "string that does not end"},
		{`root ::= [a`, "class that does not end"},
		{`root ::= [z-a]`, "end is below the start"},
		{`root ::= "\q"`, `unknown escape \q`},
		{`root ::= "\x4"`, "want 2 hex digits"},
		{`root ::= "\uD800"`, "U+D800 is not a character"},
		{`root ::= "\U00110000"`, "is not a character"},
		{`root ::= ( "a"`, "want ')'"},
		{`root ::= *`, "nothing before '*' to repeat"},
		{`root ::= "a"{2`, "want ',' or '}'"},
		{`root ::= "a"{x}`, "want a number"},
		{`root ::= "a"{3,2}`, "maximum is below the minimum"},
		{`root ::= "a"{99999999999999999999}`, "at most"},
		{`root ::= "a"{60000} "b"{60000}`, "more than 65536 elements"},
		{`root ::= "abcd"{20000}`, "more than 65536 elements"},
		{`root = "a"`, "want ::="},
		{`root ::= "a" )`, "want a line end"},
		{"root ::= \"a\"\n\xff", "not valid UTF-8"},
		{`root_x ::= "a"`, "want ::="},
		// Outside parentheses a line ends a rule, inside braces too (as llama.cpp reads it).
		{"root ::= \"a\"{2,\n3}", "want '}' to end the repetition"},
		{"root ::= \"a\"{\n2}", "want a number in the repetition"},
		{`root ::= "a"{,3}`, "want a number in the repetition"},
		// llama.cpp's token references (after b4748) are refused by name.
		{`root ::= <[5]>`, "column 10: token references"},
		{`root ::= "a" !<[5]>`, "column 14: token references"},
		{"root ::= x\nx ::= <|im_end|>", "line 2, column 7: token references"},
	}
	for _, tt := range tests {
		_, err := GBNFFormat(tt.grammar)
		if err == nil || !errors.Is(err, ErrGrammar) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("GBNFFormat(%q) = %v, want an ErrGrammar with %q", tt.grammar, err, tt.want)
		}
	}
}

// TestGBNFAgreesWithLlamaCpp: the grammars llama.cpp refuses (or dies on) are refused,
// and those it takes are taken, but for the differences the file names (each the
// other way round).
// tsvRows reads a file of recorded test data: its lines but the comments (#), each
// split at its tabs.
func tsvRows(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for line := range strings.Lines(string(data)) {
		if !strings.HasPrefix(line, "#") {
			rows = append(rows, strings.Split(strings.TrimRight(line, "\n"), "\t"))
		}
	}
	return rows
}

func TestGBNFAgreesWithLlamaCpp(t *testing.T) {
	n := 0
	for _, cols := range tsvRows(t, "testdata/llamacpp-gbnf.tsv") {
		g, err := strconv.Unquote(cols[0])
		if err != nil {
			t.Fatalf("%s: %v", cols[0], err)
		}
		differs := len(cols) > 3 && cols[3] != ""
		want := (cols[1] == "accepted") != differs
		if _, err := GBNFFormat(g); (err == nil) != want {
			t.Errorf("GBNFFormat(%q) = %v; llama.cpp: %s %s", g, err, cols[1], strings.Join(cols[2:], " "))
		}
		n++
	}
	if n < 20 {
		t.Fatalf("%d cases, want the file's", n)
	}
}

// TestGBNFTooAmbiguous: a rule that opens more alternatives at once than a step keeps
// is refused, and one that seems to but opens the same ones (duplicates dropped) is
// not.
func TestGBNFTooAmbiguous(t *testing.T) {
	var alts []string
	for i := range maxStacks + 1 {
		alts = append(alts, fmt.Sprintf("%q", fmt.Sprint("x", i)))
	}
	_, err := GBNFFormat("root ::= " + strings.Join(alts, " | "))
	if err == nil || !strings.Contains(err.Error(), "opens more than 256 alternatives") {
		t.Errorf("%d alternatives: %v, want too ambiguous", len(alts), err)
	}
	same := strings.Repeat(`x | `, maxStacks) + "x\nx ::= \"x\""
	if _, err := GBNFFormat("root ::= " + same); err != nil {
		t.Errorf("%d alternatives alike: %v", maxStacks+1, err)
	}
}

// BenchmarkCompileChain: a grammar of 4000 rules each opening the next, which the
// check of the alternatives a rule opens once expanded for every rule (1.3 s).
func BenchmarkCompileChain(b *testing.B) {
	var src strings.Builder
	src.WriteString("root ::= r0\n")
	for i := range 4000 {
		fmt.Fprintf(&src, "r%d ::= r%d \"a\"\n", i, i+1)
	}
	src.WriteString("r4000 ::= \"x\"\n")
	for b.Loop() {
		if _, err := GBNFFormat(src.String()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSyntaxErrorPlace: an error says where, as a *SyntaxError, in characters.
func TestSyntaxErrorPlace(t *testing.T) {
	_, err := GBNFFormat("root ::= \"é\" x\n# ünïcode\nx ::= [a-z] yy\n")
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 3 || se.Col != 13 || !strings.Contains(se.Msg, `"yy" is not defined`) {
		t.Errorf("GBNFFormat = %#v, want line 3, column 13: rule \"yy\" is not defined", err)
	}
	_, err = RegexFormat(`é+(?=x)`)
	if !errors.As(err, &se) || se.Line != 1 || se.Col != 3 {
		t.Errorf("RegexFormat = %#v, want line 1, column 3", err)
	}
}
