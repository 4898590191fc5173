package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// toolCase is one rendering of chat/testdata/tool_cases.jsonl (see tool_render.py
// there): OpenAI messages with tool calls and results, and the text Jinja2 renders
// them to as vLLM does, or the template's refusal.
type toolCase struct {
	Template            string            `json:"template"`
	Conversation        string            `json:"conversation"`
	Messages            []json.RawMessage `json:"messages"`
	AddGenerationPrompt bool              `json:"add_generation_prompt"`
	Text                *string           `json:"text"`
	Error               *string           `json:"error"`
}

// TestChatToolMessages: a conversation with an assistant's tool calls and the tool
// results answering them reaches the verifier's chat template whole — tool_calls with
// their ids, names and arguments, a result's tool_call_id and name — through the gRPC
// API and through the OpenAI front door alike: the prompt the verifier renders and
// tokenizes is the text Jinja2 renders from the same messages, with Qwen2.5-Instruct's
// template and with one in Mistral's and Llama 3.1's style; a result naming no call is
// the template's refusal, a call whose arguments are not JSON a 400 naming messages.
func TestChatToolMessages(t *testing.T) {
	byTemplate := casesByTemplate(t, "tool_cases.jsonl", func(c toolCase) string { return c.Template })
	sources := map[string]string{
		"qwen2.5": filepath.Join(testmodels.VocabDir(t), "chat", "qwen2.5-chat-template.jinja"),
		"pairs":   filepath.Join("..", "..", "chat", "testdata", "tool_templates", "pairs.jinja"),
	}
	if len(byTemplate) != len(sources) {
		t.Fatalf("cases for %d templates, want %d", len(byTemplate), len(sources))
	}
	for name, path := range sources {
		t.Run(name, func(t *testing.T) {
			s := startStackWith(t, stackOptions{http: true, chat: parseTemplate(t, path)})
			ctx := context.Background()
			for _, c := range byTemplate[name] {
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
				req := &specdv1.GenerateRequest{Messages: msgs, AddGenerationPrompt: &c.AddGenerationPrompt, MaxTokens: 4}
				res, err := s.client.Complete(ctx, req)
				what := c.Conversation
				if c.Error != nil {
					if status.Code(err) != codes.InvalidArgument {
						t.Errorf("%s: Complete = %v, want INVALID_ARGUMENT (the template raises %q)", what, err, *c.Error)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if want := s.target.Tok.ChatPrompt(*c.Text); !slices.Equal(res.GetPromptIds(), want) {
					t.Errorf("%s: the verifier rendered %d prompt tokens %v, want those of %q: %v", what, len(res.GetPromptIds()), res.GetPromptIds(), *c.Text, want)
				}
				// The front door, from the same messages as OpenAI's clients send them.
				body, _ := json.Marshal(map[string]any{"model": "specd-target", "messages": c.Messages, "max_tokens": 4, "temperature": 0,
					"add_generation_prompt": c.AddGenerationPrompt})
				hres, err := http.Post(s.http+"/chat/completions", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				var out struct {
					Choices []struct {
						Message struct{ Content string } `json:"message"`
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
				if out.Usage.PromptTokens != len(res.GetPromptIds()) || out.Choices[0].Message.Content != res.GetText() {
					t.Errorf("%s: front door: %d prompt tokens, %q; want the gRPC API's %d, %q", what, out.Usage.PromptTokens, out.Choices[0].Message.Content,
						len(res.GetPromptIds()), res.GetText())
				}
			}
			// Arguments that are not JSON: refused at the edge, naming messages.
			body := `{"model":"specd-target","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{city: Paris}"}}]}]}`
			hres, err := http.Post(s.http+"/chat/completions", "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			var e struct {
				Error struct{ Param string } `json:"error"`
			}
			json.NewDecoder(hres.Body).Decode(&e)
			hres.Body.Close()
			if hres.StatusCode != http.StatusBadRequest || e.Error.Param != "messages" {
				t.Errorf("arguments not JSON: %s, param %q; want 400 naming messages", hres.Status, e.Error.Param)
			}
		})
	}
}

// casesByTemplate reads chat/testdata's JSON lines file of cases, grouped by the
// template each names.
func casesByTemplate[C any](t *testing.T, file string, template func(C) string) map[string][]C {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "chat", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byTemplate := map[string][]C{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c C
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		byTemplate[template(c)] = append(byTemplate[template(c)], c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return byTemplate
}

// parseTemplate reads and parses the chat template at path.
func parseTemplate(t *testing.T, path string) *chat.Template {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.Parse(string(src))
	if err != nil {
		t.Fatalf("Parse(%s) = %v", path, err)
	}
	return tmpl
}
