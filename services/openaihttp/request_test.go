package openaihttp

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/toolcall"
)

func f32(v float32) *float32 { return &v }
func u64(v uint64) *uint64   { return &v }

// TestParseCompletion: each accepted form of a completion request becomes the
// GenerateRequest it means, with OpenAI's defaults (max_tokens 16, temperature 1).
func TestParseCompletion(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       *specdv1.GenerateRequest
		stream     bool
		usage      bool
	}{
		{"defaults", `{"model":"m","prompt":"Once upon"}`,
			&specdv1.GenerateRequest{Model: "m", Prompt: "Once upon", MaxTokens: 16, Sampling: &specdv1.SamplingParams{Temperature: 1}}, false, false},
		{"array of one string", `{"prompt":["Once"],"max_tokens":3,"temperature":0}`,
			&specdv1.GenerateRequest{Prompt: "Once", MaxTokens: 3, Sampling: &specdv1.SamplingParams{}}, false, false},
		{"token ids", `{"prompt":[1, 450, 7],"max_tokens":3}`,
			&specdv1.GenerateRequest{PromptIds: []int32{1, 450, 7}, MaxTokens: 3, Sampling: &specdv1.SamplingParams{Temperature: 1}}, false, false},
		{"array of one array of ids", `{"prompt":[[1, 2]]}`,
			&specdv1.GenerateRequest{PromptIds: []int32{1, 2}, MaxTokens: 16, Sampling: &specdv1.SamplingParams{Temperature: 1}}, false, false},
		{"sampling, seed, stop string", `{"prompt":"x","temperature":0.7,"top_p":0.9,"seed":42,"stop":"\n","user":"u1","n":1,"top_k":40,"min_p":0.05}`,
			&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 16, Stop: []string{"\n"},
				Sampling: &specdv1.SamplingParams{Temperature: 0.7, TopP: f32(0.9), TopK: 40, MinP: f32(0.05), Seed: u64(42)}}, false, false},
		{"top_p 0, which OpenAI's API takes, is the likeliest token alone", `{"prompt":"x","top_p":0,"top_k":40}`,
			&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 16, Sampling: &specdv1.SamplingParams{Temperature: 1, TopK: 1}}, false, false},
		{"top_k -1 is off, as in vLLM", `{"prompt":"x","top_k":-1}`,
			&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 16, Sampling: &specdv1.SamplingParams{Temperature: 1}}, false, false},
		{"negative seed", `{"prompt":"x","seed":-1}`,
			&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 16, Sampling: &specdv1.SamplingParams{Temperature: 1, Seed: u64(1<<64 - 1)}}, false, false},
		{"stop array, max_completion_tokens wins", `{"prompt":"x","stop":["a","b"],"max_tokens":5,"max_completion_tokens":9}`,
			&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 9, Stop: []string{"a", "b"}, Sampling: &specdv1.SamplingParams{Temperature: 1}}, false, false},
		{"penalties and logprobs", `{"prompt":"x","presence_penalty":0.5,"frequency_penalty":-1,"repetition_penalty":1.1,"logprobs":3}`,
			&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 16, Logprobs: true, TopLogprobs: 3, Sampling: &specdv1.SamplingParams{Temperature: 1,
				PresencePenalty: 0.5, FrequencyPenalty: -1, RepetitionPenalty: f32(1.1)}}, false, false},
		{"llama.cpp's repeat_penalty, logprobs 0", `{"prompt":"x","repeat_penalty":1.3,"logprobs":0}`,
			&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 16, Logprobs: true, Sampling: &specdv1.SamplingParams{Temperature: 1, RepetitionPenalty: f32(1.3)}}, false, false},
		{"echo, scoring the prompt alone", `{"prompt":[1, 450, 7],"echo":true,"logprobs":1,"max_tokens":0,"temperature":0}`,
			&specdv1.GenerateRequest{PromptIds: []int32{1, 450, 7}, MaxTokens: 1, Logprobs: true, TopLogprobs: 1, PromptLogprobs: true,
				Sampling: &specdv1.SamplingParams{}}, false, false},
		{"a batch of prompts: the first in the request", `{"prompt":["Once","Twice"],"max_tokens":3}`,
			&specdv1.GenerateRequest{Prompt: "Once", MaxTokens: 3, Sampling: &specdv1.SamplingParams{Temperature: 1}}, false, false},
		{"stream with usage, unknown fields ignored", `{"prompt":"x","stream":true,"stream_options":{"include_usage":true},"metadata":{"k":"v"},"store":false,"echo":false,"best_of":1,"logprobs":null,"presence_penalty":0}`,
			&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 16, Sampling: &specdv1.SamplingParams{Temperature: 1}}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCompletion([]byte(tc.body))
			if err != nil {
				t.Fatalf("ParseCompletion(%s) = %v", tc.body, err)
			}
			if !proto.Equal(c.Req, tc.want) {
				t.Errorf("ParseCompletion(%s) request = {%v}, want {%v}", tc.body, prototext.Format(c.Req), prototext.Format(tc.want))
			}
			if c.Stream != tc.stream || c.IncludeUsage != tc.usage || c.Chat {
				t.Errorf("ParseCompletion(%s): stream %v, usage %v, chat %v; want %v, %v, false", tc.body, c.Stream, c.IncludeUsage, c.Chat, tc.stream, tc.usage)
			}
		})
	}
}

// TestParseChat: messages map to GenerateRequest.messages (text parts joined,
// developer as system; name, tool_call_id and tool calls carried, a call's arguments
// as JSON text whether sent as a string or as the value), with no length limit unless
// one is given.
func TestParseChat(t *testing.T) {
	body := `{"model":"m","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"there"}]},` +
		`{"role":"assistant","content":null,"name":"bot","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\": 1}"}},` +
		`{"id":"c2","function":{"name":"g","arguments":{"y":[true]}}},{"id":"c3","function":{"name":"h","arguments":""}},` +
		`{"id":"c4","function":{"name":"h","arguments":" \n"}},{"id":"c5","function":{"name":"h","arguments":null}},{"id":"c6","function":{"name":"h"}}]},` +
		`{"role":"tool","tool_call_id":"c1","name":"f","content":"2"}],` +
		`"max_completion_tokens":7,"tool_choice":"none","response_format":{"type":"text"}}`
	c, err := ParseChat([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := &specdv1.GenerateRequest{Model: "m", MaxTokens: 7, Sampling: &specdv1.SamplingParams{Temperature: 1}, Messages: []*specdv1.ChatMessage{
		{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi\nthere"},
		{Role: "assistant", Name: "bot", ToolCalls: []*specdv1.ToolCall{
			{Id: "c1", Type: "function", Function: &specdv1.FunctionCall{Name: "f", Arguments: `{"x": 1}`}},
			{Id: "c2", Function: &specdv1.FunctionCall{Name: "g", Arguments: `{"y":[true]}`}},
			// A call without arguments, however the client writes it, is {}.
			{Id: "c3", Function: &specdv1.FunctionCall{Name: "h", Arguments: `{}`}},
			{Id: "c4", Function: &specdv1.FunctionCall{Name: "h", Arguments: `{}`}},
			{Id: "c5", Function: &specdv1.FunctionCall{Name: "h", Arguments: `{}`}},
			{Id: "c6", Function: &specdv1.FunctionCall{Name: "h", Arguments: `{}`}}}},
		{Role: "tool", Content: "2", Name: "f", ToolCallId: "c1"}}}
	if !proto.Equal(c.Req, want) {
		t.Errorf("ParseChat request = {%v}, want {%v}", prototext.Format(c.Req), prototext.Format(want))
	}
	if !c.Chat {
		t.Error("ParseChat: Chat = false")
	}
	c, err = ParseChat([]byte(`{"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":5}`))
	if err != nil || !c.Req.GetLogprobs() || c.Req.GetTopLogprobs() != 5 {
		t.Errorf("ParseChat with logprobs and top_logprobs 5: %v, %d, %v", c.Req.GetLogprobs(), c.Req.GetTopLogprobs(), err)
	}
	c, err = ParseChat([]byte(`{"messages":[{"role":"user","content":"x"}]}`))
	if err != nil || c.Req.GetMaxTokens() != 0 || c.Req.AddGenerationPrompt != nil {
		t.Errorf("ParseChat without a limit: max_tokens %d, add_generation_prompt %v, %v; want 0 (up to the context) and unset", c.Req.GetMaxTokens(), c.Req.AddGenerationPrompt, err)
	}
	// vLLM's template extensions, sent empty or false, change nothing and are taken.
	if _, err := ParseChat([]byte(`{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{},"chat_template":"","documents":null,"continue_final_message":false}`)); err != nil {
		t.Errorf("ParseChat with vLLM's template extensions empty: %v", err)
	}
	c, err = ParseChat([]byte(`{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"{"}],"continue_final_message":true,` +
		`"add_generation_prompt":false,"chat_template_kwargs":{"enable_thinking":false,"n":[1,2.5]}}`))
	if err != nil || !c.Req.GetContinueFinalMessage() || c.Req.GetChatTemplateKwargs() != `{"enable_thinking":false,"n":[1,2.5]}` {
		t.Errorf("ParseChat with continue_final_message and chat_template_kwargs: %v, %q, %v; want true and the object's text", c.Req.GetContinueFinalMessage(), c.Req.GetChatTemplateKwargs(), err)
	}
	c, err = ParseChat([]byte(`{"messages":[{"role":"assistant","content":"Once"}],"add_generation_prompt":false}`))
	if err != nil || c.Req.AddGenerationPrompt == nil || *c.Req.AddGenerationPrompt {
		t.Errorf("ParseChat with add_generation_prompt false: %v, %v; want false", c.Req.AddGenerationPrompt, err)
	}
}

// TestParseErrors: each bad request is a 400 naming the parameter OpenAI's API would.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		chat  bool
		body  string
		param string
	}{
		{false, `{"prompt":"x","n":17}`, "n"},
		{false, `{"prompt":"x","n":0}`, "n"},
		{true, `{"messages":[{"role":"user","content":"x"}],"n":-1}`, "n"},
		{false, `{"prompt":"x","temperature":2.5}`, "temperature"},
		{false, `{"prompt":"x","temperature":-1}`, "temperature"},
		{false, `{"prompt":"x","temperature":"hot"}`, "temperature"},
		{false, `{"prompt":"x","top_p":-0.1}`, "top_p"},
		{true, `{"messages":[{"role":"user","content":"x"}],"top_p":1.5}`, "top_p"},
		{false, `{"prompt":"x","max_tokens":0}`, "max_tokens"},
		{false, `{"prompt":"x","max_tokens":-5}`, "max_tokens"},
		{false, `{"prompt":"x","max_tokens":1.5}`, "max_tokens"},
		{true, `{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":0}`, "max_completion_tokens"},
		{false, `{"prompt":"x","stop":""}`, "stop"},
		{false, `{"prompt":"x","stop":[1]}`, "stop"},
		{false, `{"prompt":"x","seed":"s"}`, "seed"},
		{false, `{}`, "prompt"},
		{false, `{"prompt":null}`, "prompt"},
		{false, `{"prompt":["a",""]}`, "prompt"},
		{false, `{"prompt":["a",["b"]]}`, "prompt"},
		{false, `{"prompt":["a","b","c","d","e"],"n":16}`, "n"},
		{false, `{"prompt":[]}`, "prompt"},
		{false, `{"prompt":[[1],[]]}`, "prompt"},
		{false, `{"prompt":[-1]}`, "prompt"},
		{false, `{"prompt":[1, "a"]}`, "prompt"},
		{false, `{"prompt":[["a"]]}`, "prompt"},
		{false, `{"prompt":{}}`, "prompt"},
		{false, `{"prompt":"x","max_tokens":0}`, "max_tokens"},
		{false, `{"prompt":"x","best_of":2}`, "best_of"},
		{false, `{"prompt":"x","suffix":"end"}`, "suffix"},
		{false, `{"prompt":"x","logprobs":21}`, "logprobs"},
		{false, `{"prompt":"x","logprobs":-1}`, "logprobs"},
		{false, `{"prompt":"x","logprobs":true}`, "logprobs"},
		{false, `{"prompt":"x","presence_penalty":2.5}`, "presence_penalty"},
		{false, `{"prompt":"x","frequency_penalty":-3}`, "frequency_penalty"},
		{false, `{"prompt":"x","repetition_penalty":0}`, "repetition_penalty"},
		{false, `{"prompt":"x","repeat_penalty":101}`, "repeat_penalty"},
		{false, `{"prompt":"x","repetition_penalty":1.1,"repeat_penalty":1.1}`, "repeat_penalty"},
		{false, `{"prompt":"x","logit_bias":{"a":-100}}`, "logit_bias"},
		{false, `{"prompt":"x","logit_bias":{"-1":5}}`, "logit_bias"},
		{false, `{"prompt":"x","logit_bias":{"5":101}}`, "logit_bias"},
		{false, `{"prompt":"x","logit_bias":{"5":"up"}}`, "logit_bias"},
		{false, `{"prompt":"x","logit_bias":{"1":5,"01":-5}}`, "logit_bias"},
		{false, `{"prompt":"x","logit_bias":{"+7":1,"7":2}}`, "logit_bias"},
		{false, `{"prompt":"x","logit_bias":{"7":null}}`, "logit_bias"},
		{false, `{"prompt":"x","stop_token_ids":[5,null]}`, "stop_token_ids"},
		{false, `{"prompt":"x","min_tokens":-1}`, "min_tokens"},
		{false, `{"prompt":"x","stop_token_ids":[-1]}`, "stop_token_ids"},
		{false, `{"prompt":"x","stream_options":{"include_usage":true}}`, "stream_options"},
		{false, `{"prompt":"x","top_k":-2}`, "top_k"},
		{false, `{"prompt":"x","response_format":{"type":"xml"}}`, "response_format"},
		{false, `{"prompt":"x","response_format":{"type":"json_schema"}}`, "response_format.json_schema.schema"},
		{false, `{"prompt":"x","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":null}}}`, "response_format.json_schema.schema"},
		{false, `{"prompt":"x","response_format":{"type":"json_object","json_schema":{"name":"x","schema":{"type":"array"}}}}`, "response_format.json_schema"},
		{false, `{"prompt":"x","response_format":{"type":"text","schema":{"type":"array"}}}`, "response_format.schema"},
		{false, `{"prompt":"x","response_format":{"type":"json_schema","schema":{"type":"array"},"json_schema":{"name":"x","schema":{}}}}`, "response_format.schema"},
		{false, `{"prompt":"x","guided_choice":"a"}`, "guided_choice"},
		{false, `{"prompt":"x","guided_choice":[]}`, "guided_choice"},
		{false, `{"prompt":"x","guided_choice":["a",1]}`, "guided_choice"},
		{false, `{"prompt":"x","guided_regex":5}`, "guided_regex"},
		{false, `{"prompt":"x","guided_regex":""}`, "guided_regex"},
		{false, `{"prompt":"x","guided_grammar":{"root":"a"}}`, "guided_grammar"},
		{false, `{"prompt":"x","grammar":["root ::= \"a\""]}`, "grammar"},
		{false, `{"prompt":"x","structured_outputs":{"choice":"a"}}`, "structured_outputs.choice"},
		{false, `{"prompt":"x","structured_outputs":{"grammar":1}}`, "structured_outputs.grammar"},
		{false, `{"prompt":"x","grammar":"root ::= \"a\"","guided_regex":"a+"}`, "guided_regex"},
		{false, `{"prompt":"x","guided_json":{},"guided_choice":["a"]}`, "guided_json"},
		{false, `{"prompt":"x","response_format":{"type":"json_object"},"grammar":"root ::= \"a\""}`, "grammar"},
		{false, `{"prompt":"x","guided_regex":"a","structured_outputs":{"regex":"a+"}}`, "structured_outputs.regex"},
		{false, `{"prompt":"x","guided_json":{},"guided_decoding_backend":"xgrammar"}`, "guided_decoding_backend"},
		{false, `{"prompt":"x","guided_json":{},"guided_whitespace_pattern":" *"}`, "guided_whitespace_pattern"},
		{false, `{"prompt":"x","structural_tag":"{}"}`, "structural_tag"},
		{false, `{"prompt":"x","grammar":"root ::= \"a\"","grammar_lazy":true}`, "grammar_lazy"},
		{false, `{"prompt":"x","grammar":"root ::= \"a\"","grammar_trigger_words":[" was"]}`, "grammar_trigger_words"},
		{false, `{"prompt":"x","grammar":"root ::= \"a\"","grammar_triggers":[{"type":"word","value":"x"}]}`, "grammar_triggers"},
		{false, `{"prompt":"x","grammar_trigger_tokens":[5]}`, "grammar_trigger_tokens"},
		{false, `{"prompt":"x","structured_outputs":{"whitespace_pattern":" "}}`, "structured_outputs.whitespace_pattern"},
		{false, `{"prompt":"x","structured_outputs":{"json":{},"disable_any_whitespace":true}}`, "structured_outputs.disable_any_whitespace"},
		{false, `{"prompt":"x","structured_outputs":{"json_object":"yes"}}`, "structured_outputs.json_object"},
		{false, `{"prompt":"x","guided_json":""}`, "guided_json"},
		{false, `{"prompt":"x","response_format":{"type":"json_object"},"guided_json":{}}`, "guided_json"},
		{false, `{"prompt":"x","guided_json":{},"structured_outputs":{"json_object":true}}`, "structured_outputs.json_object"},
		{false, `{"prompt":"x","guided_json":{},"json_schema":{}}`, "json_schema"},
		{true, `{"messages":[]}`, "messages"},
		{true, `{}`, "messages"},
		{true, `{"messages":[{"role":"wizard","content":"x"}]}`, "messages"},
		{true, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, "messages"},
		{true, `{"messages":[{"role":"user","content":7}]}`, "messages"},
		{true, `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}`, "tools"},
		{true, `{"messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]}`, "functions"},
		{true, `{"messages":[{"role":"user","content":"x"}],"logprobs":1}`, "logprobs"},
		{true, `{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}`, "top_logprobs"},
		{true, `{"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}`, "top_logprobs"},
		{true, `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"grammar"}}`, "response_format"},
		{true, `{"messages":[{"role":"user","content":"x"}],"modalities":["text","audio"]}`, "modalities"},
		{true, `{"messages":[{"role":"user","content":"x"}],"audio":{"voice":"alloy","format":"wav"}}`, "audio"},
		{true, `{"messages":[{"role":"user","content":"x"}],"web_search_options":{}}`, "web_search_options"},
		{true, `{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"messages":[]}}`, "chat_template_kwargs"},
		{true, `{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"bos_token":"x"}}`, "chat_template_kwargs"},
		{true, `{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":[1]}`, "chat_template_kwargs"},
		{true, `{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"a":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}}`, "chat_template_kwargs"},
		{true, `{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"a b":1}}`, "chat_template_kwargs"},
		{true, `{"messages":[{"role":"user","content":"x"}],"chat_template":"{{ messages }}"}`, "chat_template"},
		{true, `{"messages":[{"role":"user","content":"x"}],"documents":[{"title":"a","text":"b"}]}`, "documents"},
		{true, `{"messages":[{"role":"assistant","content":"x"}],"continue_final_message":true,"add_generation_prompt":true}`, "continue_final_message"},
		{true, `{"messages":[{"role":"assistant","content":"x"},{"role":"user","content":"y"}],"continue_final_message":true}`, "continue_final_message"},
		{true, `{"messages":[{"role":"assistant","content":"x"}],"continue_final_message":1}`, "continue_final_message"},
	} {
		parse := ParseCompletion
		if tc.chat {
			parse = ParseChat
		}
		_, err := parse([]byte(tc.body))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Type != TypeInvalidRequest || e.Param != tc.param {
			t.Errorf("parse(%s) = %v, want a 400 invalid_request_error with param %q", tc.body, err, tc.param)
		}
	}
}

// TestParseRules: each name for a grammar, a regular expression or a choice sets the
// response format; two constraints in one request are a 400 naming both.
func TestParseRules(t *testing.T) {
	const g = `root ::= "a"`
	for _, tc := range []struct {
		body string
		want *specdv1.ResponseFormat
	}{
		{`{"prompt":"x","grammar":"root ::= \"a\""}`, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: g}},
		{`{"prompt":"x","guided_grammar":"root ::= \"a\""}`, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: g}},
		// llama.cpp's lazy grammar fields, left at their defaults, change nothing.
		{`{"prompt":"x","grammar":"root ::= \"a\"","grammar_lazy":false,"grammar_trigger_words":[],"grammar_trigger_tokens":[],"grammar_triggers":null}`, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: g}},
		{`{"prompt":"x","structured_outputs":{"grammar":"root ::= \"a\""}}`, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: g}},
		{`{"prompt":"x","guided_regex":"a+"}`, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: "a+"}},
		{`{"prompt":"x","structured_outputs":{"regex":"a+"}}`, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: "a+"}},
		{`{"prompt":"x","guided_choice":["yes","no"]}`, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: []string{"yes", "no"}}},
		{`{"prompt":"x","structured_outputs":{"choice":["yes","no"]}}`, &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: []string{"yes", "no"}}},
	} {
		chat := strings.Replace(tc.body, `"prompt":"x"`, `"messages":[{"role":"user","content":"x"}]`, 1)
		for body, parse := range map[string]func([]byte) (*Call, error){tc.body: ParseCompletion, chat: ParseChat} {
			c, err := parse([]byte(body))
			if err != nil {
				t.Fatalf("parse(%s): %v", body, err)
			}
			if got := c.Req.GetResponseFormat(); !proto.Equal(got, tc.want) {
				t.Errorf("parse(%s): response format %v, want %v", body, got, tc.want)
			}
		}
	}
	_, err := ParseCompletion([]byte(`{"prompt":"x","guided_choice":["a"],"structured_outputs":{"regex":"a"}}`))
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "structured_outputs.regex") || !strings.Contains(e.Message, "guided_choice") {
		t.Errorf("two constraints: %v, want a 400 naming both", err)
	}
}

// TestParseErrorMessages: a refusal says what range the parameter takes.
func TestParseErrorMessages(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"prompt":"x","max_tokens":0}`, "max_tokens: 0: want 1 to 4294967295"},
		{`{"prompt":"x","max_tokens":4294967296}`, "max_tokens: 4294967296: want 1 to 4294967295"},
		{`{"prompt":"x","max_completion_tokens":-3}`, "max_completion_tokens: -3: want 1 to 4294967295"},
	} {
		_, err := ParseCompletion([]byte(tc.body))
		var e *Error
		if !errors.As(err, &e) || e.Message != tc.want {
			t.Errorf("ParseCompletion(%s) = %v, want the message %q", tc.body, err, tc.want)
		}
	}
}

// TestParseNotJSON: a body that is not a JSON object is a 400 without a parameter.
func TestParseNotJSON(t *testing.T) {
	for _, body := range []string{``, `{`, `[]`, `"prompt"`, `{"prompt":"x"} {}`, `nul`} {
		_, err := ParseCompletion([]byte(body))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Param != "" {
			t.Errorf("ParseCompletion(%q) = %v, want a 400 without param", body, err)
		}
	}
}

// FuzzParse: no body makes the decoders panic or accept a request the router would
// see with two prompts or a stop string that is empty; every refusal is a 400.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"Once upon","max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":[[1,2,3]],"stop":["\n","."],"seed":-3,"temperature":0.5,"top_p":0.9}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_completion_tokens":4}`,
		`{"messages":[{"role":"system","content":null},{"role":"user","content":"\u00e9"}],"n":1}`,
		`{"prompt":["a"],"logprobs":null,"best_of":1,"echo":false}`,
		`{"prompt":[1e3]}`, `{"prompt":[[]]}`, `{"stop":null,"prompt":""}`,
		`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto"}`,
		`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function"}}`,
		`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"required","tools":[{"type":"function","function":{"name":"f"}}]}}}`,
		`{"messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":""}}]}],"audio":null,"top_p":0}`,
		`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"{"}],"continue_final_message":true,"add_generation_prompt":false}`,
		`{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"enable_thinking":false,"a":[1,2.5,{"b":null}]}}`,
		`{"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"messages":1},"continue_final_message":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		hermes := func(b []byte) (*Call, error) { return ParseChatTools(b, toolcall.Hermes) }
		for _, parse := range []func([]byte) (*Call, error){ParseCompletion, ParseChat, hermes} {
			c, err := parse(body)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != 400 {
					t.Fatalf("parse(%q) = %v, want an *Error with status 400", body, err)
				}
				continue
			}
			r := c.Req
			if c.Chat == (len(r.GetMessages()) == 0) {
				t.Fatalf("parse(%q): chat %v with %d messages", body, c.Chat, len(r.GetMessages()))
			}
			if !c.Chat && r.GetPrompt() != "" && len(r.GetPromptIds()) > 0 {
				t.Fatalf("parse(%q): both prompt and prompt_ids", body)
			}
			for _, s := range r.GetStop() {
				if s == "" {
					t.Fatalf("parse(%q): an empty stop string passed", body)
				}
			}
			if temp := r.GetSampling().GetTemperature(); temp < 0 || temp > 2 {
				t.Fatalf("parse(%q): temperature %v passed", body, temp)
			}
			// Strings decoded by encoding/json are valid UTF-8 (bad bytes become U+FFFD),
			// so the request always reaches the router.
			if _, err := proto.Marshal(r); err != nil {
				t.Fatalf("parse(%q): the request does not marshal: %v", body, err)
			}
		}
	})
}

// TestParseBatch: a batch of prompts, text or token ids, is one choice per prompt and
// n each, prompt-major, each with its prompt and, with a seed, seed + its index among
// its prompt's choices.
func TestParseBatch(t *testing.T) {
	c, err := ParseCompletion([]byte(`{"prompt":[[1,2],[3],[4,5,6]],"n":2,"seed":10}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.N != 6 {
		t.Fatalf("N = %d, want 3 prompts × 2", c.N)
	}
	want := []struct {
		ids  []int32
		seed uint64
	}{{[]int32{1, 2}, 10}, {[]int32{1, 2}, 11}, {[]int32{3}, 10}, {[]int32{3}, 11}, {[]int32{4, 5, 6}, 10}, {[]int32{4, 5, 6}, 11}}
	for i, w := range want {
		r := c.Choice(i)
		if !slices.Equal(r.GetPromptIds(), w.ids) || r.GetSampling().GetSeed() != w.seed {
			t.Errorf("choice %d: prompt %v seed %d, want %v seed %d", i, r.GetPromptIds(), r.GetSampling().GetSeed(), w.ids, w.seed)
		}
	}
	c, err = ParseCompletion([]byte(`{"prompt":["a","b"]}`))
	if err != nil || c.N != 2 || c.Choice(1).GetPrompt() != "b" || c.Choice(0).GetPrompt() != "a" {
		t.Errorf("two text prompts: %v, N %d", err, c.N)
	}
}

// TestParseResponseFormat: OpenAI's response_format types (and llama.cpp's json_object
// with a schema beside the type, vLLM's guided_json and structured_outputs, llama.cpp's
// json_schema) become the request's response format; the schema goes through as the
// client wrote it, for the verifier to compile.
func TestParseResponseFormat(t *testing.T) {
	const schema = `{"type":"object","properties":{"a":{"type":"integer"}}}`
	for _, tc := range []struct {
		format string
		want   specdv1.ResponseFormatType
		schema string
	}{
		{`{"type":"text"}`, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_UNSPECIFIED, ""},
		{`{"type":"json_object"}`, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT, ""},
		{`{"type":"json_schema","json_schema":{"name":"n","strict":true,"schema":` + schema + `}}`, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema},
		{`{"type":"json_schema","json_schema":{"name":"any","schema":{}}}`, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, `{}`},
		{`{"type":"json_object","schema":` + schema + `}`, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema},
		// vLLM's and llama.cpp's other names for the same formats.
		{`{"type":"text"},"guided_json":` + schema, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema},
		{`null,"guided_json":"{\"type\":\"array\"}"`, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, `{"type":"array"}`},
		{`null,"structured_outputs":{"json":` + schema + `,"disable_fallback":false}`, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema},
		{`null,"structured_outputs":{"json_object":true}`, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT, ""},
		{`null,"json_schema":` + schema, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema},
	} {
		for _, parse := range []func([]byte) (*Call, error){ParseCompletion, ParseChat} {
			c, err := parse([]byte(`{"prompt":"x","messages":[{"role":"user","content":"x"}],"response_format":` + tc.format + `}`))
			if err != nil {
				t.Fatalf("%s: %v", tc.format, err)
			}
			rf := c.Req.GetResponseFormat()
			if rf.GetType() != tc.want || rf.GetJsonSchema() != tc.schema {
				t.Errorf("%s: %v %q; want %v %q", tc.format, rf.GetType(), rf.GetJsonSchema(), tc.want, tc.schema)
			}
		}
	}
}

// TestParseContinueFormat: a prefill with a constraint on the output is a 400 naming
// continue_final_message whose message names the constraint as the client asked for
// it (a vLLM field, a forced tool call), not as the router's response_format; a
// response_format of text constrains nothing and is taken.
func TestParseContinueFormat(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"{"}],"continue_final_message":true`
	const tools = `"tools":[{"type":"function","function":{"name":"f"}}]`
	for _, tc := range []struct{ body, says string }{
		{`{` + msgs + `,"guided_regex":"a+"}`, "guided_regex"},
		{`{` + msgs + `,"structured_outputs":{"choice":["a"]}}`, "structured_outputs"},
		{`{` + msgs + `,"response_format":{"type":"json_object"}}`, "response_format"},
		{`{` + msgs + `,` + tools + `,"tool_choice":"required"}`, "tool_choice"},
		{`{` + msgs + `,` + tools + `,"tool_choice":{"type":"function","function":{"name":"f"}}}`, "tool_choice"},
	} {
		_, err := ParseChatTools([]byte(tc.body), toolcall.Hermes)
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Param != "continue_final_message" || !strings.Contains(e.Message, tc.says) {
			t.Errorf("ParseChatTools(%s) = %v, want a 400 naming continue_final_message that says %s", tc.body, err, tc.says)
		}
	}
	if _, err := ParseChatTools([]byte(`{`+msgs+`,"response_format":{"type":"text"}}`), toolcall.Hermes); err != nil {
		t.Errorf("a prefill with response_format text: %v", err)
	}
}

// TestParseChatEcho: echo takes the final message's content when that message is the
// assistant's (text parts joined as the template sees them), and nothing otherwise.
func TestParseChatEcho(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"Once"}],"echo":true}`, "Once"},
		{`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"echo":true,"continue_final_message":true}`, "a\nb"},
		{`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"Once"}],"echo":false}`, ""},
		{`{"messages":[{"role":"assistant","content":"Once"},{"role":"user","content":"x"}],"echo":true}`, ""},
		{`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":null}],"echo":true}`, ""},
	} {
		c, err := ParseChat([]byte(tc.body))
		if err != nil {
			t.Fatalf("ParseChat(%s): %v", tc.body, err)
		}
		if c.ChatEcho != tc.want {
			t.Errorf("ParseChat(%s).ChatEcho = %q, want %q", tc.body, c.ChatEcho, tc.want)
		}
	}
}
