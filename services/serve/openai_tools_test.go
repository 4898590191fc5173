package serve_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/openai/openai-go/v3"
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
