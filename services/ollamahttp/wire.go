// Package ollamahttp is specd's front door for clients of Ollama's native API: POST
// /api/generate and /api/chat (newline-delimited JSON streams or one object), GET
// /api/tags, POST /api/show, GET /api/ps, GET /api/version and the "Ollama is running"
// probe at /, translated to and from the router's public gRPC API, so that a client
// written for Ollama (its JavaScript and Python libraries, LangChain's ChatOllama,
// Open WebUI, curl scripts) works when pointed at specd.
//
// Like services/openaihttp, beside which it is mounted on the same listener, it is a
// translator, not a second server: every request becomes calls of a
// specdv1.GenerationServiceClient with the HTTP Authorization header forwarded, so
// whatever the router enforces holds here too. The wire types and the request mapping
// (wire.go, request.go, options.go) know nothing of gRPC; errors.go is the one place
// where gRPC codes become HTTP statuses. What Ollama's API has that specd cannot do
// exactly is refused by name with a 400, never dropped: see docs/clients.md.
package ollamahttp

import (
	"encoding/json"
	"time"
)

// GenerateRequest is the body of POST /api/generate.
type GenerateRequest struct {
	Model  string `json:"model"`
	Prompt string `json:"prompt"`
	// Suffix is the text after the insertion (fill-in-the-middle): refused when set.
	Suffix string `json:"suffix"`
	// System is the system message of a templated prompt (with Raw, a 400, as in
	// Ollama).
	System string `json:"system"`
	// Template is a Go template overriding the model's: refused when set (specd
	// renders the model's Jinja chat template).
	Template string `json:"template"`
	// Context is the deprecated conversation memory of token ids, for a model
	// without a chat template (its prompt is the prompt as it is, after the ids),
	// which gets it back in the final message; with Raw, or for a model whose chat
	// template renders the prompt, a 400.
	Context []int64         `json:"context"`
	Stream  *bool           `json:"stream"` // nil: true
	Raw     bool            `json:"raw"`
	Format  json.RawMessage `json:"format"`
	// KeepAlive is accepted and checked, and has no effect: specd's models stay
	// loaded for as long as it runs (0 with an empty prompt is answered as Ollama
	// answers an unload, done_reason "unload").
	KeepAlive json.RawMessage            `json:"keep_alive"`
	Images    []json.RawMessage          `json:"images"` // refused when non-empty: no vision
	Options   map[string]json.RawMessage `json:"options"`
	Think     json.RawMessage            `json:"think"` // refused unless false or null
	// Truncate and Shift are accepted: specd never truncates a prompt (one that does
	// not fit is a 400) and never shifts the context (a full context ends the output
	// with done_reason "length").
	Truncate *bool `json:"truncate"`
	Shift    *bool `json:"shift"`
	// Logprobs asks for each generated token's log-probability, and TopLogprobs (0
	// to 20) for the likeliest tokens at each position with theirs.
	Logprobs    *bool  `json:"logprobs"`
	TopLogprobs *int64 `json:"top_logprobs"`
}

// ChatRequest is the body of POST /api/chat.
type ChatRequest struct {
	Model       string                     `json:"model"`
	Messages    []Message                  `json:"messages"`
	Tools       []Tool                     `json:"tools"`
	Stream      *bool                      `json:"stream"` // nil: true
	Format      json.RawMessage            `json:"format"`
	KeepAlive   json.RawMessage            `json:"keep_alive"`
	Options     map[string]json.RawMessage `json:"options"`
	Think       json.RawMessage            `json:"think"`
	Truncate    *bool                      `json:"truncate"`
	Shift       *bool                      `json:"shift"`
	Logprobs    *bool                      `json:"logprobs"`
	TopLogprobs *int64                     `json:"top_logprobs"`
}

// Message is one turn of a chat, in a request or a response.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Thinking is a thinking model's reasoning. Taken and not rendered in a request
	// (no model specd serves thinks, and templates of models that do not think do not
	// render it); never set in a response.
	Thinking   string            `json:"thinking,omitempty"`
	Images     []json.RawMessage `json:"images,omitempty"` // refused in a request
	ToolCalls  []ToolCall        `json:"tool_calls,omitempty"`
	ToolName   string            `json:"tool_name,omitempty"`    // of a "tool" message: the function whose result it is
	ToolCallID string            `json:"tool_call_id,omitempty"` // of a "tool" message: the call it answers
}

// ToolCall is one call of a tool, as Ollama shapes it: the arguments an object, not
// a string of JSON text. In a response its ID is fresh (see newCallID); in a request
// it is what the client sent.
type ToolCall struct {
	ID       string           `json:"id,omitempty"`
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction is the function of a ToolCall.
type ToolCallFunction struct {
	Index     int             `json:"index"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// Tool is one tool a chat request offers, the same shape as OpenAI's.
type Tool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// Metrics are the statistics of a final message, durations in nanoseconds.
type Metrics struct {
	TotalDuration      int64 `json:"total_duration"`
	LoadDuration       int64 `json:"load_duration"`
	PromptEvalCount    int   `json:"prompt_eval_count"`
	PromptEvalDuration int64 `json:"prompt_eval_duration"`
	EvalCount          int   `json:"eval_count"`
	EvalDuration       int64 `json:"eval_duration"`
}

// TokenLogprob is a token and its log-probability under the model (the log-softmax
// of its logits, before temperature and the filters), as Ollama gives them: the
// token's text, and its bytes when it has any.
type TokenLogprob struct {
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
	Bytes   []int   `json:"bytes,omitempty"`
}

// Logprob is a generated token's log-probability, with the likeliest tokens at its
// position when they were asked for.
type Logprob struct {
	TokenLogprob
	TopLogprobs []TokenLogprob `json:"top_logprobs,omitempty"`
}

// GenerateResponse is the answer of POST /api/generate, and each line of its stream.
type GenerateResponse struct {
	Model      string    `json:"model"`
	CreatedAt  time.Time `json:"created_at"`
	Response   string    `json:"response"`
	Done       bool      `json:"done"`
	DoneReason string    `json:"done_reason,omitempty"`
	Context    []int32   `json:"context,omitempty"`
	Logprobs   []Logprob `json:"logprobs,omitempty"` // of the tokens this object carries
	*Metrics
}

// ChatResponse is the answer of POST /api/chat, and each line of its stream.
type ChatResponse struct {
	Model      string    `json:"model"`
	CreatedAt  time.Time `json:"created_at"`
	Message    Message   `json:"message"`
	Done       bool      `json:"done"`
	DoneReason string    `json:"done_reason,omitempty"`
	Logprobs   []Logprob `json:"logprobs,omitempty"` // of the tokens this object carries
	*Metrics
}

// ModelDetails describes a model as /api/tags, /api/show and /api/ps do.
type ModelDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// ListModel is one model of GET /api/tags.
type ListModel struct {
	Name       string       `json:"name"`
	Model      string       `json:"model"`
	ModifiedAt time.Time    `json:"modified_at"`
	Size       int64        `json:"size"`
	Digest     string       `json:"digest"`
	Details    ModelDetails `json:"details"`
}

// ListResponse is the answer of GET /api/tags.
type ListResponse struct {
	Models []ListModel `json:"models"`
}

// ProcessModel is one model of GET /api/ps.
type ProcessModel struct {
	Name          string       `json:"name"`
	Model         string       `json:"model"`
	Size          int64        `json:"size"`
	Digest        string       `json:"digest"`
	Details       ModelDetails `json:"details"`
	ExpiresAt     time.Time    `json:"expires_at"`
	SizeVRAM      int64        `json:"size_vram"`
	ContextLength int          `json:"context_length"`
}

// ProcessResponse is the answer of GET /api/ps.
type ProcessResponse struct {
	Models []ProcessModel `json:"models"`
}

// ShowRequest is the body of POST /api/show.
type ShowRequest struct {
	Model   string `json:"model"`
	Name    string `json:"name"` // Ollama's older name for Model
	Verbose bool   `json:"verbose"`
}

// ShowResponse is the answer of POST /api/show.
type ShowResponse struct {
	Modelfile    string         `json:"modelfile"`
	Parameters   string         `json:"parameters"`
	Template     string         `json:"template"`
	Details      ModelDetails   `json:"details"`
	ModelInfo    map[string]any `json:"model_info"`
	Capabilities []string       `json:"capabilities"`
	ModifiedAt   time.Time      `json:"modified_at"`
}

// PullRequest is the body of POST /api/pull.
type PullRequest struct {
	Model  string `json:"model"`
	Name   string `json:"name"`
	Stream *bool  `json:"stream"`
}

// errorBody is every error answer, as Ollama's: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}
