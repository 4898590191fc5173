package ollamahttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/specd-dev/specd/generate"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/openaihttp"
	"github.com/specd-dev/specd/toolcall"
)

// Call is a parsed and validated /api/generate or /api/chat request: what to ask the
// router and how to answer the client.
type Call struct {
	// Req is the router's request. Of a templated generation it holds the messages;
	// should the model have no chat template, the prompt becomes the ids of Context
	// and of Prompt as the router tokenizes it (see Handler.plain), and the answer
	// gives the ids back as its context.
	Req    *specdv1.GenerateRequest
	Model  string // as the client named it, echoed in every answer
	Stream bool   // answer with newline-delimited JSON objects
	Chat   bool
	// Load: an empty prompt (or no messages), Ollama's call to load the model: the
	// answer is one done message, nothing is generated. Unload: a load call with
	// keep_alive 0, Ollama's call to unload it, answered the same way (done_reason
	// "unload"); specd's models stay loaded for as long as it runs.
	Load, Unload bool
	// Raw: a generation whose prompt is used as it is (no system, no context).
	Raw     bool
	Prompt  string  // a generation's prompt
	System  string  // a templated generation's system message
	Context []int32 // a templated generation's ids before the prompt (Ollama's deprecated context)
	// plain: a templated generation for a model without a chat template, whose
	// prompt is Context and Prompt as they are (set by Handler.open); its answer has
	// a context.
	plain bool
	// kwargs is the chat template's variables the request sets (think false:
	// enable_thinking false), JSON text; "" for none.
	kwargs string
	// Tools is the syntax the reply's tool calls are found in (0: none offered).
	Tools toolcall.Syntax
	opts  *options
}

// ModelName is the name of the model a client names as Ollama's clients do,
// "NAME:TAG": the tag "latest" (in any case), which Ollama gives a name without one,
// is dropped, so "specd-target:latest" and "specd-target" are the same model. Any
// other tag is part of the name, which then names no model specd serves. Names are
// matched case-blind, as Ollama matches them (see match).
func ModelName(name string) string {
	const tag = ":latest"
	if len(name) > len(tag) && strings.EqualFold(name[len(name)-len(tag):], tag) {
		return name[:len(name)-len(tag)]
	}
	return name
}

// match is the model of ms a client names (see ModelName): the one of that very name,
// else the first whose name differs only in case; nil if none.
func match(ms []*specdv1.ModelInfo, name string) *specdv1.ModelInfo {
	name = ModelName(name)
	if name == "" {
		return nil
	}
	for _, m := range ms {
		if m.GetName() == name {
			return m
		}
	}
	for _, m := range ms {
		if strings.EqualFold(m.GetName(), name) {
			return m
		}
	}
	return nil
}

// decode unmarshals a JSON body into v; unknown fields are ignored, as Ollama's
// server ignores them.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &Error{Status: http.StatusBadRequest, Message: "missing request body"} // as Ollama words it
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return badRequest(te.Field, "want %s, not a JSON %s", openaihttp.JSONType(te.Type.Kind().String()), te.Value)
	}
	return &Error{Status: http.StatusBadRequest, Message: fmt.Sprintf("the request body is not valid JSON for this endpoint: %v", err)}
}

// common are the checks and mappings the two endpoints share.
func common(model string, format, keep, think json.RawMessage, logprobs *bool, topLogprobs *int64, opts map[string]json.RawMessage) (*Call, error) {
	if model == "" {
		return nil, badRequest("model", "missing: name the model (GET /api/tags lists them)")
	}
	if isOn(think) {
		return nil, badRequest("think", "%s does not support thinking", model)
	}
	// think false, as Ollama turns thinking off: a chat template that reads Qwen3's
	// enable_thinking (as vLLM's chat_template_kwargs sets it) renders the prompt
	// without thinking; other templates do not read it.
	kwargs := ""
	if len(bytes.TrimSpace(think)) > 0 && string(bytes.TrimSpace(think)) != "null" {
		kwargs = `{"enable_thinking": false}`
	}
	if n := topLogprobs; n != nil && (*n < 0 || *n > generate.MaxTopLogprobs) {
		return nil, badRequest("top_logprobs", "top_logprobs must be between 0 and %d", generate.MaxTopLogprobs)
	}
	unload, err := keepAlive(keep)
	if err != nil {
		return nil, err
	}
	o, err := parseOptions(opts)
	if err != nil {
		return nil, err
	}
	c := &Call{Req: &specdv1.GenerateRequest{Model: ModelName(model)}, Model: model, Unload: unload, opts: o, kwargs: kwargs}
	if err := o.apply(c.Req); err != nil {
		return nil, err
	}
	rf, err := parseFormat(format)
	if err != nil {
		return nil, err
	}
	c.Req.ResponseFormat = rf
	if logprobs != nil && *logprobs {
		// top_logprobs without logprobs asks for nothing, as in Ollama.
		c.Req.Logprobs = true
		if topLogprobs != nil {
			c.Req.TopLogprobs = uint32(*topLogprobs)
		}
	}
	return c, nil
}

// parseFormat reads format: null or "" (free text), "json" (a JSON object), or a JSON
// Schema object the output must satisfy.
func parseFormat(raw json.RawMessage) (*specdv1.ResponseFormat, error) {
	v := bytes.TrimSpace(raw)
	switch {
	case len(v) == 0 || string(v) == "null" || string(v) == `""`:
		return nil, nil
	case string(v) == `"json"`:
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT}, nil
	case v[0] == '{':
		if !json.Valid(v) {
			return nil, badRequest("format", "not valid JSON")
		}
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: string(v)}, nil
	}
	return nil, badRequest("format", "%s: want \"json\" or a JSON Schema object", clip(v))
}

// clip is b for a message, cut to 64 bytes.
func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}

// ParseGenerate decodes and validates the body of POST /api/generate. Its errors are
// *Error values (400, naming the parameter).
func ParseGenerate(body []byte) (*Call, error) {
	var r GenerateRequest
	if err := decode(body, &r); err != nil {
		return nil, err
	}
	switch {
	case r.Suffix != "":
		return nil, badRequest("suffix", "%s does not support insert (fill-in-the-middle is not supported)", r.Model)
	case r.Template != "":
		return nil, badRequest("template", "not supported: specd renders the model's own chat template (Jinja); send raw: true with a prompt you formatted yourself")
	case len(r.Images) > 0:
		return nil, badRequest("images", "%s does not support images (no model specd serves has vision)", r.Model)
	case r.Raw && (r.System != "" || len(r.Context) > 0):
		// As Ollama answers it.
		return nil, badRequest("raw", "raw mode does not support template, system, or context")
	}
	c, err := common(r.Model, r.Format, r.KeepAlive, r.Think, r.Logprobs, r.TopLogprobs, r.Options)
	if err != nil {
		return nil, err
	}
	c.Stream, c.Raw, c.Prompt = stream(r.Stream), r.Raw, r.Prompt
	for i, id := range r.Context {
		if id < 0 || id > math.MaxInt32 {
			return nil, badRequest("context", "token id %d at index %d is out of range", id, i)
		}
		c.Context = append(c.Context, int32(id))
	}
	c.System = r.System
	c.Load = r.Prompt == ""
	c.Unload = c.Unload && c.Load
	if c.Raw {
		c.Req.Prompt = c.Prompt
	} else {
		c.Req.Messages, c.Req.ChatTemplateKwargs = c.messages(), c.kwargs
	}
	return c, nil
}

// messages is a templated generation's conversation: the system message, if any, and
// the prompt as the user's.
func (c *Call) messages() []*specdv1.ChatMessage {
	var out []*specdv1.ChatMessage
	if c.System != "" {
		out = append(out, &specdv1.ChatMessage{Role: "system", Content: c.System})
	}
	return append(out, &specdv1.ChatMessage{Role: "user", Content: c.Prompt})
}

// ParseChat decodes and validates the body of POST /api/chat for a server that finds
// tool calls in replies written in syntax (0: none, and tools are refused). Its errors
// are *Error values (400, naming the parameter).
func ParseChat(body []byte, syntax toolcall.Syntax) (*Call, error) {
	var r ChatRequest
	if err := decode(body, &r); err != nil {
		return nil, err
	}
	c, err := common(r.Model, r.Format, r.KeepAlive, r.Think, r.Logprobs, r.TopLogprobs, r.Options)
	if err != nil {
		return nil, err
	}
	c.Chat, c.Stream, c.Load = true, stream(r.Stream), len(r.Messages) == 0
	c.Unload = c.Unload && c.Load
	for i, m := range r.Messages {
		role := strings.ToLower(m.Role) // as Ollama reads it
		switch role {
		case "system", "user", "assistant", "tool":
		default:
			return nil, badRequest("messages", "message %d: role %q: want system, user, assistant or tool", i, m.Role)
		}
		if len(m.Images) > 0 {
			return nil, badRequest("messages", "message %d: %s does not support images (no model specd serves has vision)", i, r.Model)
		}
		if len(m.ToolCalls) > 0 && role != "assistant" {
			return nil, badRequest("messages", "message %d: only an assistant message has tool_calls", i)
		}
		cm := &specdv1.ChatMessage{Role: role, Content: m.Content, Name: m.ToolName, ToolCallId: m.ToolCallID}
		for j, tc := range m.ToolCalls {
			if tc.Function.Name == "" {
				return nil, badRequest("messages", "message %d: tool call %d has no function name", i, j)
			}
			args := bytes.TrimSpace(tc.Function.Arguments)
			switch {
			case len(args) == 0 || string(args) == "null":
				args = []byte("{}")
			case args[0] != '{':
				// As Ollama refuses it: its arguments are an object, and a string of
				// JSON text (OpenAI's shape) would reach the template as a string.
				return nil, badRequest("messages", "message %d: tool call %d: arguments %s: want a JSON object", i, j, clip(args))
			}
			cm.ToolCalls = append(cm.ToolCalls, &specdv1.ToolCall{Id: tc.ID, Type: "function",
				Function: &specdv1.FunctionCall{Name: tc.Function.Name, Arguments: string(args)}})
		}
		c.Req.Messages = append(c.Req.Messages, cm)
	}
	if n := len(c.Req.Messages); n > 0 {
		c.Req.ChatTemplateKwargs = c.kwargs
		// A conversation whose last message is the assistant's continues it, as
		// Ollama does (a prefill): the reply is the rest of that message. An empty one
		// has nothing to continue, and is rendered as it is.
		if last := c.Req.Messages[n-1]; last.GetRole() == "assistant" && strings.TrimSpace(last.GetContent()) != "" {
			if len(last.GetToolCalls()) > 0 {
				// Said here, in the words of this API: the router's refusal would name
				// continue_final_message, which an Ollama client never sent.
				return nil, badRequest("messages", "the last message is the assistant's, which specd continues (as Ollama does), and it made tool calls, which a continuation of its content would drop: send the calls' results as tool messages, or leave the calls out")
			}
			if c.Req.ResponseFormat != nil {
				return nil, badRequest("format", "not with a last message from the assistant, which specd continues: the format would constrain the continuation as if it began the document")
			}
			c.Req.ContinueFinalMessage = true
		}
	}
	if len(r.Tools) == 0 {
		return c, nil
	}
	if syntax == 0 {
		return nil, badRequest("tools", "%s does not support tools: this server parses no tool calls (start it with --tool-call-parser hermes or llama3_json)", r.Model)
	}
	for i, t := range r.Tools {
		if t.Type != "" && t.Type != "function" {
			return nil, badRequest("tools", "tool %d: type %q: want \"function\"", i, t.Type)
		}
		params := ""
		if p := bytes.TrimSpace(t.Function.Parameters); len(p) > 0 && string(p) != "null" {
			params = string(p)
		}
		c.Req.Tools = append(c.Req.Tools, &specdv1.Tool{Type: "function", Function: &specdv1.FunctionDefinition{
			Name: t.Function.Name, Description: t.Function.Description, Parameters: params}})
	}
	c.Tools = syntax
	return c, nil
}
