package chat

import (
	"fmt"
	"slices"
	"strings"
)

// tag is one Jinja tag of a template's source: an expression ({{ }}), a statement
// ({% %}) or a comment ({# #}).
type tag struct {
	kind       byte // '{', '%' or '#'
	start, end int  // the whole tag, delimiters included: src[start:end]
	in, inEnd  int  // its inside, trim markers excluded: src[in:inEnd]
}

// scanTags finds the tags of src, skipping string literals inside tags and the text of
// raw blocks. An unclosed tag is an error naming its line.
func scanTags(src string) ([]tag, error) {
	var tags []tag
	for i := 0; i < len(src); {
		j := strings.IndexByte(src[i:], '{')
		if j < 0 || i+j+1 >= len(src) {
			break
		}
		i += j
		kind := src[i+1]
		if kind != '{' && kind != '%' && kind != '#' {
			i++
			continue
		}
		closer := "}}"
		switch kind {
		case '%':
			closer = "%}"
		case '#':
			closer = "#}"
		}
		end := closeOf(src, i+2, closer, kind != '#')
		if end < 0 {
			return nil, fmt.Errorf("line %d: unclosed %q", lineOf(src, i), src[i:i+2])
		}
		t := tag{kind: kind, start: i, end: end + 2, in: i + 2, inEnd: end}
		if t.in < t.inEnd && (src[t.in] == '-' || src[t.in] == '+') {
			t.in++
		}
		if t.in < t.inEnd && (src[t.inEnd-1] == '-' || src[t.inEnd-1] == '+') {
			t.inEnd--
		}
		tags = append(tags, t)
		i = t.end
		if kind == '%' && strings.TrimSpace(src[t.in:t.inEnd]) == "raw" {
			k := rawEnd(src, i)
			if k < 0 {
				return nil, fmt.Errorf("line %d: raw block without endraw", lineOf(src, t.start))
			}
			i = k
		}
	}
	return tags, nil
}

// closeOf returns the index of closer in src from i, outside string literals when
// quoted is set; -1 when there is none.
func closeOf(src string, i int, closer string, quoted bool) int {
	var q byte
	for ; i+1 < len(src); i++ {
		c := src[i]
		switch {
		case q != 0 && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q != 0:
		case quoted && (c == '\'' || c == '"'):
			q = c
		case c == closer[0] && src[i+1] == closer[1]:
			return i
		}
	}
	return -1
}

// rawEnd returns the end of the {% endraw %} tag that closes a raw block whose text
// starts at i, or -1.
func rawEnd(src string, i int) int {
	for {
		j := strings.Index(src[i:], "{%")
		if j < 0 {
			return -1
		}
		i += j
		end := strings.Index(src[i+2:], "%}")
		if end < 0 {
			return -1
		}
		inner := strings.Trim(src[i+2:i+2+end], "-+ \t\r\n")
		if inner == "endraw" {
			return i + 2 + end + 2
		}
		i += 2
	}
}

func lineOf(src string, i int) int { return strings.Count(src[:i], "\n") + 1 }

// token is a lexical item inside a tag: an identifier, a string literal or one byte of
// punctuation.
type token struct {
	text  string
	ident bool
	pos   int // offset in the source
}

// lex splits the inside of a tag into tokens (string literals become one token each).
func lex(src string, from, to int) []token {
	var out []token
	for i := from; i < to; {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			j := i + 1
			for j < to && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, to)
			out = append(out, token{text: src[i:j], pos: i})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < to && (isIdentStart(src[j]) || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			out = append(out, token{text: src[i:j], ident: true, pos: i})
			i = j
		default:
			out = append(out, token{text: src[i : i+1], pos: i})
			i++
		}
	}
	return out
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// edit replaces src[pos:pos+del] with ins.
type edit struct {
	pos, del int
	ins      string
}

// rewrite returns src with every application of the filter from ("| from") renamed to
// to, and the iterable of every for loop passed through the function guard:
// "{% for x in xs if c %}" becomes "{% for x in guard(xs) if c %}". The iterable ends
// where a top-level if or recursive begins, as Jinja parses it (no conditional
// expression there). Text outside tags, comments and string literals are left alone.
func rewrite(src string, tags []tag, from, to, guard string) string {
	var edits []edit
	for _, t := range tags {
		if t.kind == '#' {
			continue
		}
		toks := lex(src, t.in, t.inEnd)
		for k := 1; k < len(toks); k++ {
			if toks[k].ident && toks[k].text == from && toks[k-1].text == "|" {
				edits = append(edits, edit{toks[k].pos, len(from), to})
			}
		}
		if t.kind != '%' || len(toks) == 0 || toks[0].text != "for" {
			continue
		}
		depth, first, last := 0, -1, -1
	scan:
		for k := 1; k < len(toks); k++ {
			tk := toks[k]
			switch {
			case tk.text == "(" || tk.text == "[" || tk.text == "{":
				depth++
			case tk.text == ")" || tk.text == "]" || tk.text == "}":
				depth--
			case depth == 0 && tk.ident && first < 0 && tk.text == "in":
				first = k + 1
				continue
			case depth == 0 && tk.ident && first >= 0 && (tk.text == "if" || tk.text == "recursive"):
				break scan
			}
			if first >= 0 {
				last = k
			}
		}
		if first < 0 || last < first {
			continue // not a loop the engine will parse: it reports the error
		}
		end := toks[last].pos + len(toks[last].text)
		edits = append(edits, edit{toks[first].pos, 0, guard + "("}, edit{end, 0, ")"})
	}
	slices.SortStableFunc(edits, func(a, b edit) int { return a.pos - b.pos })
	var sb strings.Builder
	last := 0
	for _, e := range edits {
		sb.WriteString(src[last:e.pos])
		sb.WriteString(e.ins)
		last = e.pos + e.del
	}
	sb.WriteString(src[last:])
	return sb.String()
}

// globals are the callables a macro may call besides the macros defined before it.
var globals = map[string]bool{
	"range": true, "namespace": true, "dict": true, "joiner": true, "cycler": true, "lipsum": true,
	"raise_exception": true, "strftime_now": true, "caller": true,
}

// keywords precede a parenthesis without calling anything.
var keywords = map[string]bool{
	"if": true, "elif": true, "else": true, "in": true, "not": true, "and": true, "or": true, "is": true,
	"for": true, "set": true, "call": true, "with": true, "return": true, "recursive": true,
}

// checkMacros refuses a template whose macros could recurse, since the engine would
// recurse until the Go stack overflows, which kills the process. Inside a macro's body
// every call must name a macro whose definition ended before the call, or a global;
// no macro name may be bound again (set, for, a parameter), so that a name keeps
// meaning the macro checked; and macro names are unique.
func checkMacros(src string, tags []tag) error {
	macros := map[string]bool{}
	for _, t := range tags {
		toks := lex(src, t.in, t.inEnd)
		if t.kind == '%' && len(toks) > 1 && toks[0].text == "macro" && toks[1].ident {
			if macros[toks[1].text] {
				return fmt.Errorf("line %d: macro %s is defined twice", lineOf(src, t.start), toks[1].text)
			}
			macros[toks[1].text] = true
		}
	}
	if len(macros) == 0 {
		return nil
	}
	var open []string // macros being defined, innermost last
	done := map[string]bool{}
	for _, t := range tags {
		if t.kind == '#' {
			continue
		}
		toks := lex(src, t.in, t.inEnd)
		line := lineOf(src, t.start)
		if t.kind == '%' && len(toks) > 0 {
			switch toks[0].text {
			case "macro":
				if len(toks) < 2 {
					continue
				}
				for _, name := range bound(toks[2:], "=") {
					if macros[name] {
						return fmt.Errorf("line %d: macro %s has a parameter named like macro %s", line, toks[1].text, name)
					}
				}
				open = append(open, toks[1].text)
				continue
			case "endmacro":
				if len(open) > 0 {
					done[open[len(open)-1]] = true
					open = open[:len(open)-1]
				}
				continue
			case "set", "for", "with":
				for _, name := range bound(toks[1:], "=", "in") {
					if macros[name] {
						return fmt.Errorf("line %d: %s binds %s, the name of a macro", line, toks[0].text, name)
					}
				}
			}
		}
		if len(open) == 0 {
			continue
		}
		for k, tk := range toks {
			if !tk.ident || k+1 >= len(toks) || toks[k+1].text != "(" || keywords[tk.text] {
				continue
			}
			if k > 0 && (toks[k-1].text == "." || toks[k-1].text == "|" || toks[k-1].text == "is") {
				continue
			}
			if k > 1 && toks[k-1].text == "not" && toks[k-2].text == "is" {
				continue
			}
			if globals[tk.text] || done[tk.text] {
				continue
			}
			return fmt.Errorf("line %d: macro %s calls %s, which is not a macro defined before it: recursive macros are not supported", line, open[len(open)-1], tk.text)
		}
	}
	return nil
}

// bound returns the bare names a statement binds: the identifiers before the first of
// stops at parenthesis depth 0 (set x, y = …; for k, v in …), or, for a macro's
// parameter list, those at depth 1 not after a stop.
func bound(toks []token, stops ...string) []string {
	var names []string
	depth := 0
	afterStop := false
	for k, tk := range toks {
		switch tk.text {
		case "(", "[":
			depth++
			continue
		case ")", "]":
			depth--
			afterStop = false
			continue
		case ",":
			if depth <= 1 {
				afterStop = false
			}
			continue
		}
		for _, s := range stops {
			if tk.text == s {
				if depth == 0 {
					return names
				}
				afterStop = true
			}
		}
		if tk.ident && !afterStop && (k == 0 || toks[k-1].text != ".") && !keywords[tk.text] {
			names = append(names, tk.text)
		}
	}
	return names
}
