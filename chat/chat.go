// Package chat renders a conversation into prompt text with a model's chat template, the
// Jinja program a GGUF file carries as tokenizer.chat_template, the way Hugging Face's
// apply_chat_template renders it: trim_blocks and lstrip_blocks on, the variables
// messages, add_generation_prompt, tools (Options.Tools, None without), documents (None), bos_token and eos_token,
// the request's own variables (Options.Vars, vLLM's chat_template_kwargs), the globals raise_exception and strftime_now, HF's own tojson filter (json.dumps
// with ensure_ascii off) and the sandbox's bound on range.
//
// The Jinja engine is github.com/ardanlabs/jinja. Its whitespace control reaches past
// neighbouring tags, so Parse applies Jinja2's itself (space.go). A template is configuration an
// operator chose (a model file or a flag), messages are untrusted input. The engine has
// no limits of its own, and a Go stack overflow cannot be recovered, so Parse writes
// guards into the source — every for loop's iterable and every macro call pass through
// functions Render provides — and refuses a template that uses a macro other than by
// calling it by name (which would slip past the guard). Render then bounds the items
// loops iterate, what range produces, the nesting and number of macro calls, stops when
// the context ends as a loop or a call starts, and turns an engine panic into an
// error. A template written to exhaust memory (a string doubled in a loop, or
// multiplied by a huge number) is not bounded.
//
// The package knows nothing of tokenizers or models: callers pass the text of the BOS
// and EOS tokens, and tokenize the result themselves.
package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// Message is one turn of a conversation, in the shape of OpenAI's chat messages. The
// template sees name and tool_call_id only when they are set, and tool_calls only when
// there are some.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Name is the speaker's name; of a "tool" message, the function whose result it
	// carries.
	Name string `json:"name,omitempty"`
	// ToolCallID: of a "tool" message, the id of the call it answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// ToolCalls: of an "assistant" message, the tool calls it made.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ToolCall is one call of a tool an assistant message made.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"` // "function"; empty is taken as that
	Function FunctionCall `json:"function"`
}

// FunctionCall is the function a ToolCall calls. Arguments is JSON text, as OpenAI's
// API carries it; the template gets the value it spells (an object, usually), as
// vLLM and Hugging Face's templates have it.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Options are the inputs of a rendering besides the messages.
type Options struct {
	// AddGenerationPrompt ends the text with the opening of an assistant turn.
	AddGenerationPrompt bool
	// BOS and EOS are the text of the model's BOS and EOS tokens, the template's
	// bos_token and eos_token; empty leaves the variable undefined, as HF does for a
	// tokenizer without that token.
	BOS, EOS string
	// Now is strftime_now's time; zero: the time of the call.
	Now time.Time
	// Tools are the template's tools variable (see Tool); nil: None.
	Tools []Tool
	// ContinueFinal renders the conversation without the generation prompt and ends
	// the text right after the final message's content, which must be the
	// assistant's, so that the model continues it (a prefill: vLLM's and Hugging
	// Face's continue_final_message). It excludes AddGenerationPrompt.
	ContinueFinal bool
	// Vars are extra variables the template sees (vLLM's chat_template_kwargs); the
	// zero Vars: none.
	Vars Vars
}

// Errors of Parse and Render.
var (
	// ErrTemplate: the template cannot be compiled, is refused (recursive macros), or
	// failed while rendering for a reason other than raise_exception.
	ErrTemplate = errors.New("chat template error")
	// ErrRejected: the template called raise_exception — it does not accept this
	// conversation (roles out of order, say). Render returns a *RaisedError.
	ErrRejected = errors.New("chat template rejected the conversation")
	// ErrNoTemplate: the model has no chat template and none was configured. Render
	// never returns it; callers holding a nil *Template do.
	ErrNoTemplate = errors.New("model has no chat template")
	// ErrArguments: a tool call's arguments are not JSON text. Render returns it
	// (wrapped, naming the call) before running the template; CheckArguments tells
	// ahead.
	ErrArguments = errors.New("tool call arguments are not valid JSON")
)

// RaisedError is the message of a template's raise_exception call.
type RaisedError struct{ Msg string }

func (e *RaisedError) Error() string { return ErrRejected.Error() + ": " + e.Msg }
func (e *RaisedError) Unwrap() error { return ErrRejected }

// MaxRange is the most items one call of range may produce, as Jinja's sandbox (which
// HF renders in) allows; a larger range is an error.
const MaxRange = 100_000

// maxRangeTotal bounds the items all range calls of one rendering produce together, so
// that nested loops over ranges end.
const maxRangeTotal = 10 * MaxRange

// jsonFilter is the name tojson is renamed to in the source, so that HF's tojson runs
// instead of the engine's built-in one (whose filters cannot be replaced).
const jsonFilter = "specd_hf_tojson"

// loopGuard is the function every for loop's iterable passes through (see rewrite): it
// counts the items the rendering iterates, refusing more than maxLoopItems, and stops
// the rendering when its context ends.
const loopGuard = "specd_loop_guard"

// callGuard is the function every macro call goes through (see rewrite): it counts
// the calls of the rendering, refusing more than maxCalls, and their nesting, refusing
// more than maxDepth, so that a recursive macro ends in an error, not in a Go stack
// overflow.
const callGuard = "specd_call_guard"

// maxDepth bounds the nesting of macro calls (Python's recursion limit stops HF's Jinja
// a little deeper); maxCalls bounds the macro calls of one rendering, so that a macro
// calling itself twice per level cannot run for hours.
const (
	maxDepth = 200
	maxCalls = 1 << 20
)

// maxLoopItems bounds the items all for loops of one rendering iterate together, so
// that a template cannot loop for hours (nested loops over a long message's
// characters, say).
const maxLoopItems = 2 << 20

// Template is a compiled chat template. It is immutable and safe for concurrent use.
type Template struct {
	t *jinja.Template
}

// Parse compiles a chat template. Errors wrap ErrTemplate: a syntax error, or a macro
// used other than by calling it by name (see checkMacros).
func Parse(src string) (t *Template, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("%w: the engine failed compiling it: %v", ErrTemplate, p)
		}
	}()
	// Jinja's lexer reads every line ending as "\n" and, without keep_trailing_newline
	// (which HF leaves off), drops one final newline.
	text := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(src)
	text = strings.TrimSuffix(text, "\n")
	tags, err := scanTags(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	macros := macroNames(text, tags)
	if err := checkMacros(text, tags, macros); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	jt, err := jinja.Compile(rewrite(text, tags, macros))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	return &Template{t: jt}, nil
}

// Render renders msgs. Errors: one wrapping ErrContinue when o.ContinueFinal cannot
// be honoured (see Options); a *RaisedError (wrapping ErrRejected) when the template
// called raise_exception; ctx's error when it ended while the template looped; an error
// wrapping ErrTemplate for any other failure of the template, loops and ranges past
// their bounds among them.
func (t *Template) Render(ctx context.Context, msgs []Message, o Options) (out string, err error) {
	if o.ContinueFinal {
		switch {
		case o.AddGenerationPrompt:
			return "", fmt.Errorf("%w: it excludes the generation prompt (a new assistant turn)", ErrContinue)
		case len(msgs) == 0 || msgs[len(msgs)-1].Role != "assistant":
			return "", fmt.Errorf("%w: the final message is not the assistant's", ErrContinue)
		case len(msgs[len(msgs)-1].ToolCalls) > 0:
			// The calls are rendered after the content: cutting after the content
			// would drop them without a word.
			return "", fmt.Errorf("%w: the final message made tool calls, which a continuation of its text would drop", ErrContinue)
		}
	}
	var raised *RaisedError
	var ctxErr error
	budget, loops, calls, depth := maxRangeTotal, maxLoopItems, maxCalls, 0
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		v, err := messageValue(m)
		if err != nil {
			return "", fmt.Errorf("message %d: %w", i, err)
		}
		list[i] = v
	}
	tools, err := toolsValue(o.Tools)
	if err != nil {
		return "", err
	}
	data := map[string]jinja.Value{}
	if o.Vars.text != "" {
		vars, err := varsValue(o.Vars.text)
		if err != nil {
			return "", err
		}
		for _, k := range vars.OrderedKeys() {
			data[k], _ = vars.Get(k)
		}
	}
	for k, v := range map[string]jinja.Value{
		"messages":              jinja.NewList(list),
		"add_generation_prompt": jinja.NewBool(o.AddGenerationPrompt),
		"tools":                 tools,
		"documents":             jinja.None(),
		"raise_exception": jinja.NewCallable("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			msg := ""
			switch {
			case len(args) == 0:
			case args[0].IsString():
				msg = args[0].AsString()
			default:
				msg = args[0].String()
			}
			raised = &RaisedError{Msg: msg}
			return jinja.Undefined(), raised
		}),
		"strftime_now": jinja.NewCallable("strftime_now", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) != 1 || !args[0].IsString() {
				return jinja.Undefined(), errors.New("strftime_now takes one format string")
			}
			return jinja.NewString(strftime(now, args[0].AsString())), nil
		}),
		"range": jinja.NewCallable("range", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if err := ctx.Err(); err != nil {
				ctxErr = err
				return jinja.Undefined(), err
			}
			return boundedRange(args, &budget)
		}),
		jsonFilter: jinja.NewCallable(jsonFilter, toJSON),
		loopGuard: jinja.NewCallable(loopGuard, func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) != 1 {
				return jinja.Undefined(), fmt.Errorf("%s takes one argument", loopGuard)
			}
			if err := ctx.Err(); err != nil {
				ctxErr = err
				return jinja.Undefined(), err
			}
			if loops -= items(args[0]); loops < 0 {
				return jinja.Undefined(), fmt.Errorf("loops too long: more than %d items iterated in one rendering", maxLoopItems)
			}
			return args[0], nil
		}),
		callGuard: jinja.NewCallable(callGuard, func(args []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
			if len(args) == 0 || !args[0].IsCallable() {
				return jinja.Undefined(), fmt.Errorf("%s: not a macro", callGuard)
			}
			if err := ctx.Err(); err != nil {
				ctxErr = err
				return jinja.Undefined(), err
			}
			if calls--; calls < 0 {
				return jinja.Undefined(), fmt.Errorf("more than %d macro calls in one rendering", maxCalls)
			}
			if depth >= maxDepth {
				return jinja.Undefined(), fmt.Errorf("macro calls nested deeper than %d", maxDepth)
			}
			depth++
			defer func() { depth-- }()
			return args[0].AsCallable().Fn(args[1:], kw)
		}),
	} {
		data[k] = v // over any request variable of the name, though ParseVars refuses them
	}
	if o.BOS != "" {
		data["bos_token"] = jinja.NewString(o.BOS)
	}
	if o.EOS != "" {
		data["eos_token"] = jinja.NewString(o.EOS)
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = "", fmt.Errorf("%w: the engine failed rendering it: %v", ErrTemplate, p)
		}
	}()
	out, err = t.t.RenderValues(data)
	switch {
	case err == nil && o.ContinueFinal:
		// What the template writes after the final message: rendered again with a
		// marker for its content, the text after the marker. The content is looked for
		// before it, so that content the end of the turn holds too ("<" in <|im_end|>)
		// is not found there.
		last := msgs[len(msgs)-1]
		last.Content = cutMarker
		v, merr := messageValue(last)
		if merr != nil {
			return "", fmt.Errorf("message %d: %w", len(msgs)-1, merr)
		}
		marked := slices.Clone(list)
		marked[len(marked)-1] = v
		data["messages"] = jinja.NewList(marked)
		budget, loops, calls, depth = maxRangeTotal, maxLoopItems, maxCalls, 0
		tail, ok := "", false
		if m, merr := t.t.RenderValues(data); merr == nil {
			if i := strings.LastIndex(m, cutMarker); i >= 0 {
				tail, ok = m[i+len(cutMarker):], true
			}
		}
		if ctxErr != nil {
			return "", ctxErr
		}
		return continuation(out, msgs, tail, ok)
	case err == nil:
		return out, nil
	case raised != nil:
		return "", raised
	case ctxErr != nil:
		return "", ctxErr
	}
	return "", fmt.Errorf("%w: %w", ErrTemplate, err)
}

// boundedRange is Python's range over ints, refusing more than MaxRange items in one
// call or more than *budget left in the rendering.
func boundedRange(args []jinja.Value, budget *int) (jinja.Value, error) {
	var start, stop, step int64 = 0, 0, 1
	for _, a := range args {
		if !a.IsInt() {
			return jinja.Undefined(), fmt.Errorf("range: %s is not an integer", a.String())
		}
	}
	switch len(args) {
	case 1:
		stop = args[0].AsInt()
	case 2:
		start, stop = args[0].AsInt(), args[1].AsInt()
	case 3:
		start, stop, step = args[0].AsInt(), args[1].AsInt(), args[2].AsInt()
	default:
		return jinja.Undefined(), fmt.Errorf("range takes 1 to 3 arguments, not %d", len(args))
	}
	if step == 0 {
		return jinja.Undefined(), errors.New("range: step must not be zero")
	}
	// The span and the count in uint64, which hold any difference of two int64s.
	var span, by uint64
	switch {
	case step > 0 && stop > start:
		span, by = uint64(stop)-uint64(start), uint64(step)
	case step < 0 && stop < start:
		span, by = uint64(start)-uint64(stop), -uint64(step)
	}
	var n uint64
	if by > 0 {
		n = span / by
		if span%by != 0 {
			n++
		}
	}
	if n > MaxRange {
		return jinja.Undefined(), fmt.Errorf("range too big: more than %d items", MaxRange)
	}
	if int(n) > *budget {
		return jinja.Undefined(), fmt.Errorf("ranges too big: more than %d items in one rendering", maxRangeTotal)
	}
	*budget -= int(n)
	items := make([]jinja.Value, n)
	for i := range items {
		items[i] = jinja.NewInt(start + int64(i)*step)
	}
	return jinja.NewList(items), nil
}

// items is the number of items a for loop over v iterates.
func items(v jinja.Value) int {
	switch {
	case v.IsList():
		return v.AsList().Len()
	case v.IsDict():
		return v.AsDict().Len()
	case v.IsString():
		return utf8.RuneCountInString(v.AsString())
	}
	return 0
}
