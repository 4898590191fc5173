package grammar

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// RegexFormat asks for text that the regular expression pattern matches whole (as
// vLLM's guided_regex, outlines and xgrammar read it, Python's syntax): literals and
// escapes (\n \t \r \f \v \a \xHH \uHHHH \UHHHHHHHH, Python's octal \0, \0oo and \ooo,
// and \ before any punctuation), \d \w \s and \D \W \S, classes [...] [^...] with
// ranges and those escapes, '.' (any character but a newline), groups (...), (?:...),
// (?P<name>...) and (?<name>...) (all matched as plain groups), comments (?#...), the
// inline flags i, s, a, m and u, global at the start ((?i)) or scoped ((?i-s:...)),
// alternation, ? * + {m} {m,} {,n} {m,n} {,} (a '{' that begins none of those is
// itself), lazy quantifiers (matched as greedy ones: the language is the same), and ^
// \A and $ \Z where the output begins and ends (in groups there too: (^a|^b)c$); a
// place where Python's would make an alternative impossible (a(^b|c), (a$)b) is an
// error.
// \d \w \s are ASCII (as with re.ASCII); \D \W \S, and classes that negate \d \w \s,
// leave out what Python's Unicode reading of \d \w \s holds too: an output is one
// re.fullmatch takes with and without re.ASCII; so too with i, which folds the case of
// ASCII letters, and in a negated class leaves out every case Unicode pairs. Anything
// else — back-references, look-arounds, word boundaries, the flags x and L, atomic
// groups, possessive quantifiers,
// Unicode property classes, \N{...} — is refused with an error naming it, and so is
// a quantifier on a quantifier (a{2}{3}), as Python refuses it. Errors wrap
// ErrGrammar; a *SyntaxError says where (the column in characters). A repetition of
// something that may be empty ((a?)*) is one of its non-empty texts repeated (unlike
// GBNF, which refuses it); groups nested more than maxDepth deep and a pattern that
// matches no text ([^\s\S]) are refused.
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
	alts, _, err := x.alternates(0, true)
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
	b  *builder
	fl flags
	// globalEnd is where the global flag groups at the pattern's start end.
	globalEnd int
	// classes are the classes read so far, by their text and the flags that read
	// them: a class of Unicode's complements ([^\w], (?i)[^a-z]) is hundreds of spans
	// to sort, and a pattern may repeat it thousands of times. Its slices are shared,
	// never changed.
	classes map[classKey][]span
	// ecma reads the pattern as ECMA-262 (a JSON Schema pattern, pattern.go) rather
	// than Python: '.' and \s as ECMA's, [] and [^] empty and any, \cX, \u{...}, counts
	// of any size, {,n} refused (text in ECMA-262 without u, a count in Python), ^ and
	// $ outside groups alone, and no inline flags, comments, \a, \U, \A or \Z.
	// anchors are then, per alternative at the top, whether it began with '^' and ended
	// with '$' (a guided regex matches whole, so they mean nothing there).
	ecma    bool
	anchors []anchor
}

// classKey is a class's text and the flags it was read with.
type classKey struct {
	text string
	fl   flags
}

type anchor struct{ start, end bool }

// flags are Python's inline flags in force: i (fold case), s (. takes a newline too),
// a (\d \w \s and case folding ASCII only). m and u change nothing here: ^ and $
// stand only at the ends, and a str pattern is Unicode already.
type flags struct{ fold, dotAll, ascii bool }

// lit returns the class of a literal character (or range) c: with case folded, its
// other cases too — ASCII's and Unicode's simple folding, and what both readings
// hold, so Unicode's only where c is the complement of a class (uni).
func (x *regex) lit(c []span, uni bool) []span {
	if !x.fl.fold {
		return c
	}
	return folded(c, x.fl.ascii || !uni)
}

// folded returns c with every character's other cases: with ascii the ASCII letters'
// (as Python's re.IGNORECASE with re.ASCII), else Unicode's simple case folding and
// the pairs Python's re adds to it (pyFoldExtra: i and ı, …), then the characters whose
// lower, upper or title case is in c so folded, and so on until nothing is added (a
// little more than Python's re.IGNORECASE takes, never less).
func folded(c []span, ascii bool) []span {
	out := slices.Clone(c)
	if ascii {
		for _, s := range c {
			if lo, hi := max(s.lo, 'A'), min(s.hi, 'Z'); lo <= hi {
				out = append(out, span{lo + 'a' - 'A', hi + 'a' - 'A'})
			}
			if lo, hi := max(s.lo, 'a'), min(s.hi, 'z'); lo <= hi {
				out = append(out, span{lo - ('a' - 'A'), hi - ('a' - 'A')})
			}
		}
		return normalize(out, false)
	}
	t := casePairs()
	out = normalize(out, false)
	for { // until nothing is added: İ's lower case is i, which Python pairs with ı
		more := normalize(append(slices.Clone(out), t.orbit.from(out)...), false)
		more = normalize(append(more, t.cases.from(more)...), false)
		if slices.Equal(more, out) {
			return out
		}
		out = more
	}
}

// pairs are characters each paired with another, sorted by the first.
type pairs [][2]rune

// from returns the partners of the characters of c.
func (p pairs) from(c []span) []span {
	var out []span
	for _, s := range c {
		i, _ := slices.BinarySearchFunc(p, s.lo, func(q [2]rune, r rune) int { return int(q[0] - r) })
		for ; i < len(p) && p[i][0] <= s.hi; i++ {
			out = append(out, span{p[i][1], p[i][1]})
		}
	}
	return out
}

// casePairs are, over the characters Unicode gives a case, each one's simple folding
// orbit (orbit) and its lower, upper and title cases both ways (cases); made once.
var casePairs = sync.OnceValue(func() (t struct{ orbit, cases pairs }) {
	for _, cr := range unicode.CaseRanges {
		for r := rune(cr.Lo); r <= rune(cr.Hi); r++ {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				t.orbit = append(t.orbit, [2]rune{r, f})
			}
			for _, c := range []rune{unicode.ToLower(r), unicode.ToUpper(r), unicode.ToTitle(r)} {
				if c != r {
					t.cases = append(t.cases, [2]rune{r, c}, [2]rune{c, r})
				}
			}
		}
	}
	// Python's re also takes as one case the lower-case letters that fold alike
	// although neither is the other's case (its re._casefix, Python 3.11): Unicode's
	// simple folding pairs most of them, not i and ı, ΐ and ΐ, ΰ and ΰ, ﬅ and ﬆ.
	for _, eq := range pyFoldExtra {
		for _, a := range eq {
			for _, b := range eq {
				if a != b && b != 0 {
					t.orbit = append(t.orbit, [2]rune{a, b})
				}
			}
		}
	}
	for _, p := range []pairs{t.orbit, t.cases} {
		slices.SortFunc(p, func(a, b [2]rune) int { return int(a[0] - b[0]) })
	}
	return t
})

// pyFoldExtra are the characters Python's re (re._casefix._EXTRA_CASES) matches as
// one under re.IGNORECASE besides their lower and upper cases; 0 pads a pair.
var pyFoldExtra = [][3]rune{
	{0x69, 0x131}, {0x73, 0x17f}, {0xb5, 0x3bc}, {0x345, 0x3b9, 0x1fbe}, {0x390, 0x1fd3},
	{0x3b0, 0x1fe3}, {0x3b2, 0x3d0}, {0x3b5, 0x3f5}, {0x3b8, 0x3d1}, {0x3ba, 0x3f0},
	{0x3c0, 0x3d6}, {0x3c1, 0x3f1}, {0x3c2, 0x3c3}, {0x3c6, 0x3d5}, {0x432, 0x1c80},
	{0x434, 0x1c81}, {0x43e, 0x1c82}, {0x441, 0x1c83}, {0x442, 0x1c84, 0x1c85},
	{0x44a, 0x1c86}, {0x463, 0x1c87}, {0x1c88, 0xa64b}, {0x1e61, 0x1e9b}, {0xfb05, 0xfb06},
}

// Classes of \d \w \s, ASCII as Python's re.ASCII reads them (\s: space, \t \n \r \f
// \v), and as Python reads them in a str pattern without it (Unicode: \d the decimal
// digits, \w letters and digits and '_', \s Python's str.isspace — taken a little
// wider here where unsure, marks and all numbers in \w). A pattern means the texts
// both readings take (see regexClass): ASCII for \d \w \s, the complement of the
// Unicode sets for \D \W \S, so that an output is matched whole by Python's re.fullmatch
// with and without re.ASCII.
var (
	digitClass = []span{{'0', '9'}}
	wordClass  = []span{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}
	spaceClass = []span{{'\t', '\r'}, {' ', ' '}}
	dotClass   = normalize([]span{{'\n', '\n'}}, true)

	// ECMA-262's: '.' is any character but the line terminators, \s white space and
	// line terminators (§22.2.2.9, WhiteSpace and LineTerminator).
	ecmaDotClass   = normalize([]span{{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}, true)
	ecmaSpaceClass = normalize([]span{{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}}, false)

	uniDigit = tableSpans(unicode.Nd)
	uniWord  = tableSpans(unicode.L, unicode.M, unicode.N, unicode.Pc)
	uniSpace = normalize(append(tableSpans(unicode.White_Space), span{0x1C, 0x1F}), false)
)

// tableSpans returns the code points of the tables as a class.
func tableSpans(ts ...*unicode.RangeTable) []span {
	var c []span
	add := func(lo, hi, stride rune) {
		if stride == 1 {
			c = append(c, span{lo, hi})
			return
		}
		for ; lo <= hi; lo += stride {
			c = append(c, span{lo, lo})
		}
	}
	for _, t := range ts {
		for _, r := range t.R16 {
			add(rune(r.Lo), rune(r.Hi), rune(r.Stride))
		}
		for _, r := range t.R32 {
			add(rune(r.Lo), rune(r.Hi), rune(r.Stride))
		}
	}
	return normalize(c, false)
}

// intersect returns the code points both classes hold.
func intersect(a, b []span) []span {
	var out []span
	for len(a) > 0 && len(b) > 0 {
		lo, hi := max(a[0].lo, b[0].lo), min(a[0].hi, b[0].hi)
		if lo <= hi {
			out = append(out, span{lo, hi})
		}
		if a[0].hi < b[0].hi {
			a = a[1:]
		} else {
			b = b[1:]
		}
	}
	return out
}

// alternates reads alternatives up to a ')' or the end. atStart says they begin where
// the output does (so ^ may open each); ended, that one closed with $ (and so the
// group they are in must end where the output does).
func (x *regex) alternates(depth int, atStart bool) (alts [][]sym, ended bool, err error) {
	for {
		seq, end, err := x.sequence(depth, atStart)
		if err != nil {
			return nil, false, err
		}
		alts, ended = append(alts, seq), ended || end
		if x.peek(0) != '|' {
			return alts, ended, nil
		}
		x.i++
	}
}

// atEnd reports whether the reader stands where an alternative ends: a '|', the end,
// or a group's ')'.
func (x *regex) atEnd(depth int) bool {
	return x.end() || x.peek(0) == '|' || depth > 0 && x.peek(0) == ')'
}

// sequence reads one alternative. ^ and \A may stand only where the output begins
// (atStart, and nothing read before them), $ and \Z only where it ends (nothing after
// them here, and the groups around them at the end of theirs): there they change
// nothing, as the pattern matches the whole output.
func (x *regex) sequence(depth int, atStart bool) (seq []sym, ended bool, err error) {
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
			return seq, ended, nil
		case '^':
			if x.ecma && depth > 0 {
				return nil, false, p.errorf("'^' only at the start of the pattern, outside groups")
			}
			if !atStart || x.i != start {
				return nil, false, p.errorf("'^' only at the start of the pattern")
			}
			x.i++
			start = x.i
			if depth == 0 {
				x.anchors[len(x.anchors)-1].start = true
			}
			continue
		case '$':
			if x.ecma && depth > 0 {
				return nil, false, p.errorf("'$' only at the end of the pattern, outside groups")
			}
			x.i++
			if !x.atEnd(depth) {
				return nil, false, p.errorf("'$' only at the end of the pattern")
			}
			ended = true
			if depth == 0 {
				x.anchors[len(x.anchors)-1].end = true
			}
			continue
		case '(':
			var end bool
			if item, end, err = x.group(depth, atStart && x.i == start); err != nil {
				return nil, false, err
			}
			if item == nil { // a comment or flags: ^ may still come first after them
				if p.off == start {
					start = x.i
				}
				continue
			}
			if end {
				if !x.atEnd(depth) {
					return nil, false, p.errorf("a group with '$' only at the end of the pattern")
				}
				ended = true
			}
		case '[':
			cls, err := x.class()
			if err != nil {
				return nil, false, err
			}
			item = []sym{charSym(cls)}
		case '.':
			x.i++
			item = []sym{charSym(dotClass)}
			switch {
			case x.ecma:
				item = []sym{charSym(ecmaDotClass)}
			case x.fl.dotAll:
				item = []sym{charSym(anyChar)}
			}
		case '*', '+', '?':
			return nil, false, p.errorf("nothing to repeat before %q", c)
		case '{':
			if _, _, n := x.braces(); n > 0 {
				return nil, false, p.errorf("nothing to repeat before %q", x.src[x.i:x.i+n])
			}
			if x.ecma {
				// {,n}: ECMA-262 refuses it with the u flag, reads it as text without,
				// and Python as {0,n}: what the client meant is not known.
				if end := strings.IndexByte(x.src[x.i:], '}'); end > 1 && x.src[x.i+1] == ',' && strings.Trim(x.src[x.i+2:x.i+end], "0123456789") == "" {
					return nil, false, p.errorf("%s is not a quantifier in ECMA-262 (Python reads it as {0,%s}): write {0,%s}, or \\{ for the text", x.src[x.i:x.i+end+1], x.src[x.i+2:x.i+end], x.src[x.i+2:x.i+end])
				}
			}
			x.i++
			item = []sym{charSym([]span{{'{', '{'}})}
		case '\\':
			// \A and \Z are ^ and $ that a newline does not move: at the ends alike.
			switch c := x.peek(1); {
			case x.ecma: // not ECMA-262's: escape refuses them
			case c == 'A':
				if !atStart || x.i != start {
					return nil, false, p.errorf("'\\A' only at the start of the pattern")
				}
				x.i += 2
				start = x.i
				continue
			case c == 'Z':
				x.i += 2
				if !x.atEnd(depth) {
					return nil, false, p.errorf("'\\Z' only at the end of the pattern")
				}
				ended = true
				continue
			}
			ascii, uni, err := x.escape(false)
			if err != nil {
				return nil, false, err
			}
			if len(ascii) == 1 && ascii[0].lo == ascii[0].hi { // one character
				ascii, uni = x.lit(ascii, false), x.lit(uni, true)
			}
			item = []sym{charSym(intersect(ascii, uni))}
		default:
			r, n := utf8.DecodeRuneInString(x.src[x.i:])
			x.i += n
			item = []sym{charSym(x.lit([]span{{r, r}}, false))}
		}
		last, seq = len(seq), append(seq, item...)
		q, from := x.pos(), x.i
		lo, hi, ok := x.quantifier()
		if !ok {
			continue
		}
		switch x.peek(0) {
		case '?':
			x.i++ // lazy: the same language
		case '+':
			return nil, false, q.errorf("possessive quantifiers (%s+) are not supported", x.src[from:x.i])
		}
		if seq, err = x.repeat(seq, last, lo, hi, q); err != nil {
			return nil, false, err
		}
		// Python refuses a quantifier on a quantifier (a** or a{2}{3}).
		r, at := x.i, x.pos()
		if _, _, ok := x.quantifier(); ok {
			return nil, false, at.errorf("multiple repeat: %q after a quantifier", x.src[r:x.i])
		}
	}
	return seq, ended, nil
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

// repeat returns seq with its items from last repeated lo to hi times. An unbounded
// repetition of something that may be empty ((a?)*, (a|)+) is one of its non-empty
// texts, any number of times: the same language, with no loop that reads nothing.
func (x *regex) repeat(seq []sym, last, lo, hi int, p srcPos) ([]sym, error) {
	item := append([]sym(nil), seq[last:]...)
	if hi < 0 && x.b.emptySeq(item) {
		alts, err := x.b.nonEmpty(item, p)
		if err != nil {
			return nil, err
		}
		if len(alts) == 0 { // ()*: the empty text alone
			return seq[:last], nil
		}
		if item, err = x.b.group(alts, p); err != nil {
			return nil, err
		}
		lo = 0
	}
	item, err := x.b.repeat(item, lo, hi, p)
	if err != nil {
		return nil, err
	}
	return append(seq[:last], item...), nil
}

// braces reads {m} {m,} {,n} {m,n} {,} at the reader without moving it: the bounds and
// its length in bytes, or n = 0 when the brace begins none of them (and is a literal
// '{', as "{}" and "{ 2}" are in Python).
func (x *regex) braces() (lo, hi, n int) {
	rest := x.src[x.i:]
	end := strings.IndexByte(rest, '}')
	if end < 0 {
		return 0, 0, 0
	}
	body := rest[1:end]
	a, b, comma := strings.Cut(body, ",")
	num := func(s string) (int, bool) {
		if s == "" || strings.Trim(s, "0123456789") != "" {
			return 0, false
		}
		if len(s) > 9 {
			// Python's re takes no such count; ECMA-262 takes any. A count past
			// maxLength is one no string under a pattern can hold: as good as
			// unbounded for a maximum, and past the bound on elements for a minimum.
			if s = strings.TrimLeft(s, "0"); !x.ecma {
				return 0, false
			} else if len(s) > 9 {
				return maxLength + 1, true
			}
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
	case a == "" && x.ecma: // {,n} and {,}: not a count (sequence refuses them)
		return 0, 0, 0
	default: // {,} is {0,} in Python
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
			if x.ecma && hi > maxLength && lo <= maxLength {
				hi = -1
			}
		}
	}
	return lo, hi, end + 1
}

// group reads (...) and the kinds of (?...) that are groups.
// group reads (...) and the kinds of (?...) that are groups; nil for a comment or
// global flags. atStart and ended are as for alternates.
func (x *regex) group(depth int, atStart bool) (item []sym, ended bool, err error) {
	p := x.pos()
	if depth >= maxDepth {
		return nil, false, p.errorf("groups nested more than %d deep", maxDepth)
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
				return nil, false, p.errorf("a group name that does not end")
			}
			x.i += 1 + end + 1
		case strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, "!"):
			return nil, false, p.errorf("look-arounds ((?%s...)) are not supported", rest[:1])
		case strings.HasPrefix(rest, "<=") || strings.HasPrefix(rest, "<!"):
			return nil, false, p.errorf("look-arounds ((?%s...)) are not supported", rest[:2])
		case strings.HasPrefix(rest, "P="):
			return nil, false, p.errorf("back-references ((?P=name)) are not supported")
		case strings.HasPrefix(rest, ">"):
			return nil, false, p.errorf("atomic groups ((?>...)) are not supported")
		case x.ecma && !strings.HasPrefix(rest, "<") && !strings.HasPrefix(rest, "P<"):
			return nil, false, p.errorf("inline flags, comments and other (?...) constructs are not supported")
		case strings.HasPrefix(rest, "#"):
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return nil, false, p.errorf("a comment ((?#...)) that does not end")
			}
			x.i += 1 + end + 1
			return nil, false, nil
		case strings.HasPrefix(rest, "("):
			return nil, false, p.errorf("conditional groups ((?(...)...)) are not supported")
		default:
			fl, n, global, err := x.flagGroup(p, rest)
			if err != nil {
				return nil, false, err
			}
			x.i += 1 + n
			if global {
				x.fl, x.globalEnd = fl, x.i
				return nil, false, nil
			}
			saved := x.fl
			x.fl = fl
			defer func() { x.fl = saved }()
		}
	}
	alts, ended, err := x.alternates(depth+1, atStart)
	if err != nil {
		return nil, false, err
	}
	if x.peek(0) != ')' {
		return nil, false, p.errorf("missing ')' for this group")
	}
	x.i++
	item, err = x.b.group(alts, p)
	return item, ended, err
}

// flagGroup reads the flags of (?aimsu) or (?aimsu-ims:...) from rest (what follows
// "(?"): the flags then in force, the length read (the ')' or ':' too), and whether
// they hold for the rest of the pattern (global, allowed only at its start, as in
// Python 3.11).
func (x *regex) flagGroup(p srcPos, rest string) (fl flags, n int, global bool, err error) {
	fl = x.fl
	on, a, u := true, false, false
	for n < len(rest) {
		c := rest[n]
		n++
		switch {
		case c == 'i':
			fl.fold = on
		case c == 's':
			fl.dotAll = on
		case c == 'a' && on:
			fl.ascii, a = true, true
		case c == 'u' && on:
			u = true
		case c == 'm':
		case c == 'x':
			return fl, 0, false, p.errorf("verbose patterns ((?x)) are not supported")
		case c == 'L':
			return fl, 0, false, p.errorf("the locale flag ((?L)) is not supported")
		case c == '-' && on:
			on = false
		case c == ':':
			return fl, n, false, nil
		case c == ')' && on && n > 1:
			if p.off != x.globalEnd {
				return fl, 0, false, p.errorf("global flags (%s) only at the start of the pattern", x.src[p.off:p.off+2+n])
			}
			return fl, n, true, nil
		default:
			return fl, 0, false, p.errorf("unknown or unsupported inline flag %q in (?%s", c, rest[:n])
		}
		if a && u {
			return fl, 0, false, p.errorf("inline flags a and u together")
		}
	}
	return fl, 0, false, p.errorf("inline flags that do not end")
}

// class reads [...] or [^...]; a ']' first is itself, as in Python. Read once with
// \d \w \s as ASCII and once as Unicode, it is what both readings hold.
func (x *regex) class() ([]span, error) {
	p := x.pos()
	x.i++
	neg := x.peek(0) == '^'
	if neg {
		x.i++
	}
	var lits, ascii, uni []span // literal characters and ranges; escape classes as read each way
	props := false              // a Unicode property class is one of its members
	// A ']' first is itself in Python; in ECMA-262 it ends the class: [] is empty, [^] any.
	first := !x.ecma
	for first || x.peek(0) != ']' {
		if x.end() {
			return nil, p.errorf("a character class that does not end")
		}
		first = false
		q, from := x.pos(), x.i
		a, u, single, err := x.classChar()
		if err != nil {
			return nil, err
		}
		if x.ecma && (strings.HasPrefix(x.src[from:], `\p`) || strings.HasPrefix(x.src[from:], `\P`)) {
			props = true
		}
		if x.peek(0) == '-' && x.peek(1) != ']' && x.i+1 < len(x.src) {
			if !single {
				return nil, q.errorf("a range that begins with a class (%s)", x.src[from:x.i])
			}
			x.i++
			q, from := x.pos(), x.i
			hi, _, single2, err := x.classChar()
			if err != nil {
				return nil, err
			}
			if !single2 {
				return nil, q.errorf("a range that ends in a class (%s)", x.src[from:x.i])
			}
			if hi[0].lo < a[0].lo {
				return nil, q.errorf("range %q-%q: the end is below the start", a[0].lo, hi[0].lo)
			}
			lits = append(lits, span{a[0].lo, hi[0].lo})
			continue
		}
		if single {
			lits = append(lits, a...)
			continue
		}
		if x.fl.ascii {
			u = a
		}
		ascii, uni = append(ascii, a...), append(uni, u...)
	}
	x.i++
	key := classKey{x.src[p.off:x.i], x.fl}
	if c, ok := x.classes[key]; ok {
		return c, nil
	}
	lits = normalize(lits, false)
	ascii = normalize(append(ascii, x.lit(lits, false)...), neg)
	uni = normalize(append(uni, x.lit(lits, true)...), neg)
	c := slices.Clip(intersect(ascii, uni))
	if neg && props {
		// [^\p{L}] holds no character Go's tables leave unassigned: the client's
		// reading may give it the property (uniprop.go).
		c = intersect(c, assigned())
	}
	if x.classes == nil {
		x.classes = map[classKey][]span{}
	}
	x.classes[key] = c
	return c, nil
}

// classChar reads one member of a class, as ASCII and as Unicode read it: a character
// (single) or an escape class.
func (x *regex) classChar() (ascii, uni []span, single bool, err error) {
	if x.src[x.i] == '\\' {
		if c := x.peek(1); c == 'b' {
			x.i += 2
			b := []span{{'\b', '\b'}} // a backspace, inside a class
			return b, b, true, nil
		}
		ascii, uni, err := x.escape(true)
		return ascii, uni, err == nil && len(ascii) == 1 && ascii[0].lo == ascii[0].hi, err
	}
	r, n := utf8.DecodeRuneInString(x.src[x.i:])
	x.i += n
	c := []span{{r, r}}
	return c, c, true, nil
}

// escape reads \... as the class it stands for, as ASCII and as Unicode read it (the
// same but for \d \D \w \W \s \S).
func (x *regex) escape(inClass bool) (ascii, uni []span, err error) {
	if x.ecma {
		cls, err := x.escapeECMA(inClass)
		return cls, cls, err
	}
	c := x.peek(1)
	ascii, err = x.escapeASCII(inClass)
	uni = ascii
	switch c {
	case 'd':
		uni = uniDigit
	case 'D':
		uni = normalize(uniDigit, true)
	case 'w':
		uni = uniWord
	case 'W':
		uni = normalize(uniWord, true)
	case 's':
		uni = uniSpace
	case 'S':
		uni = normalize(uniSpace, true)
	}
	if x.fl.ascii {
		uni = ascii
	}
	return ascii, uni, err
}

// escapeECMA reads \... as ECMA-262 reads it (with the u flag, as JSON Schema asks):
// where it differs from Python's, then as escapeASCII does.
func (x *regex) escapeECMA(inClass bool) ([]span, error) {
	p := x.pos()
	switch c := x.peek(1); {
	case c == 's' || c == 'S':
		x.i += 2
		return normalize(ecmaSpaceClass, c == 'S'), nil
	case c == 'p' || c == 'P': // \p{L}, \P{Script=Greek}: uniprop.go
		end := strings.IndexByte(x.src[x.i:], '}')
		if x.peek(2) != '{' || end < 0 {
			return nil, p.errorf("\\%c without {...} after it", c)
		}
		body := x.src[x.i+3 : x.i+end]
		cls, why := propertyClass(c == 'P', body)
		if why != "" {
			return nil, p.errorf("Unicode property class \\%c{%s}: %s is not supported", c, body, why)
		}
		x.i += end + 1
		return cls, nil
	case c == 'c': // \cJ: a control character, the letter's code modulo 32
		if l := x.peek(2); l >= 'a' && l <= 'z' || l >= 'A' && l <= 'Z' {
			x.i += 3
			return []span{{rune(l % 32), rune(l % 32)}}, nil
		}
		return nil, p.errorf("\\c without an ASCII letter after it")
	case c == 'a':
		return nil, p.errorf("unknown escape \\a")
	case c == 'U':
		return nil, p.errorf("unknown escape \\U (ECMA-262 writes \\u{...})")
	case c == 'A' || c == 'Z' || c == 'z' || c == 'G':
		return nil, p.errorf("anchors (\\%c) are not supported: only ^ and $", c)
	case c == '0' && !(x.peek(2) >= '0' && x.peek(2) <= '9'):
		x.i += 2
		return []span{{0, 0}}, nil
	case c == '0':
		return nil, p.errorf("octal escapes (\\0%c...) are not supported", x.peek(2))
	case c >= '1' && c <= '9':
		return nil, p.errorf("back-references (\\%c) are not supported", c)
	case c == 'u' && surrogatePair(x.src[x.i:]) >= 0: // \uD83D\uDE00, one character with the u flag
		r := surrogatePair(x.src[x.i:])
		x.i += len(`\uD83D\uDE00`)
		return []span{{r, r}}, nil
	case c == 'u' && x.peek(2) == '{': // \u{1F600}; leading zeros are allowed (\u{0000041})
		end := strings.IndexByte(x.src[x.i:], '}')
		digits := ""
		if end > 3 {
			digits = x.src[x.i+3 : x.i+end]
		}
		v, err := strconv.ParseUint(digits, 16, 32)
		if trimmed := strings.TrimLeft(digits, "0"); digits == "" || len(trimmed) > 6 || err != nil || strings.ContainsAny(digits, "+-_") {
			return nil, p.errorf("a \\u{...} escape of hex digits, at most 10FFFF")
		}
		r, err := codePoint(rune(v), p)
		if err != nil {
			return nil, err
		}
		x.i += end + 1
		return []span{{r, r}}, nil
	}
	return x.escapeASCII(inClass)
}

func (x *regex) escapeASCII(inClass bool) ([]span, error) {
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
		return spaceClass, nil
	case 'S':
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
		return one('\a')
	case '0', '1', '2', '3', '4', '5', '6', '7':
		// Python's octal escapes: \0 and up to two more octal digits, three octal
		// digits, or in a class one to three; otherwise \1 to \99 outside a class are
		// back-references.
		start := x.i - 1
		for x.i-start < 3 && x.peek(0) >= '0' && x.peek(0) <= '7' {
			x.i++
		}
		if c != '0' && !inClass && x.i-start < 3 {
			x.i = start
			for x.i-start < 2 && x.peek(0) >= '0' && x.peek(0) <= '9' {
				x.i++
			}
			return nil, p.errorf("back-references (\\%s) are not supported", x.src[start:x.i])
		}
		v, _ := strconv.ParseUint(x.src[start:x.i], 8, 32)
		if v > 0o377 {
			return nil, p.errorf("octal escape \\%s is above \\377", x.src[start:x.i])
		}
		return one(rune(v))
	case 'x', 'u', 'U':
		size := map[rune]int{'x': 2, 'u': 4, 'U': 8}[c]
		r, err := x.hex(size)
		if err != nil {
			return nil, err
		}
		return one(r)
	case 'b', 'B':
		return nil, p.errorf("word boundaries (\\%c) are not supported", c)
	case 'A', 'Z', 'z', 'G':
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

// surrogatePair returns the character that s begins with when it begins with a UTF-16
// surrogate pair of \u escapes (\uD83D\uDE00 is U+1F600), or -1.
func surrogatePair(s string) rune {
	hex4 := func(s string) rune {
		if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
			return -1
		}
		v, err := strconv.ParseUint(s[2:6], 16, 16)
		if err != nil || strings.ContainsAny(s[2:6], "+-_") {
			return -1
		}
		return rune(v)
	}
	hi, lo := hex4(s), rune(-1)
	if len(s) >= 12 {
		lo = hex4(s[6:])
	}
	if !utf16.IsSurrogate(hi) || hi > 0xDBFF || lo < 0xDC00 || lo > 0xDFFF {
		return -1
	}
	return utf16.DecodeRune(hi, lo)
}
