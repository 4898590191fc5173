// Package openaihttp is specd's OpenAI-compatible HTTP front door: POST
// /v1/completions, POST /v1/chat/completions (plain JSON or server-sent events) and
// GET /v1/models, translated to and from the router's public gRPC API.
//
// It is a translator, not a second server: every request becomes one call of a
// specdv1.GenerationServiceClient (the router's own, in process), with the HTTP
// Authorization header forwarded as gRPC metadata, so whatever the router enforces
// (validation, API keys, quotas) holds here too. The wire types and the request
// mapping (wire.go, request.go, response.go) know nothing of gRPC; errors.go is the one
// place where gRPC status codes become HTTP statuses and OpenAI error types.
package openaihttp

import (
	"bytes"
	"encoding/json"
)

// StreamOptions are the options of a streamed response.
type StreamOptions struct {
	// IncludeUsage asks for one more chunk before data: [DONE], with the usage and
	// no choices.
	IncludeUsage bool `json:"include_usage"`
}

// common are the request fields the two generation endpoints share. A nil pointer
// is a field the client did not send.
type common struct {
	Model               string         `json:"model"`
	MaxTokens           *int64         `json:"max_tokens"`
	MaxCompletionTokens *int64         `json:"max_completion_tokens"`
	Temperature         *float64       `json:"temperature"`
	TopP                *float64       `json:"top_p"`
	N                   *int64         `json:"n"`
	Stream              bool           `json:"stream"`
	StreamOptions       *StreamOptions `json:"stream_options"`
	Stop                Stop           `json:"stop"`
	Seed                *int64         `json:"seed"`
	User                string         `json:"user"` // accepted and ignored

	PresencePenalty  *float64 `json:"presence_penalty"`
	FrequencyPenalty *float64 `json:"frequency_penalty"`

	// LogitBias maps token ids (as strings) to a bias in [-100, 100] (a null value is
	// refused, not taken as 0).
	LogitBias map[string]*float64 `json:"logit_bias"`
	// ResponseFormat constrains the output (taken on both endpoints, as vLLM does):
	// type text, json_object, or json_schema with json_schema.schema; llama.cpp's
	// json_object with a schema beside the type is json_schema.
	ResponseFormat *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
			Strict *bool           `json:"strict"`
		} `json:"json_schema"`
		Schema json.RawMessage `json:"schema"`
	} `json:"response_format"`

	// Other servers' names for structured output. vLLM's guided_json and
	// structured_outputs ({"json": schema} or {"json_object": true}) and llama.cpp's
	// json_schema are the response formats above under other names; a schema may be
	// the JSON value or, as vLLM takes it, a string of JSON text. The rest of them (a
	// choice, a regular expression, a grammar, …) have no exact equivalent here: set,
	// each is a 400 naming it, never ignored (see structuredOutput).
	GuidedJSON        json.RawMessage            `json:"guided_json"`
	StructuredOutputs map[string]json.RawMessage `json:"structured_outputs"`
	JSONSchema        json.RawMessage            `json:"json_schema"`
	GuidedChoice      json.RawMessage            `json:"guided_choice"`
	GuidedRegex       json.RawMessage            `json:"guided_regex"`
	GuidedGrammar     json.RawMessage            `json:"guided_grammar"`
	GuidedWhitespace  json.RawMessage            `json:"guided_whitespace_pattern"`
	GuidedBackend     json.RawMessage            `json:"guided_decoding_backend"`
	StructuralTag     json.RawMessage            `json:"structural_tag"`
	Grammar           json.RawMessage            `json:"grammar"`
	// llama.cpp's lazy grammars, which hold only from a trigger on: refused when set
	// (true, or a list that is not empty), as the grammar here holds from the start.
	GrammarLazy         json.RawMessage `json:"grammar_lazy"`
	GrammarTriggers     json.RawMessage `json:"grammar_triggers"`
	GrammarTriggerWords json.RawMessage `json:"grammar_trigger_words"`
	GrammarTriggerToks  json.RawMessage `json:"grammar_trigger_tokens"`

	// Extensions also taken by other OpenAI-compatible servers (vLLM, llama.cpp; the
	// repetition penalty under either's name).
	TopK              *int64   `json:"top_k"`
	MinP              *float64 `json:"min_p"`
	RepetitionPenalty *float64 `json:"repetition_penalty"`
	RepeatPenalty     *float64 `json:"repeat_penalty"`
	// StopTokenIDs end the text as the vocabulary's end-of-generation ids do, and
	// IgnoreEOS ends it at those no more (vLLM's names).
	StopTokenIDs []*int64 `json:"stop_token_ids"` // a null id is refused, not taken as 0
	IgnoreEOS    bool     `json:"ignore_eos"`
	// MinTokens holds those ends back until the output has this many tokens.
	MinTokens *int64 `json:"min_tokens"`
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	common
	Prompt Prompt  `json:"prompt"`
	Echo   bool    `json:"echo"`
	BestOf *int64  `json:"best_of"`
	Suffix *string `json:"suffix"`
	// Logprobs: the log-probabilities of the chosen tokens and of the Logprobs likeliest
	// at each position (0 to 20); null: none.
	Logprobs *int64 `json:"logprobs"`
}

// ChatRequest is the body of POST /v1/chat/completions.
type ChatRequest struct {
	common
	Messages    []Message `json:"messages"`
	Logprobs    *bool     `json:"logprobs"`
	TopLogprobs *int64    `json:"top_logprobs"`
	// Tools the model may call: rendered into the prompt by the chat template and
	// found in the reply by the server's tool call parser.
	Tools []Tool `json:"tools"`
	// ToolChoice: "auto" (or null) lets the model choose; "none" gives it no tools;
	// "required" and a named function force one call (see forcedCall).
	ToolChoice json.RawMessage `json:"tool_choice"`
	// ParallelToolCalls false answers with a reply's first tool call alone (null or
	// true: every call it holds).
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Functions         json.RawMessage `json:"functions"`
	Modalities        []string        `json:"modalities"`
	// Audio (spoken output) and WebSearchOptions (a search before answering) ask for
	// what specd cannot give: set, each is a 400 naming it, never ignored.
	Audio            json.RawMessage `json:"audio"`
	WebSearchOptions json.RawMessage `json:"web_search_options"`
	// ChatTemplateKwargs (vLLM's): a JSON object of extra variables for the chat
	// template (Qwen3's enable_thinking); null or {}: none.
	ChatTemplateKwargs json.RawMessage `json:"chat_template_kwargs"`
	// ContinueFinalMessage (vLLM's): true continues the final, assistant message (a
	// prefill) instead of answering it; the reply is the continuation.
	ContinueFinalMessage *bool `json:"continue_final_message"`
	// vLLM's extensions that replace the template or add to what it renders — the
	// template itself, documents — are not supported: set, each is a 400 naming it
	// (the verifier renders its own --chat-template).
	ChatTemplate json.RawMessage `json:"chat_template"`
	Documents    json.RawMessage `json:"documents"`
	// AddGenerationPrompt (an extension, as in vLLM): false renders the conversation
	// as it is; null ends it with the opening of an assistant turn, unless
	// continue_final_message is true; true with continue_final_message is a 400.
	AddGenerationPrompt *bool `json:"add_generation_prompt"`
	// Echo (vLLM's): every choice's reply starts with the final message's content
	// when that message is the assistant's (a prefill and its continuation, whole).
	Echo bool `json:"echo"`
}

// Message is one turn of a chat request. The chat template sees name, tool_call_id and
// tool_calls as the client sent them (the calls' arguments parsed from their JSON).
type Message struct {
	Role       string     `json:"role"`
	Content    Content    `json:"content"`
	Name       string     `json:"name"`
	ToolCallID string     `json:"tool_call_id"`
	ToolCalls  []ToolCall `json:"tool_calls"`
}

// ToolCall is one tool call of an assistant message.
type ToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string    `json:"name"`
		Arguments Arguments `json:"arguments"`
	} `json:"function"`
}

// Arguments are a tool call's arguments: JSON text in a string, as OpenAI's API sends
// them, or (as some clients send them) the JSON value itself, kept as its text.
type Arguments string

// UnmarshalJSON decodes either form.
func (a *Arguments) UnmarshalJSON(b []byte) error {
	if s, null, ok, err := nullOrString(b, "messages"); ok || err != nil {
		if !null {
			*a = Arguments(s)
		}
		return err
	}
	*a = Arguments(bytes.TrimSpace(b))
	return nil
}

// Tool is one tool of a chat request.
type Tool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		// Parameters is a JSON Schema, kept as its text (null: none).
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// Usage is the token accounting of a response, with specd's speculation statistics
// as an extra field.
type Usage struct {
	PromptTokens        int           `json:"prompt_tokens"`
	CompletionTokens    int           `json:"completion_tokens"`
	TotalTokens         int           `json:"total_tokens"`
	PromptTokensDetails *PromptTokens `json:"prompt_tokens_details,omitempty"`
	Specd               *SpecdUsage   `json:"specd,omitempty"`
}

// PromptTokens breaks the prompt tokens down.
type PromptTokens struct {
	// CachedTokens came from the verifier's prefix cache.
	CachedTokens int `json:"cached_tokens"`
}

// SpecdUsage is how specd served a request (specd.v1.Stats): speculation, prompt
// lookup, failovers and timings.
type SpecdUsage struct {
	Rounds                int     `json:"rounds"`
	DraftedTokens         int     `json:"drafted_tokens"`
	AcceptedTokens        int     `json:"accepted_tokens"`
	AcceptanceRate        float64 `json:"acceptance_rate"`
	MeanAcceptedPerRound  float64 `json:"mean_accepted_per_round"`
	LookupTokens          int     `json:"lookup_tokens"`
	LookupAcceptedTokens  int     `json:"lookup_accepted_tokens"`
	Mode                  string  `json:"mode,omitempty"` // "greedy", "coupled" or "rejection"; empty: no round verified
	Fallbacks             int     `json:"fallbacks"`
	DraftRefusals         int     `json:"draft_refusals"`
	Failovers             int     `json:"failovers"`
	Verifier              string  `json:"verifier,omitempty"` // address of the verifier that finished the request
	Draft                 string  `json:"draft,omitempty"`    // address of the draft used last
	DraftModel            string  `json:"draft_model,omitempty"`
	TimeToFirstTokenMS    float64 `json:"time_to_first_token_ms"`
	TotalMS               float64 `json:"total_ms"`
	QueueWaitMS           float64 `json:"queue_wait_ms"`
	MeanRoundTripMS       float64 `json:"mean_round_trip_ms"`
	DecodeTokensPerSecond float64 `json:"decode_tokens_per_second"`
}

// Head is what every response object starts with.
type Head struct {
	ID      string `json:"id"`     // "cmpl-…" or "chatcmpl-…", the same in every chunk of a stream
	Object  string `json:"object"` // "text_completion", "chat.completion" or "chat.completion.chunk"
	Created int64  `json:"created"`
	Model   string `json:"model"`
}

// Completion is the response of POST /v1/completions, and also each chunk of its
// stream.
type Completion struct {
	Head
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
}

// CompletionChoice is the one choice of a completion (n is always 1).
type CompletionChoice struct {
	Text         string              `json:"text"`
	Index        int                 `json:"index"`
	Logprobs     *CompletionLogprobs `json:"logprobs"`      // null unless asked for
	FinishReason *string             `json:"finish_reason"` // null in a chunk before the last
}

// CompletionLogprobs are a completion's tokens with their log-probabilities, in the
// legacy completions API's shape: parallel arrays, one entry per token.
type CompletionLogprobs struct {
	Tokens        []string   `json:"tokens"`
	TokenLogprobs []*float32 `json:"token_logprobs"` // null for an echoed prompt's first token
	// TopLogprobs: the likeliest tokens and the chosen one, likeliest first (null for
	// an echoed prompt's first token).
	TopLogprobs []TokenChoices `json:"top_logprobs"`
	TextOffset  []int          `json:"text_offset"` // of each token in the text, in characters
}

// TokenChoices maps tokens to log-probabilities, kept in order (likeliest first) when
// it is encoded as a JSON object.
type TokenChoices []TokenChoice

// TokenChoice is one entry of TokenChoices.
type TokenChoice struct {
	Token   string
	Logprob float32
}

// MarshalJSON encodes the choices as one JSON object in their order; a token repeated
// (two ids with the same text) keeps its first, likelier entry.
func (c TokenChoices) MarshalJSON() ([]byte, error) {
	if c == nil {
		return []byte("null"), nil
	}
	b := []byte{'{'}
	seen := make(map[string]bool, len(c))
	for _, x := range c {
		if seen[x.Token] {
			continue
		}
		seen[x.Token] = true
		k, err := json.Marshal(x.Token)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(x.Logprob)
		if err != nil {
			return nil, err
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// ChatLogprobs are a chat answer's tokens with their log-probabilities.
type ChatLogprobs struct {
	Content []ChatTokenLogprob `json:"content"`
	Refusal *struct{}          `json:"refusal"` // always null
}

// ChatTokenLogprob is one token of a chat answer.
type ChatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float32          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []ChatTopLogprob `json:"top_logprobs"`
}

// ChatTopLogprob is one of the likeliest tokens at a position of a chat answer.
type ChatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// ChatCompletion is the response of POST /v1/chat/completions.
type ChatCompletion struct {
	Head
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage,omitempty"`
}

// ChatChoice is the one choice of a chat completion.
type ChatChoice struct {
	Index        int           `json:"index"`
	Message      ChatMessage   `json:"message"`
	Logprobs     *ChatLogprobs `json:"logprobs"` // null unless asked for
	FinishReason string        `json:"finish_reason"`
}

// ChatMessage is the assistant's answer.
type ChatMessage struct {
	Role string `json:"role"`
	// Content is the answer's text; null when the reply is tool calls alone.
	Content   *string    `json:"content"`
	Refusal   *string    `json:"refusal"` // always null
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ChatChunk is one chunk of a streamed chat completion.
type ChatChunk struct {
	Head
	Choices []ChatChunkChoice `json:"choices"`
	Usage   *Usage            `json:"usage,omitempty"`
}

// ChatChunkChoice is the one choice of a chat chunk.
type ChatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        ChatDelta     `json:"delta"`
	Logprobs     *ChatLogprobs `json:"logprobs"`      // null unless asked for
	FinishReason *string       `json:"finish_reason"` // null before the last chunk
}

// ChatDelta is what a chunk adds to the answer: the role in the first chunk, then text,
// or a piece of a tool call (when the server parses them).
type ChatDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   string          `json:"content,omitempty"`
	ToolCalls []ToolCallDelta `json:"tool_calls,omitempty"`
}

// ToolCallDelta is a piece of a tool call in a chat chunk, as OpenAI's API streams
// them: the first of call Index has its id, type and function name (arguments ""),
// each later one text to append to its arguments.
type ToolCallDelta struct {
	Index    int           `json:"index"`
	ID       string        `json:"id,omitempty"`
	Type     string        `json:"type,omitempty"`
	Function FunctionDelta `json:"function"`
}

// FunctionDelta is the function of a ToolCallDelta.
type FunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ModelList is the response of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"` // "list"
	Data   []Model `json:"data"`
}

// Model is one model of GET /v1/models (and the response of GET /v1/models/{id}).
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Specd describes the model as the router sees it.
	Specd *ModelInfo `json:"specd,omitempty"`
}

// ModelInfo is specd's description of a model (specd.v1.ModelInfo).
type ModelInfo struct {
	Architecture  string `json:"architecture,omitempty"`
	Quantization  string `json:"quantization,omitempty"`
	ContextLength int    `json:"context_length"`
	VocabSize     int    `json:"vocab_size"`
	Parameters    uint64 `json:"parameters"`
}

// errorBody is the envelope of every error response.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}
