package grammar

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// RegexFormat asks for text that the regular expression pattern matches whole (as
// vLLM's guided_regex, outlines and xgrammar read it, Python's syntax): literals and
// escapes (\n \t \r \f \v \0 \xHH \uHHHH \UHHHHHHHH, and \ before any punctuation),
// \d \w \s and \D \W \S (ASCII, as Python's re.ASCII), classes [...] [^...] with
// ranges and those escapes, '.' (any character but a newline), groups (...),
// (?:...), (?P<name>...) and (?<name>...) (all matched as plain groups), alternation,
// ? * + {m} {m,} {,n} {m,n} (a '{' that begins none of those is itself), lazy
// quantifiers (matched as greedy ones: the language is the same), and ^ and $ only
// at the start and the end. Anything else — back-references, look-arounds, word
// boundaries, inline flags, atomic groups, possessive quantifiers, Unicode property
// classes — is refused with an error naming it. Errors wrap ErrGrammar; a
// *SyntaxError says where (the column in characters). A repetition of something that
// may be empty ((a?)*) is refused, as in GBNF, and so are groups nested more than
// maxDepth deep and a pattern that matches no text ([^\s\S]).
func RegexFormat(pattern string) (Format, error) {
	if len(pattern) > MaxSourceBytes {
		return Format{}, fmt.Errorf("%w: pattern of %d bytes: at most %d", ErrGrammar, len(pattern), MaxSourceBytes)
	}
	if !utf8.ValidString(pattern) {
		return Format{}, fmt.Errorf("%w: the pattern is not valid UTF-8", ErrGrammar)
	}
	if pattern == "" {
		return Format{}, fmt.Errorf("%w: an empty pattern (the output could only be empty)", ErrGrammar)
	}
	x := &regex{reader: &reader{src: pattern}, b: newBuilder()}
	root, err := x.b.fresh(srcPos{src: pattern}, "pattern")
	if err != nil {
		return Format{}, err
	}
	alts, err := x.alternates(0)
	if err != nil {
		return Format{}, err
	}
	if !x.end() { // a ')' with no '('
		return Format{}, x.pos().errorf("unbalanced ')'")
	}
	if err := x.b.define(root, alts, srcPos{src: pattern}); err != nil {
		return Format{}, err
	}
	rs, err := x.b.link(root)
	if err != nil {
		return Format{}, err
	}
	rs.source = pattern
	return Format{kind: Regex, rules: rs}, nil
}

type regex struct {
	*reader
	b *builder
	// ecma reads the pattern as ECMA-262 (a JSON Schema pattern) rather than Python:
	// '.' and \s as ECMA's, [] and [^] empty and any, {,n} literal text, and no \a or
	// \U. anchors are then, per alternative at the top, whether it began with '^' and
	// ended with '$' (a guided regex matches whole, so they mean nothing there).
	ecma    bool
	anchors []anchor
}

type anchor struct{ start, end bool }

// Classes of \d \w \s, ASCII as Python's re.ASCII reads them (\s: space, \t \n \r \f \v).
var (
	digitClass = []span{{'0', '9'}}
	wordClass  = []span{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}
	spaceClass = []span{{'\t', '\r'}, {' ', ' '}}
	dotClass   = normalize([]span{{'\n', '\n'}}, true)
	// ECMA-262's: '.' is any character but the line terminators, \s white space and
	// line terminators (§22.2.2.9, WhiteSpace and LineTerminator).
	ecmaDotClass   = normalize([]span{{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}, true)
	ecmaSpaceClass = normalize([]span{{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}}, false)
)

func (x *regex) alternates(depth int) ([][]sym, error) {
	var alts [][]sym
	for {
		seq, err := x.sequence(depth)
		if err != nil {
			return nil, err
		}
		alts = append(alts, seq)
		if x.peek(0) != '|' {
			return alts, nil
		}
		x.i++
	}
}

func (x *regex) sequence(depth int) ([]sym, error) {
	var seq []sym
	last := -1
	start := x.i
	if depth == 0 {
		x.anchors = append(x.anchors, anchor{})
	}
	for !x.end() {
		p := x.pos()
		c := x.src[x.i]
		var item []sym
		switch c {
		case '|', ')':
			return seq, nil
		case '^':
			if depth > 0 || x.i != start {
				return nil, p.errorf("'^' only at the start of the pattern")
			}
			x.i++
			x.anchors[len(x.anchors)-1].start = true
			continue
		case '$':
			x.i++
			if depth > 0 || !(x.end() || x.peek(0) == '|') {
				return nil, p.errorf("'$' only at the end of the pattern")
			}
			x.anchors[len(x.anchors)-1].end = true
			continue
		case '(':
			var err error
			if item, err = x.group(depth); err != nil {
				return nil, err
			}
		case '[':
			cls, err := x.class()
			if err != nil {
				return nil, err
			}
			item = []sym{charSym(cls)}
		case '.':
			x.i++
			item = []sym{charSym(dotClass)}
			if x.ecma {
				item = []sym{charSym(ecmaDotClass)}
			}
		case '*', '+', '?':
			return nil, p.errorf("nothing to repeat before %q", c)
		case '{':
			if _, _, n := x.braces(); n > 0 {
				return nil, p.errorf("nothing to repeat before %q", x.src[x.i:x.i+n])
			}
			x.i++
			item = []sym{charSym([]span{{'{', '{'}})}
		case '\\':
			cls, err := x.escape(false)
			if err != nil {
				return nil, err
			}
			item = []sym{charSym(cls)}
		default:
			r, n := utf8.DecodeRuneInString(x.src[x.i:])
			x.i += n
			item = []sym{charSym([]span{{r, r}})}
		}
		last, seq = len(seq), append(seq, item...)
		for {
			q, from := x.pos(), x.i
			lo, hi, ok := x.quantifier()
			if !ok {
				break
			}
			switch x.peek(0) {
			case '?':
				x.i++ // lazy: the same language
			case '+':
				return nil, q.errorf("possessive quantifiers (%s+) are not supported", x.src[from:x.i])
			}
			var err error
			if seq, err = x.repeat(seq, last, lo, hi, q); err != nil {
				return nil, err
			}
			if c := x.peek(0); c == '*' || c == '+' || c == '?' {
				return nil, x.pos().errorf("multiple repeat: %q after a quantifier", c)
			}
		}
	}
	return seq, nil
}

// quantifier reads * + ? or a {...} repetition at the reader; not ok (and not moved)
// for anything else.
func (x *regex) quantifier() (lo, hi int, ok bool) {
	switch x.peek(0) {
	case '*':
		x.i++
		return 0, -1, true
	case '+':
		x.i++
		return 1, -1, true
	case '?':
		x.i++
		return 0, 1, true
	case '{':
		lo, hi, n := x.braces()
		x.i += n
		return lo, hi, n > 0
	}
	return 0, 0, false
}

func (x *regex) repeat(seq []sym, last, lo, hi int, p srcPos) ([]sym, error) {
	item, err := x.b.repeat(append([]sym(nil), seq[last:]...), lo, hi, p)
	if err != nil {
		return nil, err
	}
	return append(seq[:last], item...), nil
}

// braces reads {m} {m,} {,n} {m,n} at the reader without moving it: the bounds and its
// length in bytes, or n = 0 when the brace begins none of them (and is a literal '{').
func (x *regex) braces() (lo, hi, n int) {
	rest := x.src[x.i:]
	end := strings.IndexByte(rest, '}')
	if end < 0 {
		return 0, 0, 0
	}
	body := rest[1:end]
	a, b, comma := strings.Cut(body, ",")
	num := func(s string) (int, bool) {
		if s == "" || len(s) > 9 || strings.Trim(s, "0123456789") != "" {
			return 0, false
		}
		v, _ := strconv.Atoi(s)
		return v, true
	}
	var ok bool
	switch {
	case !comma:
		if lo, ok = num(a); !ok {
			return 0, 0, 0
		}
		hi = lo
	case a == "" && (b == "" || x.ecma): // {,n} is a quantifier in Python alone
		return 0, 0, 0
	default:
		if a != "" {
			if lo, ok = num(a); !ok {
				return 0, 0, 0
			}
		}
		hi = -1
		if b != "" {
			if hi, ok = num(b); !ok {
				return 0, 0, 0
			}
		}
	}
	return lo, hi, end + 1
}

// group reads (...) and the kinds of (?...) that are groups.
func (x *regex) group(depth int) ([]sym, error) {
	p := x.pos()
	if depth >= maxDepth {
		return nil, p.errorf("groups nested more than %d deep", maxDepth)
	}
	x.i++
	if x.peek(0) == '?' {
		rest := x.src[x.i+1:]
		switch {
		case strings.HasPrefix(rest, ":"):
			x.i += 2
		case strings.HasPrefix(rest, "P<") || strings.HasPrefix(rest, "<") && !strings.HasPrefix(rest, "<=") && !strings.HasPrefix(rest, "<!"):
			end := strings.IndexByte(rest, '>')
			if end < 0 {
				return nil, p.errorf("a group name that does not end")
			}
			x.i += 1 + end + 1
		case strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, "!"):
			return nil, p.errorf("look-arounds ((?%s...)) are not supported", rest[:1])
		case strings.HasPrefix(rest, "<=") || strings.HasPrefix(rest, "<!"):
			return nil, p.errorf("look-arounds ((?%s...)) are not supported", rest[:2])
		case strings.HasPrefix(rest, "P="):
			return nil, p.errorf("back-references ((?P=name)) are not supported")
		case strings.HasPrefix(rest, ">"):
			return nil, p.errorf("atomic groups ((?>...)) are not supported")
		case strings.HasPrefix(rest, "#"):
			return nil, p.errorf("comments ((?#...)) are not supported")
		case strings.HasPrefix(rest, "("):
			return nil, p.errorf("conditional groups ((?(...)...)) are not supported")
		default:
			return nil, p.errorf("inline flags and other (?...) constructs are not supported")
		}
	}
	alts, err := x.alternates(depth + 1)
	if err != nil {
		return nil, err
	}
	if x.peek(0) != ')' {
		return nil, p.errorf("missing ')' for this group")
	}
	x.i++
	return x.b.group(alts, p)
}

// class reads [...] or [^...]; a ']' first is itself, as in Python.
func (x *regex) class() ([]span, error) {
	p := x.pos()
	x.i++
	neg := x.peek(0) == '^'
	if neg {
		x.i++
	}
	var spans []span
	first := !x.ecma // in ECMA-262 a ']' first ends the class: [] is empty, [^] any
	for first || x.peek(0) != ']' {
		if x.end() {
			return nil, p.errorf("a character class that does not end")
		}
		first = false
		lo, single, err := x.classChar()
		if err != nil {
			return nil, err
		}
		if single && x.peek(0) == '-' && x.peek(1) != ']' && x.i+1 < len(x.src) {
			x.i++
			q, from := x.pos(), x.i
			hi, single2, err := x.classChar()
			if err != nil {
				return nil, err
			}
			if !single2 {
				return nil, q.errorf("a range that ends in a class (%s)", x.src[from:x.i])
			}
			if hi[0].lo < lo[0].lo {
				return nil, q.errorf("range %q-%q: the end is below the start", lo[0].lo, hi[0].lo)
			}
			spans = append(spans, span{lo[0].lo, hi[0].lo})
			continue
		}
		spans = append(spans, lo...)
	}
	x.i++
	return normalize(spans, neg), nil
}

// classChar reads one member of a class: a character (single) or an escape class.
func (x *regex) classChar() ([]span, bool, error) {
	if x.src[x.i] == '\\' {
		if c := x.peek(1); c == 'b' {
			x.i += 2
			return []span{{'\b', '\b'}}, true, nil // a backspace, inside a class
		}
		cls, err := x.escape(true)
		return cls, err == nil && len(cls) == 1 && cls[0].lo == cls[0].hi, err
	}
	r, n := utf8.DecodeRuneInString(x.src[x.i:])
	x.i += n
	return []span{{r, r}}, true, nil
}

// escape reads \... as the class it stands for.
func (x *regex) escape(inClass bool) ([]span, error) {
	p := x.pos()
	if x.i+1 >= len(x.src) {
		return nil, p.errorf("a '\\' at the end of the pattern")
	}
	x.i++
	c, n := utf8.DecodeRuneInString(x.src[x.i:])
	x.i += n
	one := func(r rune) ([]span, error) { return []span{{r, r}}, nil }
	switch c {
	case 'd':
		return digitClass, nil
	case 'D':
		return normalize(digitClass, true), nil
	case 'w':
		return wordClass, nil
	case 'W':
		return normalize(wordClass, true), nil
	case 's':
		if x.ecma {
			return ecmaSpaceClass, nil
		}
		return spaceClass, nil
	case 'S':
		if x.ecma {
			return normalize(ecmaSpaceClass, true), nil
		}
		return normalize(spaceClass, true), nil
	case 'n':
		return one('\n')
	case 't':
		return one('\t')
	case 'r':
		return one('\r')
	case 'f':
		return one('\f')
	case 'v':
		return one('\v')
	case 'a':
		if x.ecma {
			return nil, p.errorf("unknown escape \\a")
		}
		return one('\a')
	case '0':
		return one(0)
	case 'u':
		if x.ecma && x.peek(0) == '{' { // \u{1F600}
			end := strings.IndexByte(x.src[x.i:], '}')
			digits := ""
			if end > 0 {
				digits = x.src[x.i+1 : x.i+end]
			}
			v, err := strconv.ParseUint(digits, 16, 32)
			if end < 0 || digits == "" || len(digits) > 6 || err != nil {
				return nil, p.errorf("a \\u{...} escape of 1-6 hex digits")
			}
			x.i += end + 1
			r, err := codePoint(rune(v), p)
			if err != nil {
				return nil, err
			}
			return one(r)
		}
		r, err := x.hex(4)
		if err != nil {
			return nil, err
		}
		return one(r)
	case 'U':
		if x.ecma {
			return nil, p.errorf("unknown escape \\U (ECMA-262 writes \\u{...})")
		}
		fallthrough
	case 'x':
		size := map[rune]int{'x': 2, 'u': 4, 'U': 8}[c]
		r, err := x.hex(size)
		if err != nil {
			return nil, err
		}
		return one(r)
	case 'b', 'B':
		return nil, p.errorf("word boundaries (\\%c) are not supported", c)
	case 'A', 'Z', 'z', 'G':
		if x.ecma {
			return nil, p.errorf("anchors (\\%c) are not supported: only ^ and $", c)
		}
		return nil, p.errorf("anchors (\\%c) are not supported: the pattern matches the whole output", c)
	case 'p', 'P':
		return nil, p.errorf("Unicode property classes (\\%c{...}) are not supported", c)
	case 'k':
		return nil, p.errorf("back-references (\\k<name>) are not supported")
	}
	if c >= '1' && c <= '9' {
		return nil, p.errorf("back-references (\\%c) are not supported", c)
	}
	if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return nil, p.errorf("unknown escape \\%c", c)
	}
	return one(c) // \ before punctuation or any other character: itself
}
