package serve_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/toolcall"
)

// TestOpenAIToolRoundTrip: a tool conversation as openai-go's users write it, against
// the real models with Qwen2.5's template and its hermes syntax: a forced call; the
// assistant's message as the client returned it (ToParam) and the tool's result sent
// back, which the template renders as the gRPC API renders the same conversation; the
// call streamed, joined by the client's accumulator into the same call; and a call
// without arguments replayed with arguments "" under allowed_tools narrowing the tools
// to it.
func TestOpenAIToolRoundTrip(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t), tools: toolcall.Hermes})
	c := s.openaiClient()
	ctx := context.Background()
	tools := []openai.ChatCompletionToolUnionParam{
		openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather", Description: openai.String("The weather in a city now."),
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}),
		openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "now", Description: openai.String("The time.")}),
	}
	question := openai.UserMessage("What is the weather in Paris?")
	p := openai.ChatCompletionNewParams{Model: "specd-target", Messages: []openai.ChatCompletionMessageParamUnion{question}, Tools: tools,
		ToolChoice:          openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"}),
		MaxCompletionTokens: openai.Int(100), Temperature: openai.Float(0)}
	resp, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	ch := resp.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "get_weather" {
		t.Fatalf("forced call: finish %q, calls %s; want one call of get_weather", ch.FinishReason, ch.Message.RawJSON())
	}
	call := ch.Message.ToolCalls[0]
	var args struct{ City *string }
	if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil || args.City == nil {
		t.Fatalf("forced call: arguments %s (%v); want an object with a city", call.Function.Arguments, err)
	}

	t.Run("result sent back", func(t *testing.T) {
		q := p
		q.ToolChoice, q.MaxCompletionTokens = openai.ChatCompletionToolChoiceOptionUnionParam{}, openai.Int(12)
		q.Messages = []openai.ChatCompletionMessageParamUnion{question, ch.Message.ToParam(), openai.ToolMessage("21 C, sunny", call.ID)}
		next, err := c.Chat.Completions.New(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		// The gRPC API, given the same conversation, renders the same prompt: the
		// same greedy text from the same number of prompt tokens.
		want, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Model: "specd-target", MaxTokens: 12, Messages: []*specdv1.ChatMessage{
			{Role: "user", Content: "What is the weather in Paris?"},
			{Role: "assistant", ToolCalls: []*specdv1.ToolCall{{Id: call.ID, Type: "function", Function: &specdv1.FunctionCall{Name: "get_weather", Arguments: call.Function.Arguments}}}},
			{Role: "tool", Content: "21 C, sunny", ToolCallId: call.ID}},
			Tools: []*specdv1.Tool{
				{Type: "function", Function: &specdv1.FunctionDefinition{Name: "get_weather", Description: "The weather in a city now.",
					Parameters: `{"properties":{"city":{"type":"string"}},"required":["city"],"type":"object"}`}},
				{Type: "function", Function: &specdv1.FunctionDefinition{Name: "now", Description: "The time."}}}})
		if err != nil {
			t.Fatal(err)
		}
		got := next.Choices[0].Message.Content
		if got != want.GetText() || next.Usage.PromptTokens != int64(want.GetStats().GetPromptTokens()) {
			t.Errorf("after the result: %q from %d prompt tokens; gRPC gives %q from %d", got, next.Usage.PromptTokens, want.GetText(), want.GetStats().GetPromptTokens())
		}
		if next.Usage.PromptTokens <= resp.Usage.PromptTokens {
			t.Errorf("after the result: %d prompt tokens, not more than the question's %d", next.Usage.PromptTokens, resp.Usage.PromptTokens)
		}
	})

	t.Run("streamed", func(t *testing.T) {
		st := c.Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		for st.Next() {
			acc.AddChunk(st.Current())
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		got := acc.Choices[0]
		if got.FinishReason != "tool_calls" || len(got.Message.ToolCalls) != 1 || got.Message.ToolCalls[0].Function.Name != "get_weather" ||
			got.Message.ToolCalls[0].Function.Arguments != call.Function.Arguments {
			t.Errorf("streamed: finish %q, calls %+v; want the unstreamed call %s", got.FinishReason, got.Message.ToolCalls, call.Function.Arguments)
		}
	})

	t.Run("empty arguments replayed, allowed_tools", func(t *testing.T) {
		q := p
		q.ToolChoice = openai.ToolChoiceOptionAllowedTools(openai.ChatCompletionAllowedToolsParam{Mode: openai.ChatCompletionAllowedToolsModeRequired,
			Tools: []map[string]any{{"type": "function", "function": map[string]any{"name": "now"}}}})
		q.Messages = []openai.ChatCompletionMessageParamUnion{question,
			{OfAssistant: &openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
				ID: "call_1", Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "now", Arguments: ""}}}}}},
			openai.ToolMessage("12:00", "call_1")}
		resp, err := c.Chat.Completions.New(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		calls := resp.Choices[0].Message.ToolCalls
		if len(calls) != 1 || calls[0].Function.Name != "now" || calls[0].Function.Arguments != "{}" {
			t.Errorf("allowed_tools now, required: %s; want one call of now with {}", resp.Choices[0].Message.RawJSON())
		}
	})
}

// TestOpenAIOneToolCall: parallel_tool_calls false ends the generation as soon as the
// reply's first call is whole, for both syntaxes (Hermes's closing tag and
// llama3_json's bare JSON alike), streamed and not: one call, the first of what the
// same request with parallel calls gives, finish_reason tool_calls, and fewer
// completion tokens; and a max_tokens that cuts the second call, which ruins the
// parallel reply, leaves the first call whole; text before the calls is the content
// either way. A guided_regex makes the real model write two calls.
func TestOpenAIOneToolCall(t *testing.T) {
	for _, c := range []struct {
		name   string
		syntax toolcall.Syntax
		regex  string
	}{
		{"hermes", toolcall.Hermes, "<tool_call>\n\\{\"name\": \"get_weather\", \"arguments\": \\{\"city\": \"(Paris|Rome)\"\\}\\}\n</tool_call>\n" +
			"<tool_call>\n\\{\"name\": \"get_weather\", \"arguments\": \\{\"city\": \"(Paris|Rome)\"\\}\\}\n</tool_call>"},
		// Text before the calls stays the reply's content.
		{"hermes after text", toolcall.Hermes, "Let me check\\.\n<tool_call>\n\\{\"name\": \"get_weather\", \"arguments\": \\{\"city\": \"(Paris|Rome)\"\\}\\}\n</tool_call>\n" +
			"<tool_call>\n\\{\"name\": \"get_weather\", \"arguments\": \\{\"city\": \"(Paris|Rome)\"\\}\\}\n</tool_call>"},
		{"llama3_json", toolcall.Llama3JSON, "\\{\"name\": \"get_weather\", \"parameters\": \\{\"city\": \"(Paris|Rome)\"\\}\\}; " +
			"\\{\"name\": \"get_weather\", \"parameters\": \\{\"city\": \"(Paris|Rome)\"\\}\\}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t), tools: c.syntax})
			cl := s.openaiClient()
			ctx := context.Background()
			tools := []openai.ChatCompletionToolUnionParam{
				openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather", Description: openai.String("The weather in a city now."),
					Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}),
			}
			params := func(parallel bool, maxTokens int64) openai.ChatCompletionNewParams {
				return openai.ChatCompletionNewParams{Model: "specd-target", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("How warm are Paris and Rome?")},
					Tools: tools, ParallelToolCalls: openai.Bool(parallel), MaxCompletionTokens: openai.Int(maxTokens), Temperature: openai.Float(0)}
			}
			regex := option.WithJSONSet("guided_regex", c.regex)
			both, err := cl.Chat.Completions.New(ctx, params(true, 200), regex)
			if err != nil {
				t.Fatal(err)
			}
			if calls := both.Choices[0].Message.ToolCalls; len(calls) != 2 || both.Choices[0].FinishReason != "tool_calls" {
				t.Fatalf("parallel: finish %q, %s; want two calls", both.Choices[0].FinishReason, both.Choices[0].Message.RawJSON())
			}
			first := both.Choices[0].Message.ToolCalls[0].Function

			// check asks with parallel_tool_calls false and max_tokens, streamed and not,
			// for the first call alone, after want completion tokens (0: fewer than both's).
			check := func(t *testing.T, maxTokens, want int64) int64 {
				t.Helper()
				one, err := cl.Chat.Completions.New(ctx, params(false, maxTokens), regex)
				if err != nil {
					t.Fatal(err)
				}
				ch := one.Choices[0]
				if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != first.Name ||
					ch.Message.ToolCalls[0].Function.Arguments != first.Arguments || ch.Message.Content != both.Choices[0].Message.Content {
					t.Errorf("max_tokens %d: finish %q, %s; want tool_calls and the one call %s(%s)", maxTokens, ch.FinishReason, ch.Message.RawJSON(), first.Name, first.Arguments)
				}
				n := one.Usage.CompletionTokens
				if n >= both.Usage.CompletionTokens || (want > 0 && n != want) {
					t.Errorf("max_tokens %d: %d completion tokens; want fewer than the %d of both calls (and %d)", maxTokens, n, both.Usage.CompletionTokens, want)
				}
				p := params(false, maxTokens)
				p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				st := cl.Chat.Completions.NewStreaming(ctx, p, regex)
				var acc openai.ChatCompletionAccumulator
				for st.Next() {
					acc.AddChunk(st.Current())
				}
				if err := st.Err(); err != nil {
					t.Fatalf("max_tokens %d, streamed: %v", maxTokens, err)
				}
				sc := acc.Choices[0]
				if sc.FinishReason != "tool_calls" || len(sc.Message.ToolCalls) != 1 || sc.Message.ToolCalls[0].Function.Arguments != first.Arguments ||
					sc.Message.Content != both.Choices[0].Message.Content {
					t.Errorf("max_tokens %d, streamed: finish %q, calls %+v; want tool_calls and the one call %s", maxTokens, sc.FinishReason, sc.Message.ToolCalls, first.Arguments)
				}
				if acc.Usage.CompletionTokens != n {
					t.Errorf("max_tokens %d, streamed: %d completion tokens, unstreamed %d", maxTokens, acc.Usage.CompletionTokens, n)
				}
				return n
			}
			n := check(t, 200, 0)
			// A max_tokens between the two calls' ends: the parallel reply is cut in its
			// second call (no calls at all), the single one is whole.
			cut := n + (both.Usage.CompletionTokens-n)/2
			cutBoth, err := cl.Chat.Completions.New(ctx, params(true, cut), regex)
			if err != nil {
				t.Fatal(err)
			}
			if ch := cutBoth.Choices[0]; ch.FinishReason != "length" {
				t.Fatalf("parallel, max_tokens %d: finish %q; want length (the second call cut)", cut, ch.FinishReason)
			}
			check(t, cut, n)
		})
	}
}
