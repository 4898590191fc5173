package toolcall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is what an Event adds to a reply.
type Kind int

const (
	// Content: Text is answer text, to append to the reply's content.
	Content Kind = iota + 1
	// Begin: call number Call starts; Text is its function's name, whole.
	Begin
	// Args: Text is to be appended to call number Call's arguments.
	Args
)

// Event is what a piece of a reply adds to what a Stream has passed on.
type Event struct {
	Kind Kind
	Call int    // Begin and Args: the call's index in the reply, from 0
	Text string // see Kind; never empty
}

// ErrBroken: calls were passed on (a Begin at least) and the reply turned out not to
// be calls after all — a call's JSON malformed or cut off, text where only calls may
// be — so what was passed on is not what Parse gives for the whole reply (which has no
// calls then). What was sent stays sent; the rest of the reply was passed on as
// Content. Close returns it.
var ErrBroken = errors.New("tool calls turned out malformed after they were streamed")

// Stream reads a reply that arrives in pieces and passes on, as early as it can, what
// Parse will find in the whole: answer text as Content, and each call as a Begin with
// its name, then its arguments as Args in the pieces the model writes them, in the
// form Parse gives them (compact JSON: the model's text less white space outside
// strings). For a reply Parse finds calls in (and for one it finds none in), the
// events of every Write and of Close together are exactly Parse's result: the
// Content texts joined are its Content, and the Args of each call joined its
// Arguments. Close checks that, and returns an error wrapping ErrBroken where it is
// not so.
//
// A call's Begin waits until its name is known; arguments written before the name
// (or under the other syntax's key, which counts only if the usual one is absent)
// wait too, and arguments written as a string of JSON text go as one Args once the
// string ends. Text that may still become a call, or white space that may still end
// the content, is held; so is the first part of a UTF-8 character cut by a piece, so
// every Text is whole characters where the reply is valid UTF-8.
//
// When the reply stops being calls after a call was begun, Stream does as vLLM does
// with what it has sent — it stays sent — and passes on the rest as Content: from the
// <tool_call> of the block that broke (Hermes), or from the object or stray text that
// broke (Llama3JSON), to the end. Close then returns ErrBroken, so the caller can say
// so instead of leaving a client with a call whose arguments do not parse. A reply
// that breaks before any Begin is passed on whole as Content, as Parse gives it.
//
// A Stream is not safe for concurrent use. Use Syntax.NewStream.
type Stream struct {
	syntax  Syntax
	all     []byte // the reply so far
	pos     int    // the bytes of all read
	state   streamState
	ans     answer
	obj     object // the call being read
	start   int    // where the block or object being read began in all
	tagged  bool   // Llama3JSON: the reply's <|python_tag|> has been read
	calls   int    // calls begun
	whole   int    // calls whose JSON has been read whole
	why     string // why the reply broke after a call began; "": it has not
	closed  bool
	out     []Event         // events of the current Write or Close
	content strings.Builder // the Content passed on
	names   []string        // the names of the calls passed on
	args    [][]byte        // the arguments of the calls passed on
}

// streamState is what a Stream reads next.
type streamState int

const (
	hOutside streamState = iota // Hermes: answer text, until a <tool_call>
	hBlock                      // Hermes: a call's JSON in its block
	hAfter                      // Hermes: white space, then </tool_call>, after a call's JSON
	lLead                       // Llama3JSON: white space and <|python_tag|>, before the first call
	lObject                     // Llama3JSON: a call's JSON
	lAfter                      // Llama3JSON: white space, then ';', after a call
	lSep                        // Llama3JSON: white space, then the next call, after a ';'
	plain                       // all that comes is answer text
)

// NewStream starts reading a reply written in s.
func (s Syntax) NewStream() *Stream {
	st := &Stream{syntax: s}
	switch s {
	case Hermes:
		st.state = hOutside
	case Llama3JSON:
		st.state = lLead
	default:
		st.state, st.ans.plain = plain, true
	}
	return st
}

// Write reads the next piece of the reply and returns what can be passed on now. It
// returns nothing once Close has been called.
func (st *Stream) Write(piece string) []Event {
	if st.closed {
		return nil
	}
	st.out = nil
	st.all = append(st.all, piece...)
	for st.pos < len(st.all) && st.advance(false) {
	}
	st.flushArgs(false)
	return st.out
}

// Whole is how many calls of the reply so far are whole: their JSON read to its end and
// valid, their name and arguments passed on in full. What follows a call's JSON (a
// Hermes block's </tool_call>, a Llama3JSON ';') adds nothing to the call, so the
// reply may end right after it and still hold the call (see Hermes).
func (st *Stream) Whole() int { return st.whole }

// Close ends the reply and returns the rest of what is to be passed on. The error,
// which wraps ErrBroken, says that calls were passed on and the reply is not calls
// after all (see ErrBroken).
func (st *Stream) Close() ([]Event, error) {
	if st.closed {
		return nil, nil
	}
	st.closed = true
	st.out = nil
	for st.pos < len(st.all) && st.advance(true) {
	}
	switch st.state {
	case hBlock, lObject:
		st.fail("the reply ended inside a call's JSON")
	case lLead:
		st.fail("no call")
	}
	st.flushArgs(true)
	st.emitContent(st.ans.close(st.calls > 0))
	if st.why != "" {
		return st.out, fmt.Errorf("%w: call %d: %s", ErrBroken, st.calls-1, st.why)
	}
	want := st.syntax.Parse(string(st.all))
	if want.Content != st.content.String() || !st.sentAre(want.Calls) {
		// Not a reply that breaks (that is caught where it breaks) but a mistake in
		// reading it: say so rather than leave the client with the wrong answer.
		return st.out, fmt.Errorf("%w: the calls passed on differ from the reply's", ErrBroken)
	}
	return st.out, nil
}

// sentAre reports whether the calls passed on are calls.
func (st *Stream) sentAre(calls []Call) bool {
	if len(calls) != len(st.names) {
		return false
	}
	for i, c := range calls {
		if c.Name != st.names[i] || c.Arguments != string(st.args[i]) {
			return false
		}
	}
	return true
}

// advance reads on from pos in the current state; false: it needs more of the reply
// (never with eof, where the reply has ended).
func (st *Stream) advance(eof bool) bool {
	switch st.state {
	case plain:
		st.emitContent(st.ans.add(string(st.all[st.pos:])))
		st.pos = len(st.all)
	case hOutside:
		rest := st.all[st.pos:]
		if i := bytes.Index(rest, []byte(hermesOpen)); i >= 0 {
			st.emitContent(st.ans.add(string(rest[:i])))
			st.emitContent(st.ans.end())
			st.start = st.pos + i
			st.pos += i + len(hermesOpen)
			st.state, st.obj = hBlock, object{argsKey: "arguments"}
			return true
		}
		keep := 0
		if !eof {
			keep = partialSuffix(rest, []byte(hermesOpen))
		}
		st.emitContent(st.ans.add(string(rest[:len(rest)-keep])))
		st.pos += len(rest) - keep
		return false
	case hBlock, lObject:
		for st.pos < len(st.all) && (st.state == hBlock || st.state == lObject) {
			c := st.all[st.pos]
			st.pos++
			st.objectByte(c)
		}
	case hAfter:
		if !st.skipSpace(eof) {
			return false
		}
		rest := st.all[st.pos:]
		switch {
		case bytes.HasPrefix(rest, []byte(hermesClose)):
			st.pos += len(hermesClose)
			st.state = hOutside
		case len(rest) < len(hermesClose) && bytes.HasPrefix([]byte(hermesClose), rest):
			if !eof {
				return false
			}
			// The reply ends in the closing tag (max_tokens cut it): the block counts,
			// as one left unclosed does.
			st.pos = len(st.all)
			st.state = hOutside
		default:
			st.fail("text after the call's JSON in its block")
		}
	case lLead, lSep, lAfter:
		if !st.skipSpace(eof) {
			return false
		}
		rest := st.all[st.pos:]
		switch {
		case st.state == lLead && !st.tagged && bytes.HasPrefix(rest, []byte(pythonTag)):
			st.pos += len(pythonTag)
			st.tagged = true
		case st.state == lLead && !st.tagged && !eof && len(rest) < len(pythonTag) && bytes.HasPrefix([]byte(pythonTag), rest):
			return false
		case st.state == lAfter && rest[0] == ';':
			st.pos++
			st.state = lSep
		case st.state != lAfter && rest[0] == '{':
			st.start = st.pos
			st.state, st.obj = lObject, object{argsKey: "parameters"}
		default:
			st.start = st.pos
			st.fail("text where only calls may be")
		}
	}
	return true
}

// skipSpace reads the white space at pos; false: the reply has nothing after it yet.
// An incomplete UTF-8 character waits for the rest of it unless the reply has
// ended (then it is not white space).
func (st *Stream) skipSpace(eof bool) bool {
	for st.pos < len(st.all) {
		rest := st.all[st.pos:]
		if !eof && !utf8.FullRune(rest) {
			return false
		}
		r, n := utf8.DecodeRune(rest)
		if !unicode.IsSpace(r) {
			return true
		}
		st.pos += n
	}
	return false
}

// fail notes that the reply is not calls from st.start on: all from there is
// answer text (from the start when no call has begun and the syntax has no answer
// around calls). Once a call has begun, the reply is broken.
func (st *Stream) fail(why string) {
	p := st.start
	if st.calls > 0 {
		st.why = why
	} else if st.syntax == Llama3JSON {
		p = 0
	}
	st.obj = object{}
	st.state, st.ans.plain = plain, true
	st.emitContent(st.ans.add(string(st.all[p:])))
	st.pos = len(st.all)
}

// object is the state of the call whose JSON is being read.
type object struct {
	sc      scanner
	argsKey string // "arguments" or "parameters": the syntax's key for arguments
	key     []byte // the key being read, as written
	role    role   // of the member being read
	inValue bool   // the member's value has begun
	nested  bool   // the member's value is an object or array
	stream  bool   // the member's value is the arguments object, passed on as it comes
	val     []byte // the member's value as written, less white space between tokens

	hasName, hasArgs, hasOther bool   // the member has been seen (its first occurrence counts)
	name                       string // the function's name; "": not known yet
	argsDone                   bool   // args holds all the arguments
	args                       []byte // arguments text not yet passed on
	other                      []byte // the value under the other syntax's key
}

// role is what a member of a call's JSON is to the call.
type role int

const (
	rSkip  role = iota // a key that means nothing, or one seen before
	rName              // the function's name
	rArgs              // the arguments, under the syntax's key
	rOther             // the arguments under the other syntax's key
)

// objectByte reads the next byte c of a call's JSON.
func (st *Stream) objectByte(c byte) {
	o := &st.obj
	d0 := o.sc.depth()
	r, err := o.sc.step(c)
	if err != nil {
		st.fail(err.Error())
		return
	}
	if r.numEnded && o.inValue && !o.nested {
		if !st.endMember() {
			return
		}
	}
	if r.space {
		return
	}
	d1 := o.sc.depth()
	switch {
	case d0 == 0:
		if c != '{' {
			st.fail("not a JSON object")
		}
		return
	case d1 == 0:
		st.endObject()
		return
	case r.key && d0 == 1:
		o.key = append(o.key, c)
		if r.keyEnd {
			st.beginMember()
		}
		return
	case d0 == 1 && r.punct:
		return
	}
	if !o.inValue {
		o.inValue, o.nested = true, c == '{' || c == '['
		o.stream = o.role == rArgs && c == '{'
	}
	switch {
	case o.stream:
		o.args = append(o.args, c)
	case o.role != rSkip:
		o.val = append(o.val, c)
	}
	if r.ended && d1 == 1 {
		st.endMember()
	}
}

// beginMember starts the member whose key has been read.
func (st *Stream) beginMember() {
	o := &st.obj
	var key string
	if err := json.Unmarshal(o.key, &key); err != nil {
		panic(fmt.Sprintf("toolcall: the scanner passed key %q: %v", o.key, err)) // a scanned string always decodes
	}
	o.key = o.key[:0]
	o.role, o.inValue, o.val = rSkip, false, o.val[:0]
	switch {
	case key == "name" && !o.hasName:
		o.role, o.hasName = rName, true
	case key == o.argsKey && !o.hasArgs:
		o.role, o.hasArgs = rArgs, true
	case key == otherArgsKey(o.argsKey) && !o.hasOther:
		o.role, o.hasOther = rOther, true
	}
}

// endMember ends the member whose value has been read; false: the call is malformed.
func (st *Stream) endMember() bool {
	o := &st.obj
	o.inValue = false
	switch o.role {
	case rName:
		name, err := callName(o.val)
		if err != nil {
			st.fail(err.Error())
			return false
		}
		o.name = name
		st.emit(Event{Kind: Begin, Call: st.calls, Text: name})
		st.calls++
	case rArgs:
		if !o.stream {
			a, err := canonicalArgs(o.val, true)
			if err != nil {
				st.fail(err.Error())
				return false
			}
			o.args = []byte(a)
		}
		o.stream, o.argsDone = false, true
	case rOther:
		o.other = bytes.Clone(o.val)
	}
	o.role = rSkip
	return true
}

// endObject ends the call whose JSON has been read.
func (st *Stream) endObject() {
	o := &st.obj
	if o.name == "" {
		st.fail("no function name")
		return
	}
	if !o.argsDone {
		a, err := canonicalArgs(o.other, o.hasOther)
		if err != nil {
			st.fail(err.Error())
			return
		}
		o.args, o.argsDone = []byte(a), true
	}
	st.flushArgs(true)
	st.whole++
	st.obj = object{}
	st.state = hAfter
	if st.syntax == Llama3JSON {
		st.state = lAfter
	}
}

// flushArgs passes on the arguments of the call being read that can be: none before
// its name is known, and, unless all, not the start of a character cut off at the end.
func (st *Stream) flushArgs(all bool) {
	o := &st.obj
	if o.name == "" || len(o.args) == 0 {
		return
	}
	n := len(o.args)
	if !all {
		n -= partialRune(o.args)
	}
	if n > 0 {
		st.emit(Event{Kind: Args, Call: st.calls - 1, Text: string(o.args[:n])})
		o.args = o.args[n:]
	}
}

// emitContent passes on answer text s.
func (st *Stream) emitContent(s string) {
	if s != "" {
		st.emit(Event{Kind: Content, Text: s})
	}
}

// emit adds e to the events of this Write or Close, joined to the last when both add
// to the same text, and notes what it passes on.
func (st *Stream) emit(e Event) {
	switch e.Kind {
	case Content:
		st.content.WriteString(e.Text)
	case Begin:
		st.names, st.args = append(st.names, e.Text), append(st.args, nil)
	case Args:
		st.args[e.Call] = append(st.args[e.Call], e.Text...)
	}
	if n := len(st.out); n > 0 && e.Kind != Begin && st.out[n-1].Kind == e.Kind && st.out[n-1].Call == e.Call {
		st.out[n-1].Text += e.Text
		return
	}
	st.out = append(st.out, e)
}

// answer is the answer text of a reply, passed on as it comes, as Parse gives it:
// the text before the first call as it is, each later run between or after calls only
// if it is not blank, white space at the end trimmed when the reply has calls.
type answer struct {
	held  string // white space after what was passed on: passed on if more text follows
	run   string // the run being read, not yet passed on
	after bool   // the run follows a call: it counts only if not blank
	seen  bool   // the run is known not to be blank
	plain bool   // all is passed on as it is (no call can follow)
}

// add reads text s of the current run and returns what can be passed on now.
func (a *answer) add(s string) string {
	a.run += s
	whole := a.run[:len(a.run)-partialRune([]byte(a.run))]
	if a.plain {
		a.run = a.run[len(whole):]
		out := a.held + whole
		a.held = ""
		return out
	}
	if a.after && !a.seen && strings.TrimSpace(whole) == "" {
		return "" // blank so far: it may be dropped
	}
	a.seen = true
	a.run = a.run[len(whole):]
	return a.pass(whole)
}

// pass returns the held white space and s, less the white space that ends them, now
// held.
func (a *answer) pass(s string) string {
	t := a.held + s
	out := strings.TrimRightFunc(t, unicode.IsSpace)
	a.held = t[len(out):]
	return out
}

// end ends the current run where a call begins and returns what can be passed on.
func (a *answer) end() string {
	w := a.run // whole now: a cut-off character is not one
	a.run = ""
	blank := a.after && !a.seen && strings.TrimSpace(w) == ""
	a.after, a.seen = true, false
	if blank {
		return ""
	}
	return a.pass(w)
}

// close ends the reply, which has calls or not, and returns the rest to pass on.
func (a *answer) close(calls bool) string {
	w := a.run
	a.run = ""
	if a.plain || !calls {
		out := a.held + w
		a.held = ""
		return out
	}
	if a.after && !a.seen && strings.TrimSpace(w) == "" {
		return ""
	}
	return a.pass(w)
}

// partialRune is the length of the start of a UTF-8 character that ends b: bytes that
// may become a character when more follow.
func partialRune(b []byte) int {
	for n := 1; n <= min(len(b), utf8.UTFMax-1); n++ {
		if c := b[len(b)-n]; utf8.RuneStart(c) {
			if c >= utf8.RuneSelf && !utf8.FullRune(b[len(b)-n:]) {
				return n
			}
			return 0
		}
	}
	return 0
}

// partialSuffix is the length of the longest end of s that is a proper beginning of
// mark.
func partialSuffix(s, mark []byte) int {
	for n := min(len(s), len(mark)-1); n > 0; n-- {
		if bytes.HasSuffix(s, mark[:n]) {
			return n
		}
	}
	return 0
}
