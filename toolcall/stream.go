package toolcall

import (
	"strings"
	"unicode"
)

// Stream finds the tool calls in a reply that arrives in pieces, passing on at once
// the answer text that cannot be part of a call: Write returns the text that can be
// sent now, Close the rest and the calls. What Write returned followed by Close's
// Content is Parse's Content of the whole text, and Close's Calls are Parse's Calls.
//
// Text that may start a call is held until the reply ends: with Hermes, from a
// <tool_call> on (and a piece of one at the end of what has come); with Llama3JSON, the
// whole reply when it starts like a call. White space at the end of what has come is
// held too, as the content of a reply with calls has none.
//
// A Stream is not safe for concurrent use. The zero value is not usable: use
// Syntax.NewStream.
type Stream struct {
	syntax Syntax
	pend   strings.Builder // received, not passed on, not held as white space
	held   string          // white space that ends what has been passed on
	calls  bool            // pend holds a possible call: all that comes is held
	plain  bool            // Llama3JSON: the reply is an answer, not calls
}

// NewStream starts reading a reply written in s.
func (s Syntax) NewStream() *Stream { return &Stream{syntax: s} }

// Write adds a piece of the reply and returns the answer text that can be sent now.
func (st *Stream) Write(text string) string {
	if st.calls {
		st.pend.WriteString(text)
		return ""
	}
	st.pend.WriteString(text)
	p := st.pend.String()
	switch st.syntax {
	case Hermes:
		if i := strings.Index(p, hermesOpen); i >= 0 {
			st.reset(p[i:])
			st.calls = true
			return st.emit(p[:i])
		}
		keep := partialSuffix(p, hermesOpen)
		st.reset(p[len(p)-keep:])
		return st.emit(p[:len(p)-keep])
	case Llama3JSON:
		if st.plain {
			st.reset("")
			return st.emit(p)
		}
		t := strings.TrimLeftFunc(p, unicode.IsSpace)
		switch {
		case t == "" || (len(t) < len(pythonTag) && strings.HasPrefix(pythonTag, t)):
			return "" // undecided
		case strings.HasPrefix(t, "{") || strings.HasPrefix(t, pythonTag):
			st.calls = true
			return ""
		}
		st.plain = true
		st.reset("")
		return st.emit(p)
	}
	st.reset("")
	return st.emit(p)
}

// Close ends the reply: Content is the answer text not yet sent, Calls the calls.
func (st *Stream) Close() Result {
	p := st.pend.String()
	st.reset("")
	if st.calls {
		r := st.syntax.Parse(p)
		if len(r.Calls) > 0 {
			if st.syntax == Llama3JSON {
				return r // only calls: the white space held is not content
			}
			r.Content = strings.TrimRightFunc(st.held+r.Content, unicode.IsSpace)
			st.held = ""
			return r
		}
	}
	out := st.held + p
	st.held = ""
	return Result{Content: out}
}

// reset sets pend to s.
func (st *Stream) reset(s string) {
	st.pend.Reset()
	st.pend.WriteString(s)
}

// emit returns the text to pass on of s coming after what has been passed on: the
// white space held before it and s, less the white space that ends them, now held.
func (st *Stream) emit(s string) string {
	s = st.held + s
	out := strings.TrimRightFunc(s, unicode.IsSpace)
	st.held = s[len(out):]
	return out
}

// partialSuffix is the length of the longest end of s that is a proper beginning of
// mark.
func partialSuffix(s, mark string) int {
	for n := min(len(s), len(mark)-1); n > 0; n-- {
		if strings.HasSuffix(s, mark[:n]) {
			return n
		}
	}
	return 0
}
