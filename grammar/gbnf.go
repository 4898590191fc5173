package grammar

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxSourceBytes bounds the text of a grammar or a pattern.
const MaxSourceBytes = 1 << 20

// maxDepth bounds how deep groups nest in a grammar or a pattern: the parsers recurse
// into each.
const maxDepth = 1000

// GBNFFormat asks for text that is a sentence of a GBNF grammar, llama.cpp's format:
// rules "name ::= alternatives" (names of letters, digits and '-'; a rule ends at the
// end of its line unless a parenthesis is open or the line ends with '|'), "root" the
// start, rules used before their definition; literals "..." and character classes
// [a-z0-9] and [^...] with the escapes \n \t \r \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH
// (each a code point); '.' any character, a newline too; groups ( ); alternation |;
// repetition * + ? {m} {m,} {m,n} of the element before; comments from '#' to the end
// of the line. Characters are Unicode code points and the output must be valid UTF-8;
// a token may end inside a character. U+0000 is never written, as llama.cpp never
// writes it ('.' and classes leave it out).
//
// A grammar llama.cpp b4748 takes is taken alike, and means the same text, except: a
// rule defined twice (llama.cpp keeps the last), a reversed range [z-a] or an escape
// of a surrogate or past U+10FFFF (llama.cpp's never match), an empty class [] or [^]
// (llama.cpp's is no text at all), a literal U+0000 (llama.cpp dies on it), and the
// grammars refused for their cost. \- is taken, as llama.cpp reads it after b4748; its
// later token references (<[id]>, <token>, !<...>) are refused by name. llama.cpp
// writes bytes that are not UTF-8 where the code point they would decode to fits (a
// surrogate, past U+10FFFF, a character in too many bytes); specd does not. The errors
// wrap ErrGrammar, and a *SyntaxError names the line and column: an undefined rule, no
// root, left recursion (a rule that reaches itself before reading a character, as
// ("a"?)* does), more than maxElems elements once repetitions are written out or
// maxRules rules, groups nested more than maxDepth deep, a rule that opens more than
// maxStacks alternatives at once, or a root no text completes. An alternative no text
// completes ("a" [^\x01-\U0010FFFF] or one that recurses for ever) is dropped: it
// could only lead where nothing, not even the end, may come.
func GBNFFormat(src string) (Format, error) {
	rs, err := parseGBNF(src)
	if err != nil {
		return Format{}, err
	}
	rs.source = src
	return Format{kind: GBNF, rules: rs}, nil
}

func parseGBNF(src string) (*ruleSet, error) {
	if len(src) > MaxSourceBytes {
		return nil, fmt.Errorf("%w: %d bytes: at most %d", ErrGrammar, len(src), MaxSourceBytes)
	}
	p := &reader{src: src}
	if !utf8.ValidString(src) {
		i := 0
		for i < len(src) {
			r, n := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return nil, p.at(i).errorf("not valid UTF-8")
	}
	g := &gbnf{reader: p, b: newBuilder()}
	g.space(true)
	for !g.end() {
		if err := g.rule(); err != nil {
			return nil, err
		}
	}
	root, ok := g.b.byName["root"]
	if !ok || !g.b.rules[root].defined {
		return nil, fmt.Errorf("%w: no rule named root (the start of the grammar)", ErrGrammar)
	}
	return g.b.link(root)
}

// reader reads text and says where it is.
type reader struct {
	src string
	i   int
}

func (r *reader) end() bool { return r.i >= len(r.src) }

// peek returns the byte at i+k, or 0 past the end.
func (r *reader) peek(k int) byte {
	if r.i+k < len(r.src) {
		return r.src[r.i+k]
	}
	return 0
}

// at returns the place of byte offset i.
func (r *reader) at(i int) srcPos { return srcPos{src: r.src, off: i} }

func (r *reader) pos() srcPos { return r.at(r.i) }

// found describes what stands at the reader, for an error.
func (r *reader) found() string {
	if r.end() {
		return "the end"
	}
	c, _ := utf8.DecodeRuneInString(r.src[r.i:])
	return strconv.QuoteRune(c)
}

// hex reads n hex digits as a code point.
func (r *reader) hex(n int) (rune, error) {
	p := r.pos()
	if r.i+n > len(r.src) {
		return 0, p.errorf("want %d hex digits", n)
	}
	v, err := strconv.ParseUint(r.src[r.i:r.i+n], 16, 32)
	if err != nil || strings.ContainsAny(r.src[r.i:r.i+n], "+-_") {
		return 0, p.errorf("want %d hex digits, found %q", n, r.src[r.i:r.i+n])
	}
	r.i += n
	return codePoint(rune(v), p)
}

func codePoint(c rune, p srcPos) (rune, error) {
	if c > maxRune || c >= 0xD800 && c <= 0xDFFF {
		return 0, p.errorf("U+%04X is not a character", c)
	}
	return c, nil
}

type gbnf struct {
	*reader
	b     *builder
	depth int // groups open
}

// space skips blanks and comments, and line ends if newlines.
func (g *gbnf) space(newlines bool) {
	for !g.end() {
		switch c := g.src[g.i]; {
		case c == ' ' || c == '\t':
			g.i++
		case c == '#':
			for !g.end() && g.src[g.i] != '\n' && g.src[g.i] != '\r' {
				g.i++
			}
		case newlines && (c == '\n' || c == '\r'):
			g.i++
		default:
			return
		}
	}
}

func isWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func (g *gbnf) name() (string, error) {
	start := g.i
	for !g.end() && isWordChar(g.src[g.i]) {
		g.i++
	}
	if g.i == start {
		return "", g.pos().errorf("want a rule name, found %s", g.found())
	}
	return g.src[start:g.i], nil
}

// rule reads "name ::= alternatives" and the line end after it.
func (g *gbnf) rule() error {
	p := g.pos()
	name, err := g.name()
	if err != nil {
		return err
	}
	g.space(false)
	if !strings.HasPrefix(g.src[g.i:], "::=") {
		return g.pos().errorf("want ::= after the rule name %q, found %s", name, g.found())
	}
	g.i += 3
	g.space(true)
	i, err := g.b.named(name, p)
	if err != nil {
		return err
	}
	alts, err := g.alternates(false)
	if err != nil {
		return err
	}
	switch {
	case g.peek(0) == '\r' && g.peek(1) == '\n':
		g.i += 2
	case g.peek(0) == '\n' || g.peek(0) == '\r':
		g.i++
	case !g.end():
		return g.pos().errorf("want a line end after rule %q, found %s", name, g.found())
	}
	g.space(true)
	return g.b.define(i, alts, p)
}

func (g *gbnf) alternates(nested bool) ([][]sym, error) {
	var alts [][]sym
	for {
		seq, err := g.sequence(nested)
		if err != nil {
			return nil, err
		}
		alts = append(alts, seq)
		if g.peek(0) != '|' {
			return alts, nil
		}
		g.i++
		g.space(true)
	}
}

// sequence reads elements up to an alternation, a closing parenthesis or (not nested)
// a line end.
func (g *gbnf) sequence(nested bool) ([]sym, error) {
	var seq []sym
	last := -1 // where the last element (what a repetition repeats) begins in seq
	for !g.end() {
		p := g.pos()
		switch c := g.src[g.i]; {
		case c == '"':
			g.i++
			last = len(seq)
			for g.peek(0) != '"' {
				if g.end() {
					return nil, p.errorf("a string that does not end")
				}
				q := g.pos()
				r, err := g.char()
				if err != nil {
					return nil, err
				}
				if r == 0 {
					return nil, q.errorf("U+0000 in a literal: llama.cpp never writes it (its matcher stops at a NUL byte)")
				}
				seq = append(seq, charSym([]span{{r, r}}))
			}
			g.i++
		case c == '[':
			cls, err := g.class()
			if err != nil {
				return nil, err
			}
			last, seq = len(seq), append(seq, charSym(cls))
		case isWordChar(c):
			name, _ := g.name()
			r, err := g.b.named(name, p)
			if err != nil {
				return nil, err
			}
			last, seq = len(seq), append(seq, refSym(r))
		case c == '(':
			if g.depth++; g.depth > maxDepth {
				return nil, p.errorf("groups nested more than %d deep", maxDepth)
			}
			g.i++
			g.space(true)
			alts, err := g.alternates(true)
			g.depth--
			if err != nil {
				return nil, err
			}
			if g.peek(0) != ')' {
				line, col := p.lineCol()
				return nil, g.pos().errorf("want ')' to close the group at line %d, column %d, found %s", line, col, g.found())
			}
			g.i++
			item, err := g.b.group(alts, p)
			if err != nil {
				return nil, err
			}
			last, seq = len(seq), append(seq, item...)
		case c == '.':
			g.i++
			last, seq = len(seq), append(seq, charSym(gbnfChars))
		case c == '<' || c == '!' && g.peek(1) == '<':
			// llama.cpp after b4748 reads <[id]>, <token> and !<...> as tokens of its
			// vocabulary; the rules here are over characters.
			return nil, p.errorf("token references (<[id]>, <token>, !<...>) are not supported: write the token's text as a literal")
		case c == '*' || c == '+' || c == '?' || c == '{':
			if last < 0 || last == len(seq) {
				return nil, p.errorf("nothing before %q to repeat", c)
			}
			lo, hi, err := g.times(nested)
			if err != nil {
				return nil, err
			}
			item, err := g.b.repeat(append([]sym(nil), seq[last:]...), lo, hi, p)
			if err != nil {
				return nil, err
			}
			seq = append(seq[:last], item...)
		default:
			return seq, nil
		}
		g.space(nested)
	}
	return seq, nil
}

// times reads a repetition: * + ? {m} {m,} {m,n}; hi < 0 is no bound. Inside the
// braces, as around any element, a line end may stand only within parentheses.
func (g *gbnf) times(nested bool) (lo, hi int, err error) {
	c := g.src[g.i]
	g.i++
	switch c {
	case '*':
		return 0, -1, nil
	case '+':
		return 1, -1, nil
	case '?':
		return 0, 1, nil
	}
	g.space(nested)
	if lo, err = g.count(); err != nil {
		return 0, 0, err
	}
	g.space(nested)
	switch g.peek(0) {
	case '}':
		g.i++
		return lo, lo, nil
	case ',':
		g.i++
		g.space(nested)
		hi = -1
		if c := g.peek(0); c >= '0' && c <= '9' {
			if hi, err = g.count(); err != nil {
				return 0, 0, err
			}
			g.space(nested)
		}
		if g.peek(0) != '}' {
			return 0, 0, g.pos().errorf("want '}' to end the repetition, found %s", g.found())
		}
		g.i++
		return lo, hi, nil
	}
	return 0, 0, g.pos().errorf("want ',' or '}' in the repetition, found %s", g.found())
}

// count reads the number of a repetition.
func (g *gbnf) count() (int, error) {
	p, start := g.pos(), g.i
	for c := g.peek(0); c >= '0' && c <= '9'; c = g.peek(0) {
		g.i++
	}
	if g.i == start {
		return 0, p.errorf("want a number in the repetition, found %s", g.found())
	}
	n, err := strconv.Atoi(g.src[start:g.i])
	if err != nil || n > maxElems {
		return 0, p.errorf("repetition count %s: at most %d", g.src[start:g.i], maxElems)
	}
	return n, nil
}

// char reads one character of a literal or a class, escapes decoded.
func (g *gbnf) char() (rune, error) {
	p := g.pos()
	if g.src[g.i] != '\\' {
		r, n := utf8.DecodeRuneInString(g.src[g.i:])
		g.i += n
		return r, nil
	}
	if g.i+1 >= len(g.src) {
		return 0, p.errorf("an escape at the end")
	}
	c := g.src[g.i+1]
	g.i += 2
	switch c {
	case 'x':
		return g.hex(2)
	case 'u':
		return g.hex(4)
	case 'U':
		return g.hex(8)
	case 't':
		return '\t', nil
	case 'r':
		return '\r', nil
	case 'n':
		return '\n', nil
	case '\\', '"', '[', ']', '-':
		return rune(c), nil
	}
	r, _ := utf8.DecodeRuneInString(g.src[g.i-1:])
	return 0, p.errorf("unknown escape \\%c", r)
}

// gbnfChars are the characters a GBNF grammar may write: all but U+0000, which
// llama.cpp never writes ('.' and [^a] leave it out there, and a literal "\x00" stops
// it).
var gbnfChars = []span{{1, maxRune}}

// class reads [...] or [^...], U+0000 left out.
func (g *gbnf) class() ([]span, error) {
	p := g.pos()
	g.i++
	neg := g.peek(0) == '^'
	if neg {
		g.i++
	}
	if g.peek(0) == ']' {
		return nil, p.errorf("an empty character class %s: llama.cpp reads it as no text at all, not as a character", g.src[p.off:g.i+1])
	}
	var spans []span
	for g.peek(0) != ']' {
		if g.end() {
			return nil, p.errorf("a character class that does not end")
		}
		lo, err := g.char()
		if err != nil {
			return nil, err
		}
		hi := lo
		if g.peek(0) == '-' && g.peek(1) != ']' && g.i+1 < len(g.src) {
			g.i++
			q := g.pos()
			if hi, err = g.char(); err != nil {
				return nil, err
			}
			if hi < lo {
				return nil, q.errorf("range %q-%q: the end is below the start", lo, hi)
			}
		}
		spans = append(spans, span{lo, hi})
	}
	g.i++
	return intersect(normalize(spans, neg), gbnfChars), nil
}
