package chat

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// tag is one Jinja tag of a template's source: an expression ({{ }}), a statement
// ({% %}) or a comment ({# #}).
type tag struct {
	kind        byte // '{', '%' or '#'
	start, end  int  // the whole tag, delimiters included: src[start:end]
	in, inEnd   int  // its inside, trim markers excluded: src[in:inEnd]
	left, right byte // its whitespace control markers, '-' or '+'; 0: none
	// raw is the {% endraw %} tag of a {% raw %} tag; nil for any other tag. The text
	// between them, src[end:raw.start], is output as it is.
	raw *tag
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
		t := markers(tag{kind: kind, start: i, end: end + 2, in: i + 2, inEnd: end}, src)
		i = t.end
		if kind == '%' && strings.TrimSpace(src[t.in:t.inEnd]) == "raw" {
			t.raw = rawEnd(src, i)
			if t.raw == nil {
				return nil, fmt.Errorf("line %d: raw block without endraw", lineOf(src, t.start))
			}
			i = t.raw.end
		}
		tags = append(tags, t)
	}
	return tags, nil
}

// markers sets t's whitespace control markers and leaves them out of its inside.
func markers(t tag, src string) tag {
	if t.in < t.inEnd && (src[t.in] == '-' || src[t.in] == '+') {
		t.left = src[t.in]
		t.in++
	}
	if t.in < t.inEnd && (src[t.inEnd-1] == '-' || src[t.inEnd-1] == '+') {
		t.right = src[t.inEnd-1]
		t.inEnd--
	}
	return t
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

// rawEnd returns the {% endraw %} tag that closes a raw block whose text starts at i,
// or nil.
func rawEnd(src string, i int) *tag {
	for {
		j := strings.Index(src[i:], "{%")
		if j < 0 {
			return nil
		}
		i += j
		end := strings.Index(src[i+2:], "%}")
		if end < 0 {
			return nil
		}
		t := markers(tag{kind: '%', start: i, end: i + 2 + end + 2, in: i + 2, inEnd: i + 2 + end}, src)
		if strings.TrimSpace(src[t.in:t.inEnd]) == "endraw" {
			return &t
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

// rewrite returns src with the changes that let Render keep a template within bounds
// and render it as HF does; comments and string literals are left alone:
//   - every application of tojson ("| tojson") is renamed jsonFilter;
//   - the iterable of every for loop passes through loopGuard: "{% for x in xs if c %}"
//     becomes "{% for x in loopGuard(xs) if c %}" (the iterable ends where a top-level
//     if or recursive begins, as Jinja parses it: no conditional expression there);
//   - every call of a macro goes through callGuard: "m(a, b=1)" becomes
//     "callGuard(m, a, b=1)", in {% call %} blocks too. checkMacros has made sure that
//     macros are used in no other way, so every macro call is counted;
//   - the text between tags is shaped by Jinja2's whitespace control (spaceEdits).
func rewrite(src string, tags []tag, macros map[string]bool) string {
	var edits []edit
	for _, t := range tags {
		if t.kind == '#' {
			continue
		}
		toks := lex(src, t.in, t.inEnd)
		for k := 1; k < len(toks); k++ {
			if toks[k].ident && toks[k].text == "tojson" && toks[k-1].text == "|" {
				edits = append(edits, edit{toks[k].pos, len("tojson"), jsonFilter})
			}
			if e, ok := truthTest(toks, k); ok {
				edits = append(edits, e)
			}
		}
		for k, tk := range toks {
			if !macroCall(toks, k, macros) {
				continue
			}
			ins := callGuard + "(" + tk.text
			if k+2 >= len(toks) || toks[k+2].text != ")" {
				ins += ", "
			}
			open := toks[k+1]
			edits = append(edits, edit{tk.pos, open.pos + 1 - tk.pos, ins})
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
		edits = append(edits, edit{toks[first].pos, 0, loopGuard + "("}, edit{end, 0, ")"})
	}
	edits = append(edits, spaceEdits(src, tags)...)
	// At one position an insertion goes before a replacement (a loop over a macro's
	// output: "for x in m()").
	slices.SortStableFunc(edits, func(a, b edit) int { return cmp.Or(a.pos-b.pos, a.del-b.del) })
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

// truthTest returns the edit that gives a test to a filter that selects by
// truthiness without one, if toks[k] is such a filter: "| select" and "| reject" get
// none (which the engine reads as no test) and "| selectattr(a)" and "| rejectattr(a)"
// the engine's "truthy", since the engine's filters index past their arguments
// without them.
func truthTest(toks []token, k int) (edit, bool) {
	name := toks[k].text
	if !toks[k].ident || toks[k-1].text != "|" {
		return edit{}, false
	}
	want := 0 // the arguments below which the engine fails
	switch name {
	case "select", "reject":
		want = 1
	case "selectattr", "rejectattr":
		want = 2
	default:
		return edit{}, false
	}
	end := toks[k].pos + len(name)
	if k+1 >= len(toks) || toks[k+1].text != "(" {
		if want == 1 {
			return edit{end, 0, "(none)"}, true
		}
		return edit{}, false // selectattr without an attribute: the engine's error
	}
	args, depth := 0, 0 // the arguments seen (counting the one under way), the nesting
	for m := k + 1; m < len(toks); m++ {
		tx := toks[m].text
		if depth == 1 && args == 0 && tx != ")" {
			args = 1
		}
		switch tx {
		case "(", "[", "{":
			depth++
		case ",":
			if depth == 1 {
				args++
			}
		case ")", "]", "}":
			if depth--; depth > 0 {
				continue
			}
			switch {
			case want == 1 && args == 0:
				return edit{toks[m].pos, 0, "none"}, true
			case want == 2 && args == 1:
				return edit{toks[m].pos, 0, ", 'truthy'"}, true
			}
			return edit{}, false
		}
	}
	return edit{}, false
}

// macroCall reports whether toks[k] calls a macro: the macro's name, followed by a
// parenthesis, and not an attribute (x.name), a filter (| name) or a test (is name).
func macroCall(toks []token, k int, macros map[string]bool) bool {
	if !toks[k].ident || !macros[toks[k].text] || k+1 >= len(toks) || toks[k+1].text != "(" {
		return false
	}
	return !afterDotFilterOrTest(toks, k) && !(k == 1 && toks[0].text == "macro")
}

// afterDotFilterOrTest reports whether toks[k] names an attribute, a filter or a test.
func afterDotFilterOrTest(toks []token, k int) bool {
	if k == 0 {
		return false
	}
	switch toks[k-1].text {
	case ".", "|", "is":
		return true
	case "not":
		return k > 1 && toks[k-2].text == "is"
	}
	return false
}

// macroNames returns the names of the macros src defines.
func macroNames(src string, tags []tag) map[string]bool {
	names := map[string]bool{}
	for _, t := range tags {
		if t.kind != '%' {
			continue
		}
		if toks := lex(src, t.in, t.inEnd); len(toks) > 1 && toks[0].text == "macro" && toks[1].ident {
			names[toks[1].text] = true
		}
	}
	return names
}

// checkMacros refuses a template that uses a macro other than by calling it by name —
// binding it to another name (set, for, a parameter), passing it as an argument, or
// keeping it in a list or a namespace — since a call through that other name would
// escape callGuard, and so the bound on macro depth that keeps a recursive macro from
// overflowing the Go stack, which kills the process.
func checkMacros(src string, tags []tag, macros map[string]bool) error {
	if len(macros) == 0 {
		return nil
	}
	for _, t := range tags {
		if t.kind == '#' {
			continue
		}
		toks := lex(src, t.in, t.inEnd)
		for k, tk := range toks {
			if !tk.ident || !macros[tk.text] || afterDotFilterOrTest(toks, k) || (k == 1 && toks[0].text == "macro") {
				continue
			}
			if k+1 < len(toks) && toks[k+1].text == "is" {
				continue // a test of the macro (m is defined) hands it to no one
			}
			if !macroCall(toks, k, macros) {
				return fmt.Errorf("line %d: macro %s is used as a value; only calls by its name are supported", lineOf(src, tk.pos), tk.text)
			}
		}
	}
	return nil
}
