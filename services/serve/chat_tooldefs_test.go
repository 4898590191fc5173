package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/toolcall"
)

// toolsCase is one rendering of chat/testdata/tools_cases.jsonl (see tools_render.py
// there): a request's tools and messages, and the text Jinja2 renders them to as vLLM
// passes them.
type toolsCase struct {
	Template     string            `json:"template"`
	Conversation string            `json:"conversation"`
	Messages     []json.RawMessage `json:"messages"`
	Tools        []struct {
		Name, Description, Parameters string
	} `json:"tools"`
	Text string `json:"text"`
}

// TestChatTools: a chat request's tools reach the verifier's chat template, through
// the gRPC API and through the OpenAI front door (with --tool-call-parser hermes)
// alike: the prompt the verifier renders and tokenizes is the text Jinja2 renders from
// the same tools and messages, with Qwen2.5-Instruct's template (tools in the system
// turn) and one in Llama 3.1's style. The front door's answer is the reply as
// toolcall finds it in the gRPC API's text (the shared models are random-weight: their
// replies are no calls, so the answer must be the text itself, finish_reason as
// generated); the calls themselves are answered in openaihttp's tests. A tool the
// router finds wrong is INVALID_ARGUMENT naming its field.
func TestChatTools(t *testing.T) {
	byTemplate := casesByTemplate(t, "tools_cases.jsonl", func(c toolsCase) string { return c.Template })
	sources := map[string]string{
		"qwen2.5": filepath.Join(testmodels.VocabDir(t), "chat", "qwen2.5-chat-template.jinja"),
		"llama31": filepath.Join("..", "..", "chat", "testdata", "tool_templates", "llama31.jinja"),
	}
	if len(byTemplate) != len(sources) {
		t.Fatalf("cases for %d templates, want %d", len(byTemplate), len(sources))
	}
	for name, path := range sources {
		t.Run(name, func(t *testing.T) {
			s := startStackWith(t, stackOptions{http: true, chat: parseTemplate(t, path), tools: toolcall.Hermes})
			ctx := context.Background()
			for _, c := range byTemplate[name] {
				what := c.Conversation
				var msgs []*specdv1.ChatMessage
				for _, raw := range c.Messages {
					var m chat.Message
					if err := json.Unmarshal(raw, &m); err != nil {
						t.Fatal(err)
					}
					pm := &specdv1.ChatMessage{Role: m.Role, Content: m.Content, Name: m.Name, ToolCallId: m.ToolCallID}
					for _, tc := range m.ToolCalls {
						pm.ToolCalls = append(pm.ToolCalls, &specdv1.ToolCall{Id: tc.ID, Type: tc.Type,
							Function: &specdv1.FunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}})
					}
					msgs = append(msgs, pm)
				}
				var tools []*specdv1.Tool
				var wire []any // as OpenAI's clients send them
				for _, d := range c.Tools {
					tools = append(tools, &specdv1.Tool{Type: "function", Function: &specdv1.FunctionDefinition{Name: d.Name, Description: d.Description, Parameters: d.Parameters}})
					fn := map[string]any{"name": d.Name}
					if d.Description != "" {
						fn["description"] = d.Description
					}
					if d.Parameters != "" {
						fn["parameters"] = json.RawMessage(d.Parameters)
					}
					wire = append(wire, map[string]any{"type": "function", "function": fn})
				}
				res, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Messages: msgs, Tools: tools, MaxTokens: 8})
				want := s.target.Tok.ChatPrompt(c.Text)
				if len(want) >= s.target.Context {
					// Longer than the shared model's context: the refusal counts the
					// tokens the verifier rendered.
					if msg := fmt.Sprintf("%d tokens leave no room", len(want)); status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), msg) {
						t.Errorf("%s: Complete = %v, want INVALID_ARGUMENT saying %q", what, err, msg)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if !slices.Equal(res.GetPromptIds(), want) {
					t.Errorf("%s: the verifier rendered %d prompt tokens %v, want those of %q: %v", what, len(res.GetPromptIds()), res.GetPromptIds(), c.Text, want)
				}
				body, _ := json.Marshal(map[string]any{"model": "specd-target", "messages": c.Messages, "tools": wire, "max_tokens": 8, "temperature": 0})
				hres, err := http.Post(s.http+"/chat/completions", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				var out struct {
					Choices []struct {
						Message struct {
							Content   *string           `json:"content"`
							ToolCalls []json.RawMessage `json:"tool_calls"`
						} `json:"message"`
						FinishReason string `json:"finish_reason"`
					} `json:"choices"`
					Usage struct {
						PromptTokens int `json:"prompt_tokens"`
					} `json:"usage"`
				}
				err = json.NewDecoder(hres.Body).Decode(&out)
				hres.Body.Close()
				if err != nil || hres.StatusCode != http.StatusOK || len(out.Choices) != 1 {
					t.Fatalf("%s: front door: %s, %v", what, hres.Status, err)
				}
				if out.Usage.PromptTokens != len(want) {
					t.Errorf("%s: front door: %d prompt tokens, want %d", what, out.Usage.PromptTokens, len(want))
				}
				parsed := toolcall.Hermes.Parse(res.GetText())
				finish := map[bool]string{true: "length", false: "stop"}[res.GetFinishReason() == specdv1.FinishReason_FINISH_REASON_LENGTH]
				ch := out.Choices[0]
				switch {
				case len(parsed.Calls) != len(ch.Message.ToolCalls):
					t.Errorf("%s: front door: %d tool calls, want the %d of %q", what, len(ch.Message.ToolCalls), len(parsed.Calls), res.GetText())
				case len(parsed.Calls) == 0 && (ch.Message.Content == nil || *ch.Message.Content != res.GetText() || ch.FinishReason != finish):
					t.Errorf("%s: front door: %v, finish %s; want the gRPC API's %q, finish %s", what, ch.Message.Content, ch.FinishReason, res.GetText(), finish)
				}
			}
			// A second tool of the same name: refused at the edge, naming it.
			_, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Messages: []*specdv1.ChatMessage{{Role: "user", Content: "x"}}, Tools: []*specdv1.Tool{
				{Function: &specdv1.FunctionDefinition{Name: "f"}}, {Function: &specdv1.FunctionDefinition{Name: "f"}}}})
			if status.Code(err) != codes.InvalidArgument || !bytes.Contains([]byte(status.Convert(err).Message()), []byte("tools[1].function.name")) {
				t.Errorf("duplicate tool names: %v, want INVALID_ARGUMENT naming tools[1].function.name", err)
			}
		})
	}
}
