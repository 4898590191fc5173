package serve_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/specd-dev/specd/chat"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// qwenChat parses Qwen2.5's real chat template, which the verifier is given as its
// --chat-template (the specd models carry none).
func qwenChat(t *testing.T) *chat.Template {
	_, src := qwenTemplate(t)
	tmpl, err := chat.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func chatParams(msgs ...openai.ChatCompletionMessageParamUnion) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: "specd-target", Messages: msgs, MaxCompletionTokens: openai.Int(16), Temperature: openai.Float(0)}
}

// TestOpenAIChatCompletions: the official client's chat completions, streamed and
// not, give what the gRPC API gives for the same messages; content as text parts is
// the same conversation as content as a string.
func TestOpenAIChatCompletions(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t)})
	c := s.openaiClient()
	ctx := context.Background()

	want, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Model: "specd-target", MaxTokens: 16, Messages: []*specdv1.ChatMessage{
		{Role: "system", Content: "You tell short stories."}, {Role: "user", Content: "Once upon a time"}}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("not streamed", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, chatParams(openai.SystemMessage("You tell short stories."), openai.UserMessage("Once upon a time")))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 {
			t.Fatalf("%d choices, want 1", len(resp.Choices))
		}
		ch := resp.Choices[0]
		if ch.Message.Content != want.GetText() || ch.Message.Role != "assistant" || ch.FinishReason != "length" {
			t.Errorf("choice = %q %s %s, want %q from the assistant, finish length", ch.Message.Content, ch.Message.Role, ch.FinishReason, want.GetText())
		}
		if resp.Usage.PromptTokens != int64(want.GetStats().GetPromptTokens()) || resp.Usage.CompletionTokens != 16 {
			t.Errorf("usage = %s, want %d prompt and 16 completion tokens", resp.Usage.RawJSON(), want.GetStats().GetPromptTokens())
		}
		if resp.Object != "chat.completion" || !strings.HasPrefix(resp.ID, "chatcmpl-") {
			t.Errorf("object %q id %q", resp.Object, resp.ID)
		}
	})

	t.Run("streamed with usage", func(t *testing.T) {
		p := chatParams(openai.SystemMessage("You tell short stories."), openai.UserMessage("Once upon a time"))
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		st := c.Chat.Completions.NewStreaming(ctx, p)
		var text, role string
		var finishes []string
		var last openai.ChatCompletionChunk
		for st.Next() {
			last = st.Current()
			for _, ch := range last.Choices {
				if ch.Delta.Role != "" {
					if role != "" || text != "" {
						t.Errorf("role %q sent after the first chunk", ch.Delta.Role)
					}
					role = ch.Delta.Role
				}
				text += ch.Delta.Content
				if ch.FinishReason != "" {
					finishes = append(finishes, string(ch.FinishReason))
				}
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if text != want.GetText() || role != "assistant" || strings.Join(finishes, ",") != "length" {
			t.Errorf("stream: %q from %q, finishes %v; want %q from the assistant, one length", text, role, finishes, want.GetText())
		}
		if len(last.Choices) != 0 || last.Usage.CompletionTokens != 16 {
			t.Errorf("last chunk: %d choices, usage %s; want none and 16 completion tokens", len(last.Choices), last.Usage.RawJSON())
		}
	})

	t.Run("text parts", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, chatParams(
			openai.SystemMessage([]openai.ChatCompletionContentPartTextParam{{Text: "You tell short stories."}}),
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{openai.TextContentPart("Once upon a time")})))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Message.Content != want.GetText() {
			t.Errorf("content as parts: %q, want %q", resp.Choices[0].Message.Content, want.GetText())
		}
	})
}

// TestOpenAIChatWithoutTemplate: a model with no chat template answers a chat request
// with a clear 400, not a server error.
func TestOpenAIChatWithoutTemplate(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	c := s.openaiClient()
	_, err := c.Chat.Completions.New(context.Background(), chatParams(openai.UserMessage("Hello")))
	var e *openai.Error
	if !errors.As(err, &e) || e.StatusCode != 400 || e.Type != "invalid_request_error" || !strings.Contains(e.Message, "chat_template") {
		t.Errorf("chat without a template: %v, want a 400 invalid_request_error naming the missing chat_template", err)
	}
}

// TestOpenAIChatSchemaAndStop: openai-go's json_schema response format (strict, as
// its users send it) holds the real model's chat reply to the schema, finished with
// stop; and stop, as a string or an array, ends the greedy reply where the string
// begins, with finish_reason stop.
func TestOpenAIChatSchemaAndStop(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t)})
	c := s.openaiClient()
	ctx := context.Background()

	t.Run("json_schema strict", func(t *testing.T) {
		p := chatParams(openai.UserMessage("Describe a person."))
		p.MaxCompletionTokens = openai.Int(80)
		p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Strict: openai.Bool(true), Schema: map[string]any{
				"type": "object", "additionalProperties": false, "required": []string{"name", "age"},
				"properties": map[string]any{"name": map[string]any{"type": "string"}, "age": map[string]any{"type": "integer"}}}}}}
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		ch := resp.Choices[0]
		var v struct {
			Name *string
			Age  *int64
		}
		dec := json.NewDecoder(strings.NewReader(ch.Message.Content))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil || v.Name == nil || v.Age == nil || ch.FinishReason != "stop" {
			t.Errorf("reply %q (%v), finish %q; want an object of a name and an integer age, finish stop", ch.Message.Content, err, ch.FinishReason)
		}
	})

	t.Run("stop", func(t *testing.T) {
		whole, err := c.Chat.Completions.New(ctx, chatParams(openai.UserMessage("Once upon a time")))
		if err != nil {
			t.Fatal(err)
		}
		text := whole.Choices[0].Message.Content
		words := strings.Fields(text)
		if len(words) < 3 {
			t.Fatalf("greedy reply %q: want three words at least", text)
		}
		stop := words[2]
		want := text[:strings.Index(text, stop)]
		for _, u := range []openai.ChatCompletionNewParamsStopUnion{{OfString: openai.String(stop)}, {OfStringArray: []string{"never in this text", stop}}} {
			p := chatParams(openai.UserMessage("Once upon a time"))
			p.Stop = u
			resp, err := c.Chat.Completions.New(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Choices[0]; got.Message.Content != want || got.FinishReason != "stop" {
				t.Errorf("stop %q: %q, finish %q; want %q, finish stop", stop, got.Message.Content, got.FinishReason, want)
			}
		}
	})
}
