// Package generate is plain autoregressive decoding on one model, and the bookkeeping
// every decoding loop shares — plain or speculative: stop conditions (end of text,
// maximum tokens, context, stop strings) and streaming text that never splits a UTF-8
// character or shows part of a stop string. It knows nothing of gRPC.
package generate

import (
	"slices"
	"strings"

	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/toolcall"
)

// Finish says why a generation ended.
type Finish int

// Finish reasons.
const (
	Running    Finish = iota
	EOS               // the model ended the text (EOS, or BOS for llama2.c checkpoints)
	Length            // the requested number of tokens was reached
	StopString        // a stop string appeared in the text
	Context           // the context window is full
	ToolCall          // the first tool call of the text is whole (Limits.ToolCall)
)

func (f Finish) String() string {
	return [...]string{"running", "eos", "length", "stop", "context", "tool_call"}[f]
}

// Limits are the stop conditions of one generation.
type Limits struct {
	MaxTokens int      // ≥ 1
	Context   int      // absolute position limit (the model's context length)
	Stop      []string // stop strings; the text ends before the first one found
	End       []int32  // ids that end the text: EOS and the vocabulary's other end-of-generation ids (tokenizer.EOG)
	BOS       int32
	StopAtBOS bool // also end at BOS (llama2.c checkpoints end a story with it)
	// MinTokens: a stop string counts only once the output has more than MinTokens
	// tokens, and only where it ends after their text, as vLLM's min_tokens. Run and
	// verifier sessions set it from the sampling parameters' MinTokens, which hold the
	// ends back as long.
	MinTokens int
	// ToolCall, when set, ends the text after the token that completes its first
	// tool call written in that syntax (see toolcall.Stream.Whole), so that a client
	// wanting one call does not wait and pay for more; 0: no such end.
	ToolCall toolcall.Syntax
}

// Ends returns every id that ends the text: End, and BOS where StopAtBOS.
func (l Limits) Ends() []int32 {
	if l.StopAtBOS && !slices.Contains(l.End, l.BOS) {
		return append(slices.Clip(l.End), l.BOS)
	}
	return l.End
}

// EndAt sets the ids that end the text: the vocabulary's end-of-generation ids eog (and
// BOS where stopAtBOS) unless ignoreEOS, and the request's own stop ids.
func (l *Limits) EndAt(eog []int32, bos int32, stopAtBOS bool, stopIDs []int32, ignoreEOS bool) {
	l.End, l.BOS, l.StopAtBOS = nil, bos, stopAtBOS && !ignoreEOS
	if !ignoreEOS {
		l.End = append(l.End, eog...)
	}
	l.End = append(l.End, stopIDs...)
}

// Output accumulates one generation's tokens and text and applies Limits. Tokens are
// pushed one at a time in order; each push returns the text that may be streamed now.
type Output struct {
	lim     Limits
	calls   *toolcall.Stream // reads the text for lim.ToolCall; nil without it
	dec     *tokenizer.Decoder
	start   int     // absolute position of the first generated token
	IDs     []int32 // generated tokens, not counting a final EOS/BOS
	text    strings.Builder
	emitted int // bytes of text already returned as deltas
	// guard is the length of the text of the first lim.MinTokens tokens (0 until they
	// are all in): a stop string must end after it.
	guard  int
	Reason Finish
}

// NewOutput starts an output after prompt (the ids already in the sequence, which may
// include tokens generated before a resume).
func NewOutput(tok *tokenizer.Tokenizer, prompt []int32, lim Limits) *Output {
	o := &Output{lim: lim, dec: tok.NewDecoder(prompt), start: len(prompt)}
	if lim.ToolCall != 0 {
		o.calls = lim.ToolCall.NewStream()
	}
	return o
}

// Done reports whether the generation has finished.
func (o *Output) Done() bool { return o.Reason != Running }

// Next is the absolute position of the next token.
func (o *Output) Next() int { return o.start + len(o.IDs) }

// Text returns the text so far (after a stop string is found, the text before it).
func (o *Output) Text() string { return o.text.String()[:o.visible()] }

// Peek returns what the token id at position Next() would add to the decoded text (as
// tokenizer.Decoder.Peek: before stop strings and held-back text), and leaves the
// output as it is.
func (o *Output) Peek(id int32) string { return o.dec.Peek(id) }

// Push adds the token at position Next() and returns the newly streamable text. It
// must not be called once Done.
func (o *Output) Push(id int32) string {
	if slices.Contains(o.lim.End, id) || (o.lim.StopAtBOS && id == o.lim.BOS) {
		o.Reason = EOS
		o.text.WriteString(o.dec.Flush())
		return o.delta()
	}
	o.add(id)
	if o.cutAtStop() {
		o.Reason = StopString
		return o.delta()
	}
	if o.calledOnce() {
		o.Reason = ToolCall
		o.text.WriteString(o.dec.Flush())
		return o.delta()
	}
	if o.limit(); o.Done() {
		o.text.WriteString(o.dec.Flush())
		if o.cutAtStop() {
			o.Reason = StopString
		}
		return o.delta()
	}
	return o.delta()
}

// add appends id to the output and its text, and notes where the text of the first
// MinTokens tokens ends.
func (o *Output) add(id int32) {
	o.IDs = append(o.IDs, id)
	piece := o.dec.Next(id)
	o.text.WriteString(piece)
	if o.calls != nil {
		o.calls.Write(piece)
	}
	if len(o.IDs) == o.lim.MinTokens {
		o.guard = o.text.Len()
	}
}

// cutAtStop truncates the text at the first stop string, reporting whether one was
// found. None counts until the output has more than MinTokens tokens, nor one that
// ends within their text (vLLM's min_tokens).
func (o *Output) cutAtStop() bool {
	if len(o.IDs) <= o.lim.MinTokens {
		return false
	}
	s := o.text.String()
	cut := -1
	for _, st := range o.lim.Stop {
		if st == "" {
			continue
		}
		// A stop string can only be new where it overlaps the text not yet emitted.
		from := max(0, o.emitted-len(st)+1, o.guard-len(st)+1)
		if i := strings.Index(s[from:], st); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	if cut < 0 {
		return false
	}
	o.text.Reset()
	o.text.WriteString(s[:cut])
	return true
}

// visible is how much of the text may be shown: all of it once done, otherwise all but
// the longest suffix that could begin a stop string.
func (o *Output) visible() int {
	s := o.text.String()
	if o.Done() {
		return len(s)
	}
	hold := 0
	for _, st := range o.lim.Stop {
		for k := min(len(st)-1, len(s)); k > hold; k-- {
			if strings.HasSuffix(s, st[:k]) {
				hold = k
				break
			}
		}
	}
	return len(s) - hold
}

func (o *Output) delta() string {
	v := o.visible()
	if v <= o.emitted {
		return ""
	}
	d := o.text.String()[o.emitted:v]
	o.emitted = v
	return d
}

// Resume replays tokens generated before a failover, after the prompt: they count
// towards the limits and belong to the text, and the first shown bytes of that text
// count as already streamed. The next delta continues right after them, so text an
// earlier attempt held back (an unfinished character, a possible stop string) is not
// lost. When the last of them completed a stop string or the first tool call
// (Limits.ToolCall), or reached max tokens or the context, the earlier attempt had
// ended the generation (and failed before saying so):
// it is done again.
func (o *Output) Resume(ids []int32, shown int) {
	for _, id := range ids {
		o.add(id)
	}
	if len(ids) == 0 {
		return
	}
	if o.cutAtStop() { // nothing emitted yet: it searches all the text
		o.Reason = StopString
	} else if o.calledOnce() {
		o.Reason = ToolCall
		o.text.WriteString(o.dec.Flush())
	} else if o.limit(); o.Done() {
		o.text.WriteString(o.dec.Flush())
		if o.cutAtStop() {
			o.Reason = StopString
		}
	}
	o.emitted = min(max(shown, 0), o.text.Len())
}

// calledOnce reports whether the text holds a whole tool call in lim.ToolCall's syntax.
func (o *Output) calledOnce() bool { return o.calls != nil && o.calls.Whole() > 0 }

// limit ends the generation when its last token filled the context or was the last
// of max tokens.
func (o *Output) limit() {
	// A full context wins over max tokens reached with the same token: the caller
	// could not have asked for more, and FinishReason says the window is the limit.
	switch {
	case o.lim.Context > 0 && o.Next() >= o.lim.Context:
		o.Reason = Context
	case len(o.IDs) >= o.lim.MaxTokens:
		o.Reason = Length
	}
}
