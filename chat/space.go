package chat

import (
	"strings"
	"unicode"
)

// Whitespace control. Jinja2's lexer, configured as Hugging Face configures it, shapes
// the text between two tags by the tags on either side of it, and by those alone:
//   - after a tag ending "-%}", "-}}" or "-#}", all leading whitespace goes; after any
//     other "%}" or "#}" but "+%}" and "+#}", one newline (trim_blocks);
//   - before a tag starting "{%-", "{{-" or "{#-", all trailing whitespace goes; before
//     any other "{%" or "{#" but "{%+" and "{#+", the spaces between the start of its
//     line and the tag (lstrip_blocks).
//
// The engine applies these rules to the nearest text in either direction, even when
// other tags stand between (the newline after "{% if x %}{{ y }}" goes), and it does not
// know the "+" markers. So spaceEdits applies the rules itself and hands the engine
// text it cannot change: every text's leading and trailing whitespace is rewritten as
// a string expression, and the markers are removed.

// spaceEdits returns the edits of src that apply Jinja2's whitespace control. The
// newlines it removes stay as comments, so that the engine's errors name the lines of
// src.
func spaceEdits(src string, tags []tag) []edit {
	var edits []edit
	from := 0     // where the current text starts
	var prev *tag // the tag before it; nil at the template's start
	for k := 0; k <= len(tags); k++ {
		to := len(src)
		var next *tag
		if k < len(tags) {
			next = &tags[k]
			to = next.start
		}
		if from < to {
			i, j := shape(src, from, to, prev, next, false)
			if s := guarded(src[from:i], src[i:j], src[j:to]); s != src[from:to] {
				edits = append(edits, edit{from, to - from, s})
			}
		}
		if next == nil {
			break
		}
		prev, from = next, next.end
		if next.raw != nil {
			// The text of a raw block is shaped by its two tags, and output as one
			// string, out of the engine's reach.
			i, j := shape(src, next.end, next.raw.start, next, next.raw, true)
			s := lines(src[next.start:i]) + expr(src[i:j]) + lines(src[j:next.raw.end])
			edits = append(edits, edit{next.start, next.raw.end - next.start, s})
			prev, from = next.raw, next.raw.end
			continue
		}
		if next.left != 0 {
			edits = append(edits, edit{next.in - 1, 1, ""})
		}
		if next.right != 0 {
			edits = append(edits, edit{next.inEnd, 1, ""})
		}
	}
	return edits
}

// shape returns the bounds [i, j) of what Jinja2's lexer emits of src[from:to] between
// prev and next (nil: the template's start or end). In a raw block (inRaw) the opening
// tag trims no newline.
func shape(src string, from, to int, prev, next *tag, inRaw bool) (i, j int) {
	s := src[from:to]
	if prev != nil {
		switch {
		case prev.right == '-':
			s = strings.TrimLeftFunc(s, isSpace)
		case !inRaw && prev.kind != '{' && prev.right != '+':
			s = strings.TrimPrefix(s, "\n")
		}
	}
	i = to - len(s)
	if next != nil {
		switch {
		case next.left == '-':
			s = strings.TrimRightFunc(s, isSpace)
		case next.kind != '{' && next.left != '+':
			// Only whitespace between the start of the line (or of the template) and
			// the tag.
			line := strings.LastIndexByte(s, '\n') + 1
			atLineStart := line > 0 || i == 0 || src[i-1] == '\n'
			if atLineStart && line < len(s) && strings.TrimLeftFunc(s[line:], isSpace) == "" {
				s = s[:line]
			}
		}
	}
	return i, i + len(s)
}

// lines returns a comment spanning as many lines as s does ("" for none).
func lines(s string) string {
	if n := strings.Count(s, "\n"); n > 0 {
		return "{#" + strings.Repeat("\n", n) + "#}"
	}
	return ""
}

// isSpace reports whether r is whitespace to Python (str.isspace, and so \s).
func isSpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

// engineSpace reports whether the engine may trim c from the edge of a text.
func engineSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// guarded returns the source of text s, which Jinja2 emits without the whitespace
// before and after it: a text the engine does not trim, with s's leading and trailing
// whitespace as string expressions, and the newlines of before and after as comments.
func guarded(before, s, after string) string {
	i := 0
	for i < len(s) && engineSpace(s[i]) {
		i++
	}
	j := len(s)
	for j > i && engineSpace(s[j-1]) {
		j--
	}
	tail := expr(s[j:]) + lines(after)
	if (tail != "" || after != "") && j > i && s[j-1] == '{' {
		// Whatever now follows the brace starts with one: the two would open a tag.
		j--
		tail = expr(s[j:]) + lines(after)
	}
	return lines(before) + expr(s[:i]) + s[i:j] + tail
}

// expr returns an expression that outputs s ("" for an empty s).
func expr(s string) string {
	if s == "" {
		return ""
	}
	// The engine reads every byte of a string literal as itself but for the escapes
	// \\, \", \', \n and \t.
	return `{{ "` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `" }}`
}
