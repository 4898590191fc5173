package openaihttp

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/toolcall"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// finishReason maps specd's finish reasons to OpenAI's: the end-of-sequence token
// and a stop string are "stop"; max_tokens and a full context window are "length"; a
// first whole tool call (parallel_tool_calls false) "tool_calls".
func finishReason(f specdv1.FinishReason) string {
	switch f {
	case specdv1.FinishReason_FINISH_REASON_LENGTH, specdv1.FinishReason_FINISH_REASON_CONTEXT:
		return "length"
	case specdv1.FinishReason_FINISH_REASON_TOOL_CALL:
		return "tool_calls"
	}
	return "stop"
}

// usage is the OpenAI usage of a request served with stats s.
func usage(s *specdv1.Stats) *Usage {
	ms := func(d interface{ AsDuration() time.Duration }) float64 {
		return round(float64(d.AsDuration())/float64(time.Millisecond), 3)
	}
	u := &Usage{
		PromptTokens: int(s.GetPromptTokens()), CompletionTokens: int(s.GetCompletionTokens()),
		TotalTokens:         int(s.GetPromptTokens() + s.GetCompletionTokens()),
		PromptTokensDetails: &PromptTokens{CachedTokens: int(s.GetCachedPromptTokens())},
		Specd: &SpecdUsage{
			Rounds: int(s.GetRounds()), DraftedTokens: int(s.GetDraftedTokens()), AcceptedTokens: int(s.GetAcceptedTokens()),
			AcceptanceRate: round(float64(s.GetAcceptanceRate()), 4), MeanAcceptedPerRound: round(float64(s.GetMeanAcceptedPerRound()), 4),
			LookupTokens: int(s.GetLookupTokens()), LookupAcceptedTokens: int(s.GetLookupAcceptedTokens()),
			Fallbacks: int(s.GetFallbacks()), DraftRefusals: int(s.GetDraftRefusals()), Failovers: int(s.GetFailovers()),
			Verifier: s.GetVerifier().GetAddress(), Draft: s.GetDraft().GetAddress(), DraftModel: s.GetDraft().GetModel(),
			TimeToFirstTokenMS: ms(s.GetTimeToFirstToken()), TotalMS: ms(s.GetTotalDuration()),
			QueueWaitMS: ms(s.GetQueueWait()), MeanRoundTripMS: ms(s.GetMeanRoundTrip()),
			DecodeTokensPerSecond: round(s.GetDecodeTokensPerSecond(), 1),
		},
	}
	if m := s.GetMode(); m != specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED {
		u.Specd.Mode = strings.ToLower(strings.TrimPrefix(m.String(), "VERIFICATION_MODE_"))
	}
	return u
}

// round rounds x to digits decimals, so that a float32 statistic reads 0.3333, not
// 0.3333333432674408.
func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// modelName is the model a response names: the one that served it, else the one asked for.
func modelName(c *Call, s *specdv1.Stats) string {
	return cmp.Or(s.GetVerifier().GetModel(), c.Model)
}

// completion is the whole response of a non-streamed text completion: one choice per
// response, in order.
func completion(c *Call, id string, created int64, rs []*specdv1.CompleteResponse) *Completion {
	out := &Completion{Head: Head{ID: id, Object: "text_completion", Created: created, Model: modelName(c, rs[0].GetStats())},
		Usage: usage(mergeStats(rs, c.perPrompt()))}
	for i, r := range rs {
		fr := finishReason(r.GetFinishReason())
		ch := CompletionChoice{Index: i, Text: r.GetText(), FinishReason: &fr}
		gen := r.GetLogprobs()
		if c.ScoreOnly {
			ch.Text, gen, fr = "", nil, "length"
		}
		if c.Echo {
			ch.Text = echoText(c.Choice(i), r) + ch.Text
		}
		switch {
		case c.Echo && c.Req.GetLogprobs():
			offset := textOffset{spelled: c.Choice(i).GetPrompt() == ""}
			ch.Logprobs = completionLogprobs(r.GetPromptLogprobs(), &offset)
			if len(ch.Logprobs.Tokens) > 0 {
				ch.Logprobs.TokenLogprobs[0], ch.Logprobs.TopLogprobs[0] = nil, nil // nothing predicts it
			}
			offset.endSpelling()
			if end := r.GetEndLogprobs(); end != nil && !c.ScoreOnly {
				// The token that ended the text has its entry too, as in OpenAI's and
				// vLLM's echo: a harness scoring with max_tokens 1 reads the prompt's
				// entries as all but the last.
				gen = append(slices.Clip(gen), end)
			}
			ch.Logprobs = joinLogprobs(ch.Logprobs, completionLogprobs(gen, &offset))
		case c.Req.GetLogprobs():
			ch.Logprobs = completionLogprobs(gen, &textOffset{})
		}
		out.Choices = append(out.Choices, ch)
	}
	if c.ScoreOnly {
		out.Usage.CompletionTokens, out.Usage.TotalTokens = 0, out.Usage.PromptTokens
	}
	return out
}

// echoText is the prompt as an echo shows it: the text the client sent, or a prompt of
// token ids spelled by its tokens' bytes (see spelling).
func echoText(req *specdv1.GenerateRequest, r *specdv1.CompleteResponse) string {
	if req.GetPrompt() != "" {
		return req.GetPrompt()
	}
	var sp spelling
	for _, lp := range r.GetPromptLogprobs() {
		sp.add(lp.GetToken())
	}
	return sp.text(true)
}

// spelling turns tokens' bytes into text as they arrive (see spell).
type spelling struct{ partial []byte }

// add takes a token's bytes.
func (s *spelling) add(b []byte) { s.partial = append(s.partial, b...) }

// text returns what the bytes taken so far complete; with end, all of them.
func (s *spelling) text(end bool) string {
	text, rest := spell(s.partial, nil, end)
	s.partial = append(s.partial[:0], rest...)
	return text
}

// spell returns the text that b completes after the bytes pending: whole characters,
// one U+FFFD for each byte that begins no whole character, and — unless end — the
// bytes of a character not yet complete held back, in rest (a new slice).
func spell(pending, b []byte, end bool) (text string, rest []byte) {
	buf := append(append(make([]byte, 0, len(pending)+len(b)), pending...), b...)
	var sb strings.Builder
	i := 0
	for i < len(buf) && (end || utf8.FullRune(buf[i:])) {
		r, n := utf8.DecodeRune(buf[i:])
		if r == utf8.RuneError && n == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(buf[i : i+n])
		}
		i += n
	}
	return sb.String(), buf[i:]
}

// chatCompletion is the whole response of a non-streamed chat completion: one choice
// per response, in order.
func chatCompletion(c *Call, id string, created int64, rs []*specdv1.CompleteResponse) *ChatCompletion {
	out := &ChatCompletion{Head: Head{ID: id, Object: "chat.completion", Created: created, Model: modelName(c, rs[0].GetStats())},
		Usage: usage(mergeStats(rs, c.perPrompt()))}
	for i, r := range rs {
		text := r.GetText()
		ch := ChatChoice{Index: i, Message: ChatMessage{Role: "assistant", Content: &text}, FinishReason: finishReason(r.GetFinishReason())}
		if c.Tools != 0 {
			if res := c.Tools.Parse(text); len(res.Calls) > 0 {
				calls := res.Calls
				if c.OneCall {
					calls = calls[:1]
				}
				ch.Message.Content, ch.Message.ToolCalls, ch.FinishReason = contentOrNull(res.Content), toolCalls(calls), "tool_calls"
			}
		}
		if c.ChatEcho != "" {
			echoed := c.ChatEcho
			if ch.Message.Content != nil {
				echoed += *ch.Message.Content
			}
			ch.Message.Content = &echoed
		}
		if c.Req.GetLogprobs() {
			ch.Logprobs = chatLogprobs(r.GetLogprobs())
		}
		out.Choices = append(out.Choices, ch)
	}
	return out
}

// contentOrNull is s as a message's content: null when empty.
func contentOrNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// toolCalls are the calls found in a reply as OpenAI's API returns them, each with an
// id of its own.
func toolCalls(calls []toolcall.Call) []ToolCall {
	out := make([]ToolCall, len(calls))
	for i, c := range calls {
		out[i] = ToolCall{ID: newToolCallID(), Type: "function"}
		out[i].Function.Name, out[i].Function.Arguments = c.Name, Arguments(c.Arguments)
	}
	return out
}

// statsOf is anything with the stats of one choice.
type statsOf interface{ GetStats() *specdv1.Stats }

// mergeStats sums the stats of a request's choices, each a generation of its own, as
// its usage reports them: the prompt once (each choice had it; the prefix cache
// serves the later ones), completion tokens, speculation counts, fallbacks and
// failovers summed, rates recomputed from the sums (the mean round trip weighted by
// rounds), decode rates added (the choices ran side by side), and the longest of the
// waits and durations but the shortest time to a first token. Each prompt of a batch
// counts once (its first choice's prompt and cached tokens; perPrompt is n). The
// endpoints are the first choice's.
func mergeStats[T statsOf](rs []T, perPrompt int) *specdv1.Stats {
	if len(rs) == 1 {
		return rs[0].GetStats()
	}
	out := proto.Clone(rs[0].GetStats()).(*specdv1.Stats)
	if out == nil {
		out = &specdv1.Stats{}
	}
	var rtt time.Duration
	rtt += out.GetMeanRoundTrip().AsDuration() * time.Duration(out.GetRounds())
	for i, r := range rs[1:] {
		s := r.GetStats()
		if (i+1)%perPrompt == 0 {
			// The first choice of another prompt of a batch: its prompt counts too.
			out.PromptTokens += s.GetPromptTokens()
			out.CachedPromptTokens += s.GetCachedPromptTokens()
		}
		out.CompletionTokens += s.GetCompletionTokens()
		out.Rounds += s.GetRounds()
		out.DraftedTokens += s.GetDraftedTokens()
		out.AcceptedTokens += s.GetAcceptedTokens()
		out.LookupTokens += s.GetLookupTokens()
		out.LookupAcceptedTokens += s.GetLookupAcceptedTokens()
		out.Fallbacks += s.GetFallbacks()
		out.Failovers += s.GetFailovers()
		out.DraftRefusals += s.GetDraftRefusals()
		out.DecodeTokensPerSecond += s.GetDecodeTokensPerSecond()
		rtt += s.GetMeanRoundTrip().AsDuration() * time.Duration(s.GetRounds())
		if d := s.GetTimeToFirstToken(); d != nil && (out.TimeToFirstToken == nil || d.AsDuration() < out.TimeToFirstToken.AsDuration()) {
			out.TimeToFirstToken = d
		}
		if d := s.GetTotalDuration(); d.AsDuration() > out.GetTotalDuration().AsDuration() {
			out.TotalDuration = d
		}
		if d := s.GetQueueWait(); d.AsDuration() > out.GetQueueWait().AsDuration() {
			out.QueueWait = d
		}
	}
	out.AcceptanceRate, out.MeanAcceptedPerRound, out.MeanRoundTrip = 0, 0, nil
	if out.DraftedTokens > 0 {
		out.AcceptanceRate = float32(out.AcceptedTokens) / float32(out.DraftedTokens)
	}
	if out.Rounds > 0 {
		out.MeanAcceptedPerRound = float32(out.AcceptedTokens) / float32(out.Rounds)
		out.MeanRoundTrip = durationpb.New(rtt / time.Duration(out.Rounds))
	}
	return out
}

// TokenText is how the chat API shows a token: its text, or, when its bytes are not whole
// UTF-8 characters (part of a character a byte-level vocabulary splits), "bytes:"
// and their escapes, as OpenAI's API does (and specd generate --json).
func TokenText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.WriteString("bytes:")
	for _, c := range b {
		fmt.Fprintf(&sb, "\\x%02x", c)
	}
	return sb.String()
}

// ByteValues is b as the JSON array of numbers the chat API gives.
func ByteValues(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// textOffset follows a completion's text as its tokens' log-probabilities come, to
// show each token as the text it adds there and where that starts, in characters:
// vLLM's tokens and text_offset, with text[offset:offset+len(token)] == token for every
// token of the text. A token of the generation, or of an echoed text prompt, shows its
// decoded text (TokenLogprob.text): nothing for a control token, which the text does
// not show, nor for one that begins a character a later token completes (that one
// shows the whole character); a SentencePiece prompt's first piece without its
// dummy-prefix space. A token of an echoed prompt of token ids shows the bytes the
// echo spells for it (see spelling), a control token's as the vocabulary spells it.
type textOffset struct {
	chars   int    // characters of the text so far
	spelled bool   // the tokens are an echo of a prompt of token ids
	partial []byte // spelled: the bytes of a character begun and not yet completed
}

// show is what a token with bytes b and decoded text text shows where o stands.
func (o *textOffset) show(b []byte, text string) string {
	if !o.spelled {
		return text
	}
	text, _ = spell(o.partial, b, false)
	return text
}

// next moves o past a token with bytes b and decoded text text, and returns what the
// token shows and where that starts.
func (o *textOffset) next(b []byte, text string) (shown string, start int) {
	start = o.chars
	if shown = text; o.spelled {
		var rest []byte
		shown, rest = spell(o.partial, b, false)
		o.partial = append(o.partial[:0], rest...)
	}
	o.chars += utf8.RuneCountInString(shown)
	return shown, start
}

// endSpelling ends the echo of a prompt of token ids: the bytes of a character it left
// incomplete show as one U+FFFD each, and the generation's tokens follow.
func (o *textOffset) endSpelling() {
	if o.spelled {
		text, _ := spell(o.partial, nil, true)
		o.chars += utf8.RuneCountInString(text)
		o.partial, o.spelled = nil, false
	}
}

// unlikely is the log-probability OpenAI's API documents for a token too unlikely to
// tell, and vLLM's floor.
const unlikely = -9999

// FiniteLogprob is v as JSON can carry it: JSON has no infinities or NaN, and encoding one
// fails the whole response. A log-probability below unlikely (-Inf: a token the model
// rules out) or NaN (broken arithmetic) is unlikely; +Inf, as impossible, is certainty.
func FiniteLogprob(v float32) float32 {
	switch {
	case math.IsInf(float64(v), 1):
		return 0
	case !(v >= unlikely):
		return unlikely
	}
	return v
}

// completionLogprobs converts tokens' log-probabilities to the completions API's
// arrays; offset stands where the first of them starts in the text, and is moved past
// them.
func completionLogprobs(lps []*specdv1.TokenLogprob, offset *textOffset) *CompletionLogprobs {
	out := &CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []*float32{}, TopLogprobs: []TokenChoices{}, TextOffset: []int{}}
	for _, lp := range lps {
		// The likeliest tokens, each as it would show there, and the chosen one where
		// it is not among them (so up to logprobs+1 entries, as OpenAI's API says).
		top := make(TokenChoices, 0, len(lp.GetTop())+1)
		chosen := false
		for _, t := range lp.GetTop() {
			top = append(top, TokenChoice{Token: offset.show(t.GetToken(), t.GetText()), Logprob: FiniteLogprob(t.GetLogprob())})
			chosen = chosen || t.GetLogprob() == lp.GetLogprob() && bytes.Equal(t.GetToken(), lp.GetToken())
		}
		tok, start := offset.next(lp.GetToken(), lp.GetText())
		out.Tokens = append(out.Tokens, tok)
		out.TokenLogprobs = append(out.TokenLogprobs, new(FiniteLogprob(lp.GetLogprob())))
		out.TextOffset = append(out.TextOffset, start)
		if !chosen {
			top = append(top, TokenChoice{Token: tok, Logprob: FiniteLogprob(lp.GetLogprob())})
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
	}
	return out
}

// chatLogprobs converts tokens' log-probabilities to the chat API's.
func chatLogprobs(lps []*specdv1.TokenLogprob) *ChatLogprobs {
	out := &ChatLogprobs{Content: make([]ChatTokenLogprob, len(lps))}
	for i, lp := range lps {
		top := make([]ChatTopLogprob, len(lp.GetTop()))
		for j, t := range lp.GetTop() {
			top[j] = ChatTopLogprob{Token: TokenText(t.GetToken()), Logprob: FiniteLogprob(t.GetLogprob()), Bytes: ByteValues(t.GetToken())}
		}
		out.Content[i] = ChatTokenLogprob{Token: TokenText(lp.GetToken()), Logprob: FiniteLogprob(lp.GetLogprob()), Bytes: ByteValues(lp.GetToken()), TopLogprobs: top}
	}
	return out
}

// chunker builds the chunks of one streamed response.
type chunker struct {
	c         *Call
	chat      bool
	perPrompt int                // n, the choices of each prompt
	logprobs  bool               // the client asked for log-probabilities
	head      Head               // the same in every chunk
	started   []bool             // per choice: a chat stream has sent its first chunk, the one with the role
	offset    []textOffset       // per choice: where its next token starts in its text
	tools     []*toolcall.Stream // per choice, with Call.Tools: the tool calls in its reply
	called    []bool             // per choice, with Call.Tools: a call has begun
	broken    []error            // per choice, with Call.Tools: its calls broke after they were sent (toolcall.ErrBroken)
	echo      []echoState        // per choice, with Call.Echo
}

// echoState is how far a choice's stream has echoed its prompt.
type echoState struct {
	prompt string   // the prompt's text ("": a prompt of token ids)
	text   bool     // the prompt's text (of a text prompt) has been sent
	seen   int      // prompt log-probabilities received
	spell  spelling // a prompt of token ids: its bytes not yet sent as text
	closed bool     // the echo is over: the generation follows
}

func newChunker(c *Call, id string, created int64) *chunker {
	k := &chunker{c: c, chat: c.Chat, perPrompt: c.perPrompt(), logprobs: c.Req.GetLogprobs(), head: Head{ID: id, Object: "text_completion", Created: created, Model: c.Model},
		started: make([]bool, c.N), offset: make([]textOffset, c.N)}
	if c.Chat {
		k.head.Object = "chat.completion.chunk"
	}
	if c.Tools != 0 {
		k.tools, k.called, k.broken = make([]*toolcall.Stream, c.N), make([]bool, c.N), make([]error, c.N)
		for i := range k.tools {
			k.tools[i] = c.Tools.NewStream()
		}
	}
	if c.Echo {
		k.echo = make([]echoState, c.N)
		for i := range k.echo {
			k.echo[i].prompt = c.Choice(i).GetPrompt()
			k.offset[i].spelled = k.echo[i].prompt == ""
		}
	}
	return k
}

// echoed returns the text and log-probabilities by which choice i's echo goes on with
// the prompt log-probabilities lps: the prompt's text first (of a text prompt, at
// once; of one of token ids, as its tokens spell it), and the entries themselves when
// the client asked for log-probabilities, the first null as in the unstreamed echo.
// With end the echo is over: a prompt of token ids sends the rest of its spelling.
func (k *chunker) echoed(i int, lps []*specdv1.TokenLogprob, end bool) (string, *CompletionLogprobs) {
	e := &k.echo[i]
	if e.closed {
		return "", nil
	}
	var text string
	if e.prompt != "" {
		if !e.text {
			e.text, text = true, e.prompt
		}
	} else {
		for _, lp := range lps {
			e.spell.add(lp.GetToken())
		}
		text = e.spell.text(end)
	}
	e.closed = end
	var out *CompletionLogprobs
	if k.logprobs && len(lps) > 0 {
		out = completionLogprobs(lps, &k.offset[i])
		if e.seen == 0 {
			out.TokenLogprobs[0], out.TopLogprobs[0] = nil, nil // nothing predicts it
		}
		e.seen += len(lps)
	}
	if end {
		k.offset[i].endSpelling()
	}
	return text, out
}

// chunk is the chunks carrying what msg adds to choice i's answer; none when they
// would carry nothing. An echo's prompt log-probabilities come before any generated
// token.
func (k *chunker) chunk(i int, msg *specdv1.TokenChunk) []any {
	if k.chat {
		return append(k.opening(i), k.text(i, msg.GetText(), msg.GetLogprobs())...)
	}
	if k.echo == nil {
		return k.text(i, msg.GetText(), msg.GetLogprobs())
	}
	generated := len(msg.GetTokenIds()) > 0 || msg.GetText() != ""
	text, lp := k.echoed(i, msg.GetPromptLogprobs(), generated)
	if generated && !k.c.ScoreOnly {
		text += msg.GetText()
		if k.logprobs && len(msg.GetLogprobs()) > 0 {
			lp = joinLogprobs(lp, completionLogprobs(msg.GetLogprobs(), &k.offset[i]))
		}
	}
	if text == "" && lp == nil {
		return nil
	}
	return []any{&Completion{Head: k.head, Choices: []CompletionChoice{{Index: i, Text: text, Logprobs: lp}}}}
}

// joinLogprobs is a's entries followed by b's; a may be nil.
func joinLogprobs(a, b *CompletionLogprobs) *CompletionLogprobs {
	if a == nil {
		return b
	}
	a.Tokens = append(a.Tokens, b.Tokens...)
	a.TokenLogprobs = append(a.TokenLogprobs, b.TokenLogprobs...)
	a.TopLogprobs = append(a.TopLogprobs, b.TopLogprobs...)
	a.TextOffset = append(a.TextOffset, b.TextOffset...)
	return a
}

// opening is the chunk that starts chat choice i's stream with the echo of the final
// message (Call.ChatEcho), ahead of the generation, as vLLM streams it; none when
// there is no echo or the choice has begun.
func (k *chunker) opening(i int) []any {
	if k.c.ChatEcho == "" || k.started[i] {
		return nil
	}
	return []any{&ChatChunk{Head: k.head, Choices: []ChatChunkChoice{{Index: i, Delta: k.delta(i, k.c.ChatEcho)}}}}
}

// delta is a chat chunk's delta for choice i: the role goes in its first.
func (k *chunker) delta(i int, text string) ChatDelta {
	d := ChatDelta{Content: text}
	if !k.started[i] {
		k.started[i], d.Role = true, "assistant"
	}
	return d
}

// text is the chunks carrying a piece of choice i's answer, and the
// log-probabilities of the tokens that came with it when the client asked for them;
// none when they would carry nothing. With tool calls parsed, the piece is what the
// choice's toolcall.Stream passes on (see tool).
func (k *chunker) text(i int, s string, lps []*specdv1.TokenLogprob) []any {
	if !k.logprobs {
		lps = nil
	}
	if k.tools != nil {
		return k.tool(i, k.tools[i].Write(s), lps)
	}
	if s == "" && len(lps) == 0 {
		return nil
	}
	if !k.chat {
		ch := CompletionChoice{Index: i, Text: s}
		if len(lps) > 0 {
			ch.Logprobs = completionLogprobs(lps, &k.offset[i])
		}
		return []any{&Completion{Head: k.head, Choices: []CompletionChoice{ch}}}
	}
	ch := ChatChunkChoice{Index: i, Delta: k.delta(i, s)}
	if len(lps) > 0 {
		ch.Logprobs = chatLogprobs(lps)
	}
	return []any{&ChatChunk{Head: k.head, Choices: []ChatChunkChoice{ch}}}
}

// tool is the chat chunks of choice i that carry evs, what its tool call parser
// passes on, as OpenAI's API streams calls: answer text as content; a call's start
// as a tool call with its index, a fresh id "call_…", type "function", the
// function's name and arguments ""; then pieces of its arguments, each a tool call
// with the index and the text to append. One chunk per event; the log-probabilities
// lps go in the first, or in a chunk of their own when there are no events (the
// tokens of text held back).
func (k *chunker) tool(i int, evs []toolcall.Event, lps []*specdv1.TokenLogprob) []any {
	var out []any
	for _, e := range evs {
		if k.c.OneCall && e.Kind != toolcall.Content && e.Call > 0 {
			continue // parallel_tool_calls false: the first call alone
		}
		d := k.delta(i, "")
		switch e.Kind {
		case toolcall.Content:
			d.Content = e.Text
		case toolcall.Begin:
			k.called[i] = true
			d.ToolCalls = []ToolCallDelta{{Index: e.Call, ID: newToolCallID(), Type: "function", Function: FunctionDelta{Name: e.Text}}}
		case toolcall.Args:
			d.ToolCalls = []ToolCallDelta{{Index: e.Call, Function: FunctionDelta{Arguments: e.Text}}}
		}
		out = append(out, &ChatChunk{Head: k.head, Choices: []ChatChunkChoice{{Index: i, Delta: d}}})
	}
	if len(lps) > 0 {
		if len(out) == 0 {
			out = append(out, &ChatChunk{Head: k.head, Choices: []ChatChunkChoice{{Index: i, Delta: k.delta(i, "")}}})
		}
		out[0].(*ChatChunk).Choices[0].Logprobs = chatLogprobs(lps)
	}
	return out
}

// final are the last chunks of choice i: with tool calls parsed, the rest of what
// its parser passes on, then the chunk with the finish reason ("tool_calls" when the
// reply is calls). A choice whose calls broke after they were sent keeps its own
// finish reason and is noted for toolError. A stream that named no model learns here
// which one served it.
func (k *chunker) final(c *Call, i int, f *specdv1.Final) []any {
	var out []any
	if k.chat {
		out = k.opening(i) // a reply that generated nothing still has its echo
	}
	fr := finishReason(f.GetFinishReason())
	if k.tools != nil {
		evs, err := k.tools[i].Close()
		out = append(out, k.tool(i, evs, nil)...)
		switch {
		case err != nil:
			k.broken[i] = err
		case k.called[i]:
			fr = "tool_calls"
		}
	}
	return append(out, k.last(c, i, f, fr))
}

// toolError is the error that ends a stream in which some choice's tool calls broke
// after they were sent (a call begun, then the reply was not calls after all: its
// JSON malformed or cut off), so that a client does not take what it accumulated for
// a call; nil when none did. The chunks have carried the rest of such a reply as
// content, and its own finish reason.
func (k *chunker) toolError() *Error {
	var msgs []string
	for i, err := range k.broken {
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("choice %d: %v", i, err))
		}
	}
	if msgs == nil {
		return nil
	}
	return &Error{Status: http.StatusBadGateway, Type: TypeServer, Code: "invalid_tool_call",
		Message: strings.Join(msgs, "; ") + " (the rest of the reply was sent as content; the calls sent are not to be used)"}
}

// last is the chunk with choice i's finish reason fr.
func (k *chunker) last(c *Call, i int, f *specdv1.Final, fr string) any {
	k.head.Model = modelName(c, f.GetStats())
	if !k.chat {
		ch := CompletionChoice{Index: i, FinishReason: &fr}
		if k.echo != nil {
			// The rest of the echo, if the generation added nothing to end it; the
			// token that ended the text keeps its entry, as in the unstreamed echo.
			ch.Text, ch.Logprobs = k.echoed(i, nil, true)
			if end := f.GetEndLogprobs(); end != nil && k.logprobs && !c.ScoreOnly {
				ch.Logprobs = joinLogprobs(ch.Logprobs, completionLogprobs([]*specdv1.TokenLogprob{end}, &k.offset[i]))
			}
			if c.ScoreOnly {
				fr = "length"
			}
		}
		return &Completion{Head: k.head, Choices: []CompletionChoice{ch}}
	}
	return &ChatChunk{Head: k.head, Choices: []ChatChunkChoice{{Index: i, Delta: k.delta(i, ""), FinishReason: &fr}}}
}

// usage is the last chunk of a stream that asked for usage: no choices, the usage of
// every choice's final message.
func (k *chunker) usage(fs []*specdv1.Final) any {
	u := usage(mergeStats(fs, k.perPrompt))
	if k.c.ScoreOnly {
		u.CompletionTokens, u.TotalTokens = 0, u.PromptTokens
	}
	if !k.chat {
		return &Completion{Head: k.head, Choices: []CompletionChoice{}, Usage: u}
	}
	return &ChatChunk{Head: k.head, Choices: []ChatChunkChoice{}, Usage: u}
}
