package ollamahttp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/openaihttp"
	"github.com/specd-dev/specd/toolcall"
)

// doneReason is Ollama's done_reason for specd's finish reason: the end of text and
// a stop string are "stop"; num_predict and a full context "length".
func doneReason(f specdv1.FinishReason) string {
	switch f {
	case specdv1.FinishReason_FINISH_REASON_LENGTH, specdv1.FinishReason_FINISH_REASON_CONTEXT:
		return "length"
	}
	return "stop"
}

// metrics are Ollama's statistics of a request served with stats s, in nanoseconds:
// total_duration from the router receiving the request to its last message;
// load_duration 0 (specd's models are loaded before they serve); prompt_eval the
// prompt's tokens and the time from admission (after any queue wait) to the first
// token; eval the generated tokens and the time from the first token to the last.
func metrics(s *specdv1.Stats) *Metrics {
	ttft := s.GetTimeToFirstToken().AsDuration()
	total := s.GetTotalDuration().AsDuration()
	return &Metrics{
		TotalDuration:      int64(total),
		PromptEvalCount:    int(s.GetPromptTokens()),
		PromptEvalDuration: int64(max(ttft-s.GetQueueWait().AsDuration(), 0)),
		EvalCount:          int(s.GetCompletionTokens()),
		EvalDuration:       int64(max(total-ttft, 0)),
	}
}

// answer builds the answer to one call from the router's messages.
type answer struct {
	c     *Call
	text  strings.Builder  // all the text so far
	ids   []int32          // all the generated ids so far (a plain generation's context)
	lps   []Logprob        // all the log-probabilities so far (of an unstreamed answer)
	tools *toolcall.Stream // a streamed chat with tools: the calls in its reply
	calls []ToolCall       // the calls tools has passed on, sent at the end
}

func newAnswer(c *Call) *answer {
	a := &answer{c: c}
	if c.Tools != 0 && c.Stream {
		a.tools = c.Tools.NewStream()
	}
	return a
}

// add takes a chunk's tokens and text, and returns its tokens' log-probabilities
// (none unless asked for).
func (a *answer) add(ch *specdv1.TokenChunk) []Logprob {
	a.text.WriteString(ch.GetText())
	a.ids = append(a.ids, ch.GetTokenIds()...)
	return logprobs(ch.GetLogprobs())
}

// logprobs are specd's log-probabilities as Ollama gives them.
func logprobs(lps []*specdv1.TokenLogprob) []Logprob {
	if len(lps) == 0 {
		return nil
	}
	token := func(b []byte, lp float32) TokenLogprob {
		return TokenLogprob{Token: string(b), Logprob: openaihttp.FiniteLogprob(lp), Bytes: openaihttp.ByteValues(b)}
	}
	out := make([]Logprob, len(lps))
	for i, lp := range lps {
		out[i].TokenLogprob = token(lp.GetToken(), lp.GetLogprob())
		for _, t := range lp.GetTop() {
			out[i].TopLogprobs = append(out[i].TopLogprobs, token(t.GetToken(), t.GetLogprob()))
		}
	}
	return out
}

// collect reads the rest of st after its first message and returns the whole answer.
func (a *answer) collect(st specdv1.GenerationService_GenerateClient, first *specdv1.GenerateResponse) (any, error) {
	for msg := first; ; {
		if f := msg.GetFinal(); f != nil {
			return a.final(f, a.text.String(), a.callsIn(a.text.String()), a.lps), nil
		}
		a.lps = append(a.lps, a.add(msg.GetChunk())...)
		var err error
		if msg, err = openaihttp.Next(st); err != nil {
			return nil, err
		}
	}
}

// callsIn splits a whole chat reply into its content and tool calls (none without tools).
func (a *answer) callsIn(text string) *toolcall.Result {
	if a.c.Tools == 0 {
		return nil
	}
	res := a.c.Tools.Parse(text)
	return &res
}

// final is the last object of an answer: text is what it carries (all of it unstreamed,
// none streamed), calls the reply's tool calls when they were parsed whole, lps the
// log-probabilities of its tokens (all of them unstreamed, none streamed).
func (a *answer) final(f *specdv1.Final, text string, calls *toolcall.Result, lps []Logprob) any {
	now := time.Now().UTC()
	m := metrics(f.GetStats())
	if !a.c.Chat {
		r := &GenerateResponse{Model: a.c.Model, CreatedAt: now, Response: text, Done: true, DoneReason: doneReason(f.GetFinishReason()), Logprobs: lps, Metrics: m}
		if a.c.plain {
			r.Context = append(append([]int32(nil), a.c.Req.GetPromptIds()...), a.ids...)
		}
		return r
	}
	msg := Message{Role: "assistant", Content: text}
	if calls != nil && len(calls.Calls) > 0 {
		msg.Content, msg.ToolCalls = calls.Content, toolCalls(calls.Calls)
	}
	return &ChatResponse{Model: a.c.Model, CreatedAt: now, Message: msg, Done: true, DoneReason: doneReason(f.GetFinishReason()), Logprobs: lps, Metrics: m}
}

// toolCalls are calls as Ollama shapes them: the arguments an object.
func toolCalls(calls []toolcall.Call) []ToolCall {
	out := make([]ToolCall, len(calls))
	for i, c := range calls {
		args := c.Arguments
		if args == "" {
			args = "{}"
		}
		out[i] = ToolCall{ID: newCallID(), Function: ToolCallFunction{Index: i, Name: c.Name, Arguments: []byte(args)}}
	}
	return out
}

// newCallID is a fresh tool call id as Ollama makes one: "call_" and 8 lower-case
// letters or digits, which a client sends back as the tool message's tool_call_id.
func newCallID() string {
	const digits = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = digits[int(b[i])%len(digits)]
	}
	return "call_" + string(b)
}

// lines are the lines of a streamed answer that msg makes: one per piece of text
// (none for a chunk whose text is held back), and at the end the last, done, line. A
// streamed chat with tools sends the content as it comes and the calls in one line
// before the last, once the reply is known to be calls; a reply whose calls broke
// after they were begun is the error e instead (its content having been sent), so
// that no client takes a call the whole reply does not have.
func (a *answer) lines(msg *specdv1.GenerateResponse) ([]any, *Error) {
	now := time.Now().UTC()
	var out []any
	piece := func(text string, lps []Logprob) {
		if a.c.Chat {
			out = append(out, &ChatResponse{Model: a.c.Model, CreatedAt: now, Message: Message{Role: "assistant", Content: text}, Logprobs: lps})
		} else {
			out = append(out, &GenerateResponse{Model: a.c.Model, CreatedAt: now, Response: text, Logprobs: lps})
		}
	}
	events := func(evs []toolcall.Event) {
		for _, e := range evs {
			switch e.Kind {
			case toolcall.Content:
				piece(e.Text, nil)
			case toolcall.Begin:
				a.calls = append(a.calls, ToolCall{ID: newCallID(), Function: ToolCallFunction{Index: e.Call, Name: e.Text}})
			case toolcall.Args:
				a.calls[e.Call].Function.Arguments = append(a.calls[e.Call].Function.Arguments, e.Text...)
			}
		}
	}
	if ch := msg.GetChunk(); ch != nil {
		lps := a.add(ch)
		switch {
		case a.tools != nil:
			events(a.tools.Write(ch.GetText()))
			// The tokens' log-probabilities go with the first line they made, or in a
			// line of their own when their text is held back.
			switch {
			case len(lps) == 0:
			case len(out) == 0:
				piece("", lps)
			default:
				out[0].(*ChatResponse).Logprobs = lps
			}
		case ch.GetText() != "" || len(lps) > 0:
			piece(ch.GetText(), lps)
		}
		return out, nil
	}
	f := msg.GetFinal()
	if a.tools != nil {
		evs, err := a.tools.Close()
		events(evs)
		if err != nil {
			if !errors.Is(err, toolcall.ErrBroken) {
				return out, &Error{Status: http.StatusInternalServerError, Message: err.Error()}
			}
			return out, &Error{Status: http.StatusBadGateway, Message: fmt.Sprintf("the model's tool calls turned out malformed: %v (the rest of the reply was sent as content)", err)}
		}
		if len(a.calls) > 0 {
			for i := range a.calls {
				if len(a.calls[i].Function.Arguments) == 0 {
					a.calls[i].Function.Arguments = []byte("{}")
				}
			}
			out = append(out, &ChatResponse{Model: a.c.Model, CreatedAt: now, Message: Message{Role: "assistant", ToolCalls: a.calls}})
		}
	}
	return append(out, a.final(f, "", nil, nil)), nil
}
