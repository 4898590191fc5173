package grammar

import (
	"bufio"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// The grammars of testdata/gbnf-lang, each with a checker of its language written a
// second time without the rule engine: Go's regexp for the regular ones, a parser
// that follows every way through (par, below) for the recursive ones. The checkers
// are checked in turn against what llama.cpp writes (TestLlamaCppSamples).
var langCheckers = map[string]func(string) bool{
	"arith":  whole(ref(&arithExpr)),
	"json":   whole(ref(&jsonValue)),
	"kv":     whole(ref(&kvLines)),
	"chess":  chessRE.MatchString,
	"list":   listRE.MatchString,
	"record": recordRE.MatchString,
	"greet":  greetRE.MatchString,
}

var (
	chessMove = `(?:O-O(?:-O)?|[KQRBN](?:[a-h]|[1-8])?x?[a-h][1-8]|(?:[a-h]x)?[a-h][1-8](?:=[QRBN])?)[+#]?`
	chessTurn = `[1-9][0-9]?\. ` + chessMove + `(?: ` + chessMove + `)?`
	chessRE   = regexp.MustCompile(`^` + chessTurn + `(?: ` + chessTurn + `){0,5}(?: (?:1-0|0-1|1/2-1/2))?$`)

	listWord  = `(?:[A-Z]?[a-z]{1,10}|[0-9]{1,4})`
	listItem  = `(?:- |\* |[1-9]\. )` + listWord + `(?: ` + listWord + `){0,4}(?: x[1-9][0-9]?| \([a-z]+\))?\n`
	listRE    = regexp.MustCompile(`^## ` + listWord + `(?: ` + listWord + `){0,3}\n` + listItem + `(?:(?:  )?` + listItem + `){0,5}$`)
	recordRE  = regexp.MustCompile(`^ID-[A-Z]{2}-[0-9]{3,5}\n(?:> [^\n<>]{1,24}\n){1,3}(?:note: (?s:.){0,12};\n)?tags:(?: [^ \n,;]{2,},?){0,3}$`)
	greetName = `(?:[A-Z\x{C0}-\x{DE}][a-z\x{DF}-\x{FF}]{1,8}|[\x{4E00}-\x{9FFF}]{1,3}|[\x{410}-\x{42F}][\x{430}-\x{44F}]{2,6})`
	greetRE   = regexp.MustCompile(`^(?:Grüß Gott|こんにちは|Привет|¡Hola|Καλημέρα), ` + greetName +
		`(?:!|\x{3002}|!!)(?: (?:🎉|\x{2603}|\x{1F600}|[\x{1F300}-\x{1F33F}]))?$`)
)

// par reads from s[i:] and returns every place it can end, sorted, each once: a
// parser that follows all the ways through an ambiguous grammar at once.
type par func(s string, i int) []int

func whole(p par) func(string) bool {
	return func(s string) bool { return utf8.ValidString(s) && slices.Contains(p(s, 0), len(s)) }
}

func lit(w string) par {
	return func(s string, i int) []int {
		if strings.HasPrefix(s[i:], w) {
			return []int{i + len(w)}
		}
		return nil
	}
}

func one(in func(rune) bool) par {
	return func(s string, i int) []int {
		if r, n := utf8.DecodeRuneInString(s[i:]); n > 0 && r != utf8.RuneError && in(r) {
			return []int{i + n}
		}
		return nil
	}
}

func in(set string) func(rune) bool { return func(r rune) bool { return strings.ContainsRune(set, r) } }

func between(lo, hi rune) func(rune) bool { return func(r rune) bool { return lo <= r && r <= hi } }

func seq(ps ...par) par {
	return func(s string, i int) []int {
		at := []int{i}
		for _, p := range ps {
			var next []int
			for _, j := range at {
				next = append(next, p(s, j)...)
			}
			if at = uniq(next); len(at) == 0 {
				return nil
			}
		}
		return at
	}
}

func alt(ps ...par) par {
	return func(s string, i int) []int {
		var out []int
		for _, p := range ps {
			out = append(out, p(s, i)...)
		}
		return uniq(out)
	}
}

// rep reads p from lo to hi times (hi < 0: no bound).
func rep(p par, lo, hi int) par {
	return func(s string, i int) []int {
		at, out := []int{i}, []int(nil)
		for n := 0; len(at) > 0 && (hi < 0 || n <= hi); n++ {
			if n >= lo {
				out = append(out, at...)
			}
			var next []int
			for _, j := range at {
				for _, k := range p(s, j) {
					if k > j || n < lo { // no progress cannot add a place past lo
						next = append(next, k)
					}
				}
			}
			at = uniq(next)
		}
		return uniq(out)
	}
}

func opt(p par) par { return rep(p, 0, 1) }

// ref is p read when called, for rules that refer to each other.
func ref(p *par) par { return func(s string, i int) []int { return (*p)(s, i) } }

func uniq(v []int) []int {
	slices.Sort(v)
	return slices.Compact(v)
}

// arithExpr is arith.gbnf again.
var arithExpr par

func init() {
	ws := opt(lit(" "))
	lower := between('a', 'z')
	digit := between('0', '9')
	name := seq(one(lower), rep(one(func(r rune) bool { return lower(r) || digit(r) || r == '_' }), 0, 5))
	number := seq(rep(one(digit), 1, 6), opt(seq(lit("."), rep(one(digit), 1, 3))))
	var expr, factor par
	call := seq(name, lit("("), ws, ref(&expr), rep(seq(ws, lit(","), ws, ref(&expr)), 0, 2), ws, lit(")"))
	atom := alt(number, name, call, seq(lit("("), ws, ref(&expr), ws, lit(")")))
	unary := seq(opt(lit("-")), atom)
	factor = seq(unary, opt(seq(lit("^"), ref(&factor))))
	term := seq(factor, rep(seq(ws, one(in("*/%")), ws, factor), 0, -1))
	expr = seq(term, rep(seq(ws, one(in("+-")), ws, term), 0, -1))
	arithExpr = expr
}

// jsonValue is json.gbnf again.
var jsonValue par

func init() {
	ws := rep(one(in(" \t\n")), 0, 2)
	digit := between('0', '9')
	hex := one(func(r rune) bool { return digit(r) || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F' })
	char := alt(
		one(func(r rune) bool { return r != '"' && r != '\\' && r >= 0x20 }),
		seq(lit(`\`), alt(one(in(`"\/bfnrt`)), seq(lit("u"), rep(hex, 4, 4)))))
	str := seq(lit(`"`), rep(char, 0, -1), lit(`"`))
	num := seq(opt(lit("-")), alt(lit("0"), seq(one(between('1', '9')), rep(one(digit), 0, 8))),
		opt(seq(lit("."), rep(one(digit), 1, 6))), opt(seq(one(in("eE")), opt(one(in("-+"))), rep(one(digit), 1, 3))))
	var value par
	pair := seq(str, ws, lit(":"), ws, ref(&value), ws)
	object := seq(lit("{"), ws, opt(seq(pair, rep(seq(lit(","), ws, pair), 0, -1))), lit("}"))
	array := seq(lit("["), ws, opt(seq(ref(&value), ws, rep(seq(lit(","), ws, ref(&value), ws), 0, -1))), lit("]"))
	value = alt(object, array, str, num, lit("true"), lit("false"), lit("null"))
	jsonValue = value
}

// kvLines is kv.gbnf again.
var kvLines par

func init() {
	digit := between('0', '9')
	keyChar := one(func(r rune) bool { return 'a' <= r && r <= 'z' || digit(r) || r == '_' || r == '.' })
	key := alt(seq(one(func(r rune) bool { return 'a' <= r && r <= 'z' || r == '_' }), rep(keyChar, 0, 11)),
		seq(lit(`"`), rep(one(func(r rune) bool { return r != '"' && r != '\n' }), 1, -1), lit(`"`)))
	num := seq(opt(lit("-")), rep(one(digit), 1, -1), opt(seq(lit("."), rep(one(digit), 1, -1))))
	str := seq(lit("'"), rep(alt(one(func(r rune) bool { return r != '\'' && r != '\\' && r != '\n' }),
		seq(lit(`\`), one(func(rune) bool { return true }))), 0, 20), lit("'"))
	var value par
	list := seq(lit("["), opt(seq(ref(&value), rep(seq(lit(","), opt(lit(" ")), ref(&value)), 0, -1))), lit("]"))
	value = alt(num, lit("true"), lit("false"), str, list, lit(""))
	ws := opt(one(in(" \t")))
	kvLines = rep(seq(key, ws, lit("="), ws, value, lit("\n")), 1, 4)
}

// langFormat compiles testdata/gbnf-lang/NAME.gbnf.
func langFormat(t *testing.T, name string) Format {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "gbnf-lang", name+".gbnf"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := GBNFFormat(string(src))
	if err != nil {
		t.Fatalf("%s.gbnf: %v", name, err)
	}
	return f
}

// TestLangCheckersSeeBadText: each checker refuses a text that is nearly a sentence,
// so that agreeing with it means something.
func TestLangCheckersSeeBadText(t *testing.T) {
	tests := []struct {
		name, good, bad string
	}{
		{"arith", "f(1, x^2^y) - -(3.25 % b_2)", "f(1, 2, 3, 4)"},
		{"arith", "a1+2", "a1+"},
		{"json", `{"a": [1, -0.5e+3, "\u00e9\n"],` + "\n\t" + `"b":{}}`, `{"a": 01}`},
		{"json", `[true,null,"x"]`, "[1,   2]"},
		{"chess", "1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 1/2-1/2", "1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 1/2"},
		{"chess", "12. O-O-O# exd8=Q+", "12. O-O-O-O"},
		{"list", "## To do\n- Buy milk x2\n  * call Anna (soon)\n", "## To do\n- Buy milk x0\n"},
		{"record", "ID-AB-123\n> hi there\nnote: a\nb;\nc;\ntags: x1 yz,", "ID-AB-12\n> hi\ntags:"},
		{"kv", "a.b_1 = [1, 'x\\'',[],]\n\"k y\"=\n_=-0.5\n", "a.b_1 = [1, 'x\\'',[],]\n\"\"=\n"},
		{"kv", "k\t=\ttrue\n", "k = 'abcdefghijklmnopqrstu'\n"},
		{"greet", "Привет, Аня! 🌀", "Привет, Аня! 🍀"},
		{"greet", "こんにちは, 世界。", "こんにちは, 世界世界。"},
	}
	for _, tt := range tests {
		ok := langCheckers[tt.name]
		f := langFormat(t, tt.name)
		for _, c := range []struct {
			text string
			want bool
		}{{tt.good, true}, {tt.bad, false}} {
			if got := ok(c.text); got != c.want {
				t.Errorf("%s checker(%q) = %v, want %v", tt.name, c.text, got, c.want)
			}
			if _, got := f.Check([]byte(c.text)); got != c.want {
				t.Errorf("%s.gbnf Check(%q) whole = %v, want %v", tt.name, c.text, got, c.want)
			}
		}
	}
}

// TestLlamaCppSamples: every text llama.cpp b4748's llama-server wrote under a grammar
// of testdata/gbnf-lang (see its README) is taken by specd byte by byte — each prefix
// may go on — and taken whole where llama.cpp ended it; and the checker of the
// grammar's language takes each whole text too. llama.cpp takes a character written
// in too many bytes (F0 82 98 83 for U+2603): specd, which writes only valid UTF-8,
// refuses those and takes the text with the character written right.
func TestLlamaCppSamples(t *testing.T) {
	for name, ok := range langCheckers {
		t.Run(name, func(t *testing.T) {
			f := langFormat(t, name)
			if name == "kv" && !strings.Contains(f.Source(), "\r\n") {
				t.Fatal("kv.gbnf lost its CRLF line ends")
			}
			samples := readSamples(t, filepath.Join("testdata", "gbnf-lang", name+".samples"))
			n, full := 0, 0
			for _, sm := range samples {
				text := []byte(sm.text)
				if sm.whole && !utf8.Valid(text) {
					if _, whole := f.Check(text); whole {
						t.Errorf("%q (not UTF-8) taken whole", text)
					}
					fixed, changed := fixOverlong(text)
					if !changed {
						t.Errorf("%q is not UTF-8 but has no overlong character", text)
					}
					text = fixed
				}
				s := f.rules.start()
				for i, b := range text {
					if s = f.rules.step(s, b); s.set == nil {
						t.Errorf("%q: refused at byte %d, after %q", text, i, text[:i])
						break
					}
				}
				if sm.whole {
					full++
					if !s.whole() {
						t.Errorf("%q: llama.cpp ended it, specd does not take it whole", text)
					}
					if !ok(string(text)) {
						t.Errorf("%q: llama.cpp ended it, the checker refuses it", text)
					}
				}
				n++
			}
			if n < 20 || full < n/2 {
				t.Fatalf("%d samples, %d whole: want the file's", n, full)
			}
		})
	}
}

type llamaSample struct {
	whole bool
	text  string
}

func readSamples(t *testing.T, path string) []llamaSample {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []llamaSample
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		kind, q, _ := strings.Cut(sc.Text(), "\t")
		text, err := strconv.Unquote(q)
		if err != nil || kind != "whole" && kind != "prefix" {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		out = append(out, llamaSample{kind == "whole", text})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fixOverlong rewrites each character written in more bytes than UTF-8 allows in the
// fewest, and reports whether there was one.
func fixOverlong(b []byte) ([]byte, bool) {
	var out []byte
	changed := false
	for len(b) > 0 {
		if r, n := utf8.DecodeRune(b); r != utf8.RuneError || n > 1 {
			out, b = append(out, b[:n]...), b[n:]
			continue
		}
		n := map[byte]int{0xC: 2, 0xD: 2, 0xE: 3, 0xF: 4}[b[0]>>4]
		if n == 0 || len(b) < n {
			return nil, false
		}
		r := rune(b[0]) & (0x7F >> n)
		for _, c := range b[1:n] {
			if c>>6 != 2 {
				return nil, false
			}
			r = r<<6 | rune(c&0x3F)
		}
		out, b, changed = utf8.AppendRune(out, r), b[n:], true
	}
	return out, changed
}

// specdVocab is the specd models' tokenizer.
func specdVocab(tb testing.TB) *tokenizer.Tokenizer {
	tb.Helper()
	tok, err := ggufvocab.Open(testmodels.ForTest(tb, "specd-draft-q8_0.gguf"))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// generate writes an output under f through the mask, drawing tokens at random over
// tok's vocabulary: half the time any the mask leaves, half the time one of those
// that are a single ASCII character that is not a letter (so that strings and
// groups close), and the end, where allowed, an eighth of the time. It reports
// whether the output ended within maxTokens.
func generate(t *testing.T, f Format, tok *tokenizer.Tokenizer, r *rand.Rand, maxTokens int) ([]byte, bool) {
	t.Helper()
	m := f.Grammar(tok).NewMatcher()
	end := tok.EOS()
	logits := make([]float32, tok.VocabSize())
	var out []byte
	var any, short []int32
	for range maxTokens {
		clear(logits)
		m.Mask(logits, []int32{end})
		any, short = any[:0], short[:0]
		endOK := false
		for id, l := range logits {
			if math.IsInf(float64(l), -1) {
				continue
			}
			if id := int32(id); id == end {
				endOK = true
			} else if b := tok.TokenBytes(id); len(b) > 0 {
				any = append(any, id)
				if len(b) == 1 && b[0] < 0x80 && !('a' <= b[0] && b[0] <= 'z' || 'A' <= b[0] && b[0] <= 'Z') {
					short = append(short, id)
				}
			}
		}
		if endOK && (len(any) == 0 || r.IntN(8) == 0) {
			return out, true
		}
		if len(any) == 0 {
			t.Fatalf("the mask leaves no token after %q", out)
		}
		from := any
		if len(short) > 0 && r.IntN(2) == 0 {
			from = short
		}
		id := from[r.IntN(len(from))]
		m.Advance(id)
		out = append(out, tok.TokenBytes(id)...)
	}
	return out, false
}

// TestGenerateLang: outputs drawn through specd's mask at random under each grammar of
// testdata/gbnf-lang are sentences its checker takes.
func TestGenerateLang(t *testing.T) {
	tok := specdVocab(t)
	runs := 100
	if testing.Short() {
		runs = 8
	}
	for name, ok := range langCheckers {
		t.Run(name, func(t *testing.T) {
			f := langFormat(t, name)
			r := rand.New(rand.NewPCG(uint64(len(name)), 7))
			done := 0
			for range runs {
				out, ended := generate(t, f, tok, r, 200)
				if !ended {
					continue
				}
				done++
				if !utf8.Valid(out) || !ok(string(out)) {
					t.Errorf("specd wrote %q, which the checker refuses", out)
				}
			}
			if done < runs/3 {
				t.Errorf("%d of %d outputs ended", done, runs)
			}
			t.Logf("%d of %d outputs ended", done, runs)
		})
	}
}
