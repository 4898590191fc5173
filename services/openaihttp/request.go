package openaihttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/grammar"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/toolcall"
	"google.golang.org/protobuf/proto"
)

// Defaults where the OpenAI API has its own.
const (
	// DefaultCompletionMaxTokens is max_tokens of a completion that sets none, as in
	// OpenAI's API. A chat completion without one runs up to the context.
	DefaultCompletionMaxTokens = 16
	// DefaultTemperature is the temperature of a request that sets none, as in
	// OpenAI's API (specd's gRPC API defaults to greedy decoding instead).
	DefaultTemperature = 1.0
)

// Call is a parsed and validated generation request: what to ask the router and how
// to answer the client.
type Call struct {
	Req          *specdv1.GenerateRequest
	Chat         bool   // a chat completion (else a text completion)
	Stream       bool   // answer with server-sent events
	IncludeUsage bool   // with Stream: a last chunk with the usage
	Model        string // the model as the client named it ("" : the router's default)
	// N is how many choices to generate, each a request of its own (see Choice): n per
	// prompt, for each prompt of a batch.
	N     int
	batch []Prompt // a completion's batch of prompts (nil: one prompt, in Req)
	// Tools is the syntax the reply's tool calls are found in (0: the reply is an
	// answer, its text the content).
	Tools toolcall.Syntax
	// OneCall (parallel_tool_calls false) answers with a reply's first call alone, as
	// vLLM does, and the generation ends as soon as that call is whole (Req's
	// stop_after_tool_call), so later calls are neither generated nor counted; calls
	// after it, if some reply still held them, are dropped, streamed or not.
	OneCall bool
	// Echo: a completion's text (and log-probabilities) start with the prompt's;
	// ScoreOnly: with echo and max_tokens 0, they hold the prompt's alone.
	Echo, ScoreOnly bool
	// ChatEcho is what a chat reply's content starts with: with echo, the final
	// message's content when that message is the assistant's, as vLLM echoes it (not
	// fed to the tool call parser, no log-probabilities of its own); "": nothing.
	ChatEcho string

	// toolIndex maps the index of a tool the router got to the client's index of it,
	// when allowed_tools let only some through (nil: the same).
	toolIndex []int

	// maxTokensParam is the name the client used for the length limit, and
	// formatParam the one it asked for a response format with (response_format,
	// guided_json, …; "": none), so that an error about either names what the client
	// sent.
	maxTokensParam, formatParam string
}

// MaxChoices bounds n, the choices one request asks for per prompt: each is a
// generation of its own, run concurrently.
const MaxChoices = 16

// MaxGenerations bounds the generations of one request, prompts times n (a completion
// may send a batch of prompts, as evaluation harnesses do).
const MaxGenerations = 64

// Choice is the request of choice i of c (prompt-major: choice i is choice i%n of
// prompt i/n, as OpenAI's API orders them): c.Req with that prompt, and with seed + i%n
// when c sets a seed, so that a prompt's choices differ and each is reproducible (its
// choice j with seed s is the request with n 1 and seed s + j); without a seed each
// choice gets its own random seed from the router. With temperature 0 every choice of a
// prompt is the same greedy text, as in OpenAI's API.
func (c *Call) Choice(i int) *specdv1.GenerateRequest {
	n := c.perPrompt()
	j := i % n
	if len(c.batch) <= 1 && (j == 0 || c.Req.GetSampling().Seed == nil) {
		return c.Req
	}
	req := proto.Clone(c.Req).(*specdv1.GenerateRequest)
	if len(c.batch) > 1 {
		p := c.batch[i/n]
		req.Prompt, req.PromptIds = p.Text, p.IDs
	}
	if j > 0 && req.Sampling.Seed != nil {
		seed := req.Sampling.GetSeed() + uint64(j)
		req.Sampling.Seed = &seed
	}
	return req
}

// perPrompt is n, the choices of each prompt.
func (c *Call) perPrompt() int { return c.N / max(len(c.batch), 1) }

// Prompt is the prompt of a completion request: a string, an array of one string, an
// array of token ids, or an array of one array of token ids; or a batch of prompts, an
// array of several strings or several arrays of token ids.
type Prompt struct {
	Text  string
	IDs   []int32
	Batch []Prompt // several prompts (then Text and IDs are unset)
	Set   bool     // the request had a non-null prompt
}

// UnmarshalJSON decodes any of the forms.
func (p *Prompt) UnmarshalJSON(b []byte) error {
	*p = Prompt{}
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	p.Set = true
	return p.decode(b, false)
}

// decode decodes a prompt, or with inner the one element of an array of prompts.
func (p *Prompt) decode(b []byte, inner bool) error {
	if len(b) > 0 && b[0] == '"' && !inner {
		return paramJSON("prompt", json.Unmarshal(b, &p.Text))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return badParam("prompt", "want a string, an array of token ids, or an array of one of those")
	}
	if len(items) == 0 {
		return badParam("prompt", "empty array")
	}
	first := bytes.TrimSpace(items[0])
	if !inner && len(first) > 0 && (first[0] == '"' || first[0] == '[') {
		if len(items) > 1 {
			if len(items) > MaxGenerations {
				return badParam("prompt", "%d prompts: at most %d", len(items), MaxGenerations)
			}
			// A batch: all strings, or all arrays of token ids.
			p.Batch = make([]Prompt, len(items))
			for i, it := range items {
				it = bytes.TrimSpace(it)
				var one Prompt
				var err error
				switch {
				case first[0] == '"' && len(it) > 0 && it[0] == '"':
					err = paramJSON("prompt", json.Unmarshal(it, &one.Text))
				case first[0] == '[' && len(it) > 0 && it[0] == '[':
					err = one.decode(it, true)
				default:
					err = badParam("prompt", "prompt %d of the batch: a batch is all strings or all arrays of token ids", i)
				}
				if err != nil {
					return err
				}
				if one.Text == "" && len(one.IDs) == 0 {
					return badParam("prompt", "prompt %d of the batch is empty", i)
				}
				p.Batch[i] = one
			}
			return nil
		}
		if first[0] == '"' {
			return paramJSON("prompt", json.Unmarshal(first, &p.Text))
		}
		return p.decode(first, true)
	}
	var ids []int64
	if err := json.Unmarshal(b, &ids); err != nil {
		return badParam("prompt", "want an array of integer token ids")
	}
	p.IDs = make([]int32, len(ids))
	for i, id := range ids {
		if id < 0 || id > math.MaxInt32 {
			return badParam("prompt", "token id %d at index %d is out of range", id, i)
		}
		p.IDs[i] = int32(id)
	}
	return nil
}

// Stop is the stop parameter: null, one string, or an array of strings.
type Stop []string

// UnmarshalJSON decodes either form.
func (s *Stop) UnmarshalJSON(b []byte) error {
	*s = nil
	if one, null, ok, err := nullOrString(b, "stop"); ok || err != nil {
		if ok && !null {
			*s = Stop{one}
		}
		return err
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return badParam("stop", "want a string or an array of strings")
	}
	*s = many
	return nil
}

// nullOrString decodes b if it is JSON null or a string: ok reports that it was one
// of those, null which. A malformed string is a bad param.
func nullOrString(b []byte, param string) (s string, null, ok bool, err error) {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return "", true, true, nil
	case len(b) > 0 && b[0] == '"':
		if err := json.Unmarshal(b, &s); err != nil {
			return "", false, false, badParam(param, "%v", err)
		}
		return s, false, true, nil
	}
	return "", false, false, nil
}

// Content is the content of a chat message: null, a string, or an array of parts of
// which only text parts are supported; their texts are joined with newlines.
type Content string

// UnmarshalJSON decodes any form.
func (c *Content) UnmarshalJSON(b []byte) error {
	*c = ""
	if s, _, ok, err := nullOrString(b, "messages"); ok || err != nil {
		*c = Content(s)
		return err
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return badParam("messages", "content: want a string or an array of content parts")
	}
	texts := make([]string, len(parts))
	for i, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return badParam("messages", "content part %d: type %q is not supported, only text parts with a text", i, p.Type)
		}
		texts[i] = *p.Text
	}
	*c = Content(strings.Join(texts, "\n"))
	return nil
}

// ParseCompletion decodes and validates the body of POST /v1/completions. Its errors
// are *Error values (400, naming the parameter).
func ParseCompletion(body []byte) (*Call, error) {
	var r CompletionRequest
	if err := decode(body, &r); err != nil {
		return nil, err
	}
	// With echo, max_tokens 0 scores the prompt alone: one token is generated, and
	// left out of the response.
	scoreOnly := false
	for _, lim := range []*int64{r.MaxTokens, r.MaxCompletionTokens} {
		if r.Echo && lim != nil && *lim == 0 {
			*lim, scoreOnly = 1, true
		}
	}
	switch {
	case r.BestOf != nil && *r.BestOf != 1:
		return nil, badParam("best_of", "%d: only 1 is supported", *r.BestOf)
	case r.Suffix != nil && *r.Suffix != "":
		return nil, badParam("suffix", "not supported")
	case r.Logprobs != nil && (*r.Logprobs < 0 || *r.Logprobs > generate.MaxTopLogprobs):
		return nil, badParam("logprobs", "%d: want 0 to %d", *r.Logprobs, generate.MaxTopLogprobs)
	case !r.Prompt.Set:
		return nil, badParam("prompt", "missing")
	}
	c, err := r.common.call(DefaultCompletionMaxTokens)
	if err != nil {
		return nil, err
	}
	c.Req.Prompt, c.Req.PromptIds = r.Prompt.Text, r.Prompt.IDs
	if b := r.Prompt.Batch; len(b) > 0 {
		if len(b)*c.N > MaxGenerations {
			return nil, badParam("n", "%d prompts of %d choices each: at most %d generations a request", len(b), c.N, MaxGenerations)
		}
		c.batch, c.N = b, len(b)*c.N
		c.Req.Prompt, c.Req.PromptIds = b[0].Text, b[0].IDs
	}
	if r.Logprobs != nil {
		c.Req.Logprobs, c.Req.TopLogprobs = true, uint32(*r.Logprobs)
	}
	// The prompt's log-probabilities also give its tokens' bytes, which echo a prompt
	// of token ids.
	c.Echo, c.ScoreOnly, c.Req.PromptLogprobs = r.Echo, scoreOnly, r.Echo
	return c, nil
}

// ParseChat decodes and validates the body of POST /v1/chat/completions for a server
// that does not parse tool calls: tools are refused unless tool_choice is "none". Its
// errors are *Error values (400, naming the parameter).
func ParseChat(body []byte) (*Call, error) { return ParseChatTools(body, 0) }

// ParseChatTools is ParseChat for a server that finds tool calls in replies written in
// syntax (0: none, as ParseChat). Tools reach the router with the messages, and the
// Call's Tools is syntax, unless tool_choice is "none": then the model sees no tools
// and its reply is its answer. tool_choice "required" or naming a function constrains
// the reply to a call (see tools).
func ParseChatTools(body []byte, syntax toolcall.Syntax) (*Call, error) {
	var r ChatRequest
	if err := decode(body, &r); err != nil {
		return nil, err
	}
	switch {
	case r.TopLogprobs != nil && (*r.TopLogprobs < 0 || *r.TopLogprobs > generate.MaxTopLogprobs):
		return nil, badParam("top_logprobs", "%d: want 0 to %d", *r.TopLogprobs, generate.MaxTopLogprobs)
	case r.TopLogprobs != nil && *r.TopLogprobs > 0 && (r.Logprobs == nil || !*r.Logprobs):
		return nil, badParam("top_logprobs", "needs logprobs: true")
	case notEmpty(r.Functions):
		return nil, badParam("functions", "function calls are not supported")
	case isSet(r.Audio):
		return nil, badParam("audio", "audio output is not supported: the models write text")
	case isSet(r.WebSearchOptions):
		return nil, badParam("web_search_options", "web search is not supported")
	case notEmpty(r.ChatTemplate) && string(bytes.TrimSpace(r.ChatTemplate)) != `""`:
		return nil, badParam("chat_template", "not supported: the server renders its own chat template (--chat-template)")
	case notEmpty(r.Documents):
		return nil, badParam("documents", "not supported: put the documents in the messages")
	case r.ContinueFinalMessage != nil && *r.ContinueFinalMessage && r.AddGenerationPrompt != nil && *r.AddGenerationPrompt:
		return nil, badParam("continue_final_message", "not with add_generation_prompt true: continuing the final message excludes starting a new turn (set add_generation_prompt false, or leave it out)")
	case len(r.Messages) == 0:
		return nil, badParam("messages", "at least one message is needed")
	}
	for _, m := range r.Modalities {
		if m != "text" {
			return nil, badParam("modalities", "%q: only text is supported", m)
		}
	}
	c, err := r.common.call(0)
	if err != nil {
		return nil, err
	}
	c.Chat = true
	c.Req.AddGenerationPrompt = r.AddGenerationPrompt
	if r.ContinueFinalMessage != nil && *r.ContinueFinalMessage {
		last := r.Messages[len(r.Messages)-1]
		if last.Role != "assistant" {
			return nil, badParam("continue_final_message", "the final message is %q's: only an assistant message is continued", last.Role)
		}
		c.Req.ContinueFinalMessage = true
	}
	if notEmpty(r.ChatTemplateKwargs) {
		kw := string(bytes.TrimSpace(r.ChatTemplateKwargs))
		if _, err := chat.ParseVars(kw); err != nil {
			return nil, badParam("chat_template_kwargs", "%v", err)
		}
		c.Req.ChatTemplateKwargs = kw
	}
	if r.Logprobs != nil && *r.Logprobs {
		c.Req.Logprobs = true
		if r.TopLogprobs != nil {
			c.Req.TopLogprobs = uint32(*r.TopLogprobs)
		}
	}
	for i, m := range r.Messages {
		role := m.Role
		switch role {
		case "system", "user", "assistant", "tool":
		case "developer":
			role = "system" // OpenAI's newer name for the system turn; templates know "system"
		default:
			return nil, badParam("messages", "message %d: role %q: want system, developer, user, assistant or tool", i, m.Role)
		}
		cm := &specdv1.ChatMessage{Role: role, Content: string(m.Content), Name: m.Name, ToolCallId: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			args := string(tc.Function.Arguments)
			if strings.TrimSpace(args) == "" {
				// A call without arguments: "", white space, null or none at all, as
				// clients replay such calls (a stream that sent no argument deltas
				// accumulates "", and other providers return it), is `{}`, as vLLM
				// reads it.
				args = "{}"
			}
			cm.ToolCalls = append(cm.ToolCalls, &specdv1.ToolCall{Id: tc.ID, Type: tc.Type,
				Function: &specdv1.FunctionCall{Name: tc.Function.Name, Arguments: args}})
		}
		c.Req.Messages = append(c.Req.Messages, cm)
	}
	if last := c.Req.Messages[len(c.Req.Messages)-1]; r.Echo && last.GetRole() == "assistant" {
		c.ChatEcho = last.GetContent()
	}
	if err := r.tools(c, syntax); err != nil {
		return nil, err
	}
	if t := c.Req.GetResponseFormat().GetType(); c.Req.ContinueFinalMessage && t != specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_UNSPECIFIED &&
		t != specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_TEXT {
		// The router refuses it too, but in its own words (response_format); say
		// what the client sent.
		what := c.formatParam
		if what == "tools" {
			what = "tool_choice forcing a call (a format the call must follow)"
		}
		return nil, badParam("continue_final_message", "not with %s: a format constrains the output from its start, and a continued message has begun already", what)
	}
	return c, nil
}

// tools puts r's tools into c, as tool_choice and the server's syntax allow.
// tool_choice "required" or naming a function forces a call: the reply is constrained
// (a response format) to one call in the server's syntax, to one of the tools or the
// named one, with arguments valid against its parameters schema.
func (r *ChatRequest) tools(c *Call, syntax toolcall.Syntax) error {
	choice, named, allowed, err := parseToolChoice(r.ToolChoice)
	if err != nil {
		return err
	}
	if choice == "none" {
		return nil // the model gets no tools, and its reply is an answer
	}
	if len(r.Tools) == 0 {
		if notEmpty(r.ToolChoice) {
			return badParam("tool_choice", "set without tools")
		}
		return nil
	}
	if syntax == 0 {
		return badParam("tools", "this server parses no tool calls: start it with --tool-call-parser (hermes or llama3_json), or send tool_choice \"none\"")
	}
	var forced []Tool
	firstAt := map[string]int{} // with allowed: where each allowed tool's name first came
	for i, t := range r.Tools {
		if t.Type != "function" {
			return badParam("tools", "tool %d: type %q: want \"function\"", i, t.Type)
		}
		if allowed != nil {
			name := t.Function.Name
			if _, ok := allowed[name]; !ok {
				continue // the model sees only the tools it may call
			}
			if j, dup := firstAt[name]; dup {
				// Named by the client's index: the router, given the allowed tools
				// alone, would count among those.
				return badParam("tools", "tools[%d].function.name: %q is also the name of tool %d", i, name, j)
			}
			firstAt[name], allowed[name] = i, true
		}
		params := ""
		if notEmpty(t.Function.Parameters) {
			params = string(bytes.TrimSpace(t.Function.Parameters))
		}
		c.Req.Tools = append(c.Req.Tools, &specdv1.Tool{Type: t.Type, Function: &specdv1.FunctionDefinition{
			Name: t.Function.Name, Description: t.Function.Description, Parameters: params}})
		if allowed != nil {
			c.toolIndex = append(c.toolIndex, i)
		}
		if choice == "required" || t.Function.Name == named {
			forced = append(forced, t)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(allowed)) {
		if !allowed[name] {
			return badParam("tool_choice", "allowed_tools: function %q is not among the tools", name)
		}
	}
	c.Tools = syntax
	c.OneCall = r.ParallelToolCalls != nil && !*r.ParallelToolCalls
	if c.OneCall {
		c.Req.StopAfterToolCall = syntax.String()
	}
	if choice == "auto" {
		return nil
	}
	if len(forced) == 0 {
		return badParam("tool_choice", "function %q is not among the tools", named)
	}
	if c.Req.ResponseFormat != nil {
		return badParam(c.formatParam, "tool_choice %q forces a tool call: not with a response format", choice)
	}
	rf, err := forcedCall(forced, syntax)
	if err != nil {
		return err
	}
	// The format is the tools' doing: an error about it (its size) names them.
	c.Req.ResponseFormat, c.formatParam = rf, "tools"
	return nil
}

// MaxForcedTools bounds the tools tool_choice "required" chooses among: the grammar
// follows each as an alternative until the call's name tells them apart.
const MaxForcedTools = 32

// parseToolChoice reads tool_choice: "auto" (or absent), "none", "required", a named
// function ({"type": "function", "function": {"name": …}}: choice "named"), or allowed
// tools ({"type": "allowed_tools", "allowed_tools": {"mode": "auto" or "required",
// "tools": [{"type": "function", "function": {"name": …}}, …]}}: choice the mode, and
// allowed's keys the names of the tools the model is given, each false until tools
// finds it; nil: all of them).
func parseToolChoice(raw json.RawMessage) (choice, named string, allowed map[string]bool, err error) {
	if !notEmpty(raw) {
		return "auto", "", nil, nil
	}
	if json.Unmarshal(raw, &choice) == nil {
		switch choice {
		case "auto", "none", "required":
			return choice, "", nil, nil
		}
		return "", "", nil, badParam("tool_choice", "%q: want \"auto\", \"none\", \"required\", a named function or allowed_tools", choice)
	}
	type function struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	var fn struct {
		function
		AllowedTools *struct {
			Mode  string     `json:"mode"`
			Tools []function `json:"tools"`
		} `json:"allowed_tools"`
	}
	if err := json.Unmarshal(raw, &fn); err == nil && fn.Type == "allowed_tools" && fn.AllowedTools != nil {
		at := fn.AllowedTools
		if at.Mode != "auto" && at.Mode != "required" {
			return "", "", nil, badParam("tool_choice", "allowed_tools: mode %q: want \"auto\" or \"required\"", at.Mode)
		}
		if len(at.Tools) == 0 {
			return "", "", nil, badParam("tool_choice", "allowed_tools: no tools: give the functions the model may call")
		}
		allowed = make(map[string]bool, len(at.Tools)) // name → found among the tools
		for i, t := range at.Tools {
			if t.Type != "function" || t.Function.Name == "" {
				return "", "", nil, badParam("tool_choice", "allowed_tools: tool %d: want {\"type\": \"function\", \"function\": {\"name\": …}}", i)
			}
			allowed[t.Function.Name] = false
		}
		return at.Mode, "", allowed, nil
	}
	if err != nil || fn.Type != "function" || fn.Function.Name == "" {
		return "", "", nil, badParam("tool_choice", "want \"auto\", \"none\", \"required\", a named function, {\"type\": \"function\", \"function\": {\"name\": …}}, "+
			"or allowed tools, {\"type\": \"allowed_tools\", \"allowed_tools\": {\"mode\": …, \"tools\": […]}}")
	}
	return "named", fn.Function.Name, nil, nil
}

// forcedCall is the response format of one call to one of tools, written in syntax:
// Hermes's <tool_call> block around {"name", "arguments"}, or Llama 3.1's bare
// {"name", "parameters"}.
func forcedCall(tools []Tool, syntax toolcall.Syntax) (*specdv1.ResponseFormat, error) {
	if len(tools) > MaxForcedTools {
		return nil, badParam("tool_choice", "\"required\" among %d tools: at most %d (name one)", len(tools), MaxForcedTools)
	}
	argsKey, rf := "arguments", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA}
	switch syntax {
	case toolcall.Hermes:
		rf.Prefix, rf.Suffix = "<tool_call>\n", "\n</tool_call>"
	case toolcall.Llama3JSON:
		argsKey = "parameters"
	default:
		return nil, fmt.Errorf("openaihttp: no forced call in tool syntax %v", syntax)
	}
	alts := make([]any, len(tools))
	defs := map[string]any{}
	for i, t := range tools {
		// No parameters is an empty parameter list (OpenAI's reading; vLLM forces
		// `{}` too): the call's arguments are the empty object.
		var args any = json.RawMessage(`{"type":"object","properties":{}}`)
		if notEmpty(t.Function.Parameters) {
			params := t.Function.Parameters
			if _, err := grammar.SchemaFormat(params); err != nil {
				return nil, badParam("tools", "tool %q: its parameters cannot constrain a forced call: %v", t.Function.Name, err)
			}
			args = hoistRefs(params, fmt.Sprintf("tool%d", i), defs)
		}
		alts[i] = map[string]any{"type": "object", "required": []string{"name", argsKey},
			"properties": map[string]any{"name": map[string]any{"const": t.Function.Name}, argsKey: args}}
	}
	schema := map[string]any{"anyOf": alts}
	if len(alts) == 1 {
		schema = alts[0].(map[string]any)
	}
	if len(defs) > 0 {
		schema["$defs"] = defs
	}
	b, err := json.Marshal(schema)
	if err != nil {
		return nil, badParam("tools", "%v", err)
	}
	if len(b) > services.MaxSchemaBytes {
		return nil, badParam("tools", "the schema that tool_choice holds a call to (one of %d tools) is %d bytes: at most %d (force fewer tools, or one)", len(tools), len(b), services.MaxSchemaBytes)
	}
	rf.JsonSchema = string(b)
	return rf, nil
}

// hoistRefs returns a tool's parameters (a schema the grammar compiles) to stand
// inside a forced call's schema. Their references ("#", "#/$defs/NAME",
// "#/definitions/NAME") mean the parameters' own root and definitions, which inside
// the call would be the call's: so parameters with references become a reference to
// defs[name], their definitions defs[name+".$defs."+NAME] (".definitions." likewise),
// and each reference is rewritten to match. Parameters without one are kept as sent.
func hoistRefs(params json.RawMessage, name string, defs map[string]any) any {
	d := json.NewDecoder(bytes.NewReader(params))
	d.UseNumber()
	var root any
	if d.Decode(&root) != nil || !strings.Contains(string(params), `"$ref"`) {
		return params
	}
	var rewrite func(s any)
	rewrite = func(s any) {
		m, ok := s.(map[string]any)
		if !ok {
			return
		}
		for k, v := range m {
			switch k {
			case "$ref":
				switch ref, _ := v.(string); {
				case ref == "#":
					m[k] = "#/$defs/" + name
				case strings.HasPrefix(ref, "#/$defs/"), strings.HasPrefix(ref, "#/definitions/"):
					section, rest, _ := strings.Cut(strings.TrimPrefix(ref, "#/"), "/")
					m[k] = "#/$defs/" + name + "." + section + "." + rest
				}
			case "properties", "$defs", "definitions":
				sub, _ := v.(map[string]any)
				for _, x := range sub {
					rewrite(x)
				}
			case "anyOf", "oneOf", "allOf", "prefixItems":
				list, _ := v.([]any)
				for _, x := range list {
					rewrite(x)
				}
			case "items", "additionalProperties", "additionalItems":
				if list, ok := v.([]any); ok { // draft 7's tuple
					for _, x := range list {
						rewrite(x)
					}
				} else {
					rewrite(v)
				}
			}
		}
	}
	rewrite(root)
	m, _ := root.(map[string]any) // a schema with a reference is an object
	for _, section := range []string{"$defs", "definitions"} {
		sub, _ := m[section].(map[string]any)
		for k, v := range sub {
			defs[name+"."+section+"."+k] = v
		}
	}
	defs[name] = root
	return map[string]any{"$ref": "#/$defs/" + name}
}

// lazyWhy is why llama.cpp's lazy grammar fields are refused.
const lazyWhy = "lazy grammars (held only from a trigger on) are not supported: a grammar holds from the first token"

// structuredOutput takes other servers' names for a response format into c (see
// common): vLLM's guided_json, guided_grammar (GBNF), guided_regex, guided_choice and
// structured_outputs json, json_object, grammar, regex or choice; llama.cpp's
// json_schema and grammar. What specd has no exact equivalent for is refused by name.
// A request asks for one response format at most, under one name.
func (r *common) structuredOutput(c *Call) error {
	for _, x := range []struct {
		name string
		v    json.RawMessage
		why  string
	}{
		{"structural_tag", r.StructuralTag, "structural tags are not supported (JSON, grammars, regular expressions and choices are)"},
		{"guided_whitespace_pattern", r.GuidedWhitespace, "not supported: white space between JSON tokens is at most one space"},
		{"guided_decoding_backend", r.GuidedBackend, "not supported: specd has one grammar engine; leave it out"},
		{"grammar_lazy", r.GrammarLazy, lazyWhy},
		{"grammar_triggers", r.GrammarTriggers, lazyWhy},
		{"grammar_trigger_words", r.GrammarTriggerWords, lazyWhy},
		{"grammar_trigger_tokens", r.GrammarTriggerToks, lazyWhy},
	} {
		if isSet(x.v) && string(bytes.TrimSpace(x.v)) != "[]" {
			return badParam(x.name, "%s", x.why)
		}
	}
	for _, x := range []struct {
		name string
		v    json.RawMessage
		t    specdv1.ResponseFormatType
	}{
		{"grammar", r.Grammar, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR},
		{"guided_grammar", r.GuidedGrammar, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR},
		{"guided_regex", r.GuidedRegex, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX},
		{"guided_choice", r.GuidedChoice, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE},
	} {
		if isSet(x.v) {
			if err := setRules(c, x.name, x.t, x.v); err != nil {
				return err
			}
		}
	}
	if isSet(r.GuidedJSON) {
		if err := setSchema(c, "guided_json", r.GuidedJSON); err != nil {
			return err
		}
	}
	if isSet(r.JSONSchema) {
		if err := setSchema(c, "json_schema", r.JSONSchema); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(r.StructuredOutputs))
	for k := range r.StructuredOutputs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, name := r.StructuredOutputs[k], "structured_outputs."+k
		if !isSet(v) {
			continue
		}
		switch k {
		case "json":
			if err := setSchema(c, name, v); err != nil {
				return err
			}
		case "json_object":
			if string(bytes.TrimSpace(v)) != "true" {
				return badParam(name, "want true or false")
			}
			if err := setFormat(c, name, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT}); err != nil {
				return err
			}
		case "grammar", "regex", "choice":
			t := map[string]specdv1.ResponseFormatType{"grammar": specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR,
				"regex": specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, "choice": specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE}[k]
			if err := setRules(c, name, t, v); err != nil {
				return err
			}
		default:
			return badParam(name, "not supported: of structured_outputs only json, json_object, grammar, regex and choice are")
		}
	}
	return nil
}

// setRules makes c's response format a grammar (GBNF text), a regular expression (a
// string) or a choice (an array of strings) of type t, set as param.
func setRules(c *Call, param string, t specdv1.ResponseFormatType, raw json.RawMessage) error {
	rf := &specdv1.ResponseFormat{Type: t}
	switch t {
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE:
		if err := json.Unmarshal(raw, &rf.Choices); err != nil {
			return badParam(param, "want an array of strings")
		}
		if len(rf.Choices) == 0 {
			return badParam(param, "empty: give the strings the output must be one of")
		}
	default:
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return badParam(param, "want a string")
		}
		if text == "" {
			return badParam(param, "empty")
		}
		if t == specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR {
			rf.Grammar = text
		} else {
			rf.Regex = text
		}
	}
	return setFormat(c, param, rf)
}

// setSchema makes c's response format the JSON Schema raw, set as param: the schema
// itself, or a string of its JSON text.
func setSchema(c *Call, param string, raw json.RawMessage) error {
	schema := string(bytes.TrimSpace(raw))
	if schema[0] == '"' {
		if err := json.Unmarshal(raw, &schema); err != nil {
			return badParam(param, "%v", err)
		}
		if strings.TrimSpace(schema) == "" {
			return badParam(param, "empty: give the JSON Schema the output must satisfy")
		}
	}
	return setFormat(c, param, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: schema})
}

// setFormat makes rf, set as param, c's response format, unless another parameter set
// one already.
func setFormat(c *Call, param string, rf *specdv1.ResponseFormat) error {
	if c.formatParam != "" {
		return badParam(param, "%s asks for a response format too: send one of them", c.formatParam)
	}
	c.Req.ResponseFormat, c.formatParam = rf, param
	return nil
}

// isSet reports whether a raw JSON parameter was sent with a value: not absent, null
// or false.
func isSet(raw json.RawMessage) bool {
	switch string(bytes.TrimSpace(raw)) {
	case "", "null", "false":
		return false
	}
	return true
}

// call validates the shared fields into a Call whose request lacks only the prompt;
// defMax is max_tokens when the client sets none (0: up to the context).
func (r *common) call(defMax uint32) (*Call, error) {
	n := 1
	if r.N != nil {
		if *r.N < 1 || *r.N > MaxChoices {
			return nil, badParam("n", "%d: want 1 to %d", *r.N, MaxChoices)
		}
		n = int(*r.N)
	}
	c := &Call{Req: &specdv1.GenerateRequest{Model: r.Model, Stop: r.Stop, MaxTokens: defMax}, Stream: r.Stream, Model: r.Model,
		N: n, maxTokensParam: "max_tokens"}
	if rf := r.ResponseFormat; rf != nil {
		switch {
		// A schema where the type does not take one would be dropped without a word.
		case rf.JSONSchema != nil && rf.Type != "json_schema":
			return nil, badParam("response_format.json_schema", "only with type json_schema, not %q", rf.Type)
		case notEmpty(rf.Schema) && rf.Type != "json_object":
			return nil, badParam("response_format.schema", "only with type json_object (llama.cpp's form), not %q: with json_schema, give the schema as json_schema.schema", rf.Type)
		case rf.Type == "" || rf.Type == "text":
		case rf.Type == "json_object" && !notEmpty(rf.Schema):
			c.Req.ResponseFormat = &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT}
		case rf.Type == "json_object":
			c.Req.ResponseFormat = &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: string(rf.Schema)}
		case rf.Type == "json_schema":
			if rf.JSONSchema == nil || len(bytes.TrimSpace(rf.JSONSchema.Schema)) == 0 || string(bytes.TrimSpace(rf.JSONSchema.Schema)) == "null" {
				return nil, badParam("response_format.json_schema.schema", "missing: give the JSON Schema the output must satisfy")
			}
			c.Req.ResponseFormat = &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: string(rf.JSONSchema.Schema)}
		default:
			return nil, badParam("response_format", "type %q: want text, json_object or json_schema", rf.Type)
		}
	}
	if c.Req.ResponseFormat != nil {
		c.formatParam = "response_format"
	}
	if err := r.structuredOutput(c); err != nil {
		return nil, err
	}
	if r.StreamOptions != nil {
		if !r.Stream {
			return nil, badParam("stream_options", "only allowed with stream: true")
		}
		c.IncludeUsage = r.StreamOptions.IncludeUsage
	}
	limit, name := r.MaxTokens, "max_tokens"
	if r.MaxCompletionTokens != nil {
		limit, name = r.MaxCompletionTokens, "max_completion_tokens"
	}
	if limit != nil {
		if *limit < 1 || *limit > math.MaxUint32 {
			return nil, badParam(name, "%d: want 1 to %d", *limit, uint32(math.MaxUint32))
		}
		c.Req.MaxTokens, c.maxTokensParam = uint32(*limit), name
	}
	for i, s := range r.Stop {
		if s == "" {
			return nil, badParam("stop", "stop string %d is empty", i)
		}
	}
	for i, p := range r.StopTokenIDs {
		if p == nil {
			return nil, badParam("stop_token_ids", "null at index %d: not a token id", i)
		}
		id := *p
		if id < 0 || id > math.MaxInt32 {
			return nil, badParam("stop_token_ids", "%d at index %d: not a token id", id, i)
		}
		c.Req.StopTokenIds = append(c.Req.StopTokenIds, int32(id))
	}
	c.Req.IgnoreEos = r.IgnoreEOS
	sp := &specdv1.SamplingParams{Temperature: DefaultTemperature}
	if t := r.Temperature; t != nil {
		if !(*t >= 0 && *t <= 2) {
			return nil, badParam("temperature", "%v: want a number in [0, 2]", *t)
		}
		sp.Temperature = float32(*t)
	}
	if k := r.TopK; k != nil {
		if *k < -1 || *k > math.MaxUint32 {
			return nil, badParam("top_k", "%d: want 0 or -1 (off) or a positive count", *k)
		}
		sp.TopK = uint32(max(*k, 0)) // -1 is vLLM's "off", as llama-server takes it too
	}
	if p := r.TopP; p != nil {
		if *p < 0 || *p > 1 {
			// Here, not in the gRPC API's check, whose range (0, 1] leaves out the 0
			// this API takes.
			return nil, badParam("top_p", "%v: want a number in [0, 1] (0: the likeliest token alone; 1: off)", *p)
		}
		if *p == 0 {
			// OpenAI's API takes top_p 0 (its range is [0, 1]): the smallest nucleus,
			// the likeliest token alone, which is top_k 1. The gRPC API, as vLLM,
			// refuses 0, so it is sent as that.
			sp.TopK = 1
		} else {
			v := float32(*p)
			sp.TopP = &v
		}
	}
	if m := r.MinP; m != nil {
		v := float32(*m)
		sp.MinP = &v
	}
	for _, x := range []struct {
		name string
		v    *float64
		dst  *float32
	}{
		{"presence_penalty", r.PresencePenalty, &sp.PresencePenalty},
		{"frequency_penalty", r.FrequencyPenalty, &sp.FrequencyPenalty},
	} {
		if x.v != nil {
			if !(*x.v >= -2 && *x.v <= 2) {
				return nil, badParam(x.name, "%v: want a number in [-2, 2]", *x.v)
			}
			*x.dst = float32(*x.v)
		}
	}
	if r.RepetitionPenalty != nil && r.RepeatPenalty != nil {
		return nil, badParam("repeat_penalty", "set repetition_penalty or repeat_penalty, not both")
	}
	for name, v := range map[string]*float64{"repetition_penalty": r.RepetitionPenalty, "repeat_penalty": r.RepeatPenalty} {
		if v == nil {
			continue
		}
		if !(*v > 0 && *v <= sample.MaxRepetitionPenalty) {
			return nil, badParam(name, "%v: want a number in (0, %v] (1 is off)", *v, sample.MaxRepetitionPenalty)
		}
		rp := float32(*v)
		sp.RepetitionPenalty = &rp
	}
	if s := r.Seed; s != nil {
		v := uint64(*s) // a negative seed is a seed too; OpenAI takes any int64
		sp.Seed = &v
	}
	if len(r.LogitBias) > sample.MaxLogitBiasSize {
		return nil, badParam("logit_bias", "%d entries: at most %d", len(r.LogitBias), sample.MaxLogitBiasSize)
	}
	for k, p := range r.LogitBias {
		id, err := strconv.ParseInt(k, 10, 32)
		if err != nil || id < 0 {
			return nil, badParam("logit_bias", "key %q: want a token id", k)
		}
		if p == nil {
			return nil, badParam("logit_bias", "token %d: null, want a number in [-%d, %d]", id, sample.MaxLogitBias, sample.MaxLogitBias)
		}
		v := *p
		if !(v >= -sample.MaxLogitBias && v <= sample.MaxLogitBias) {
			return nil, badParam("logit_bias", "token %d: %v, want a number in [-%d, %d]", id, v, sample.MaxLogitBias, sample.MaxLogitBias)
		}
		if sp.LogitBias == nil {
			sp.LogitBias = map[int32]float32{}
		}
		if _, dup := sp.LogitBias[int32(id)]; dup {
			// "1" and "01" (or "+1") name one token: which value won would depend on
			// the map's random order.
			return nil, badParam("logit_bias", "key %q: token %d has another key too", k, id)
		}
		sp.LogitBias[int32(id)] = float32(v)
	}
	if m := r.MinTokens; m != nil {
		if *m < 0 || *m > math.MaxInt32 {
			return nil, badParam("min_tokens", "%d: want 0 or more", *m)
		}
		sp.MinTokens = uint32(*m)
	}
	c.Req.Sampling = sp
	return c, nil
}

// decode unmarshals a JSON body. Unknown fields are ignored, as vLLM and llama.cpp's
// server ignore them (OpenAI's API refuses them): clients and gateways send fields
// newer than this server (store, metadata, prompt_cache_key, …), and a request must
// not fail for bookkeeping. A known field that would change the output in a way specd
// cannot is refused by name instead (ParseChatTools, structuredOutput).
func decode(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var e *Error
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &te) && te.Field != "":
		field := strings.TrimPrefix(te.Field, "common.") // the embedded struct's name is no parameter
		if strings.HasPrefix(field, "messages.") {
			field = "messages"
		}
		return badParam(field, "want %s, not a JSON %s", JSONType(te.Type.Kind().String()), te.Value)
	}
	return &Error{Status: 400, Type: TypeInvalidRequest, Message: fmt.Sprintf("the request body is not valid JSON for this endpoint: %v", err)}
}

// Ignored returns the top-level fields of a request body that the endpoint (chat: POST
// /v1/chat/completions, else POST /v1/completions) does not read, sorted, for a log that
// tells an operator why a parameter had no effect (a misspelt name, a field newer than
// this server); nil when there are none or the body is not a JSON object.
func Ignored(body []byte, chat bool) []string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return nil
	}
	known := completionFields
	if chat {
		known = chatFields
	}
	var out []string
	for k := range fields {
		if !known[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// completionFields and chatFields are the JSON names the two request types read.
var completionFields, chatFields = jsonNames(reflect.TypeFor[CompletionRequest]()), jsonNames(reflect.TypeFor[ChatRequest]())

// jsonNames returns the JSON names of t's fields, those of embedded structs included.
func jsonNames(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for f := range t.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			maps.Copy(out, jsonNames(f.Type))
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

// JSONType names a Go kind (reflect.Kind.String) as the JSON type a decoder wanted,
// for an error that says what the client should have sent.
func JSONType(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"):
		return "an integer"
	case strings.HasPrefix(k, "float"):
		return "a number"
	case k == "string":
		return "a string"
	case k == "bool":
		return "a boolean"
	case k == "slice":
		return "an array"
	}
	return "an object"
}

// notEmpty reports whether a raw JSON value is present and neither null nor empty.
func notEmpty(raw json.RawMessage) bool {
	switch string(bytes.TrimSpace(raw)) {
	case "", "null", "[]", "{}":
		return false
	}
	return true
}

// paramJSON names param in a JSON decoding error.
func paramJSON(param string, err error) error {
	if err == nil {
		return nil
	}
	return badParam(param, "%v", err)
}
