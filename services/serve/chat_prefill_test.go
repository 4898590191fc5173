package serve_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/chat"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
)

// qwen3Template is the chat package's Qwen3-style test template: contents trimmed,
// enable_thinking false closing an empty think block, a reply's think block dropped.
func qwen3Template(t *testing.T) (*chat.Template, string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "chat", "testdata", "think", "qwen3.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.Parse(string(src))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl, string(src)
}

// TestChatPrefill: continue_final_message and chat_template_kwargs through the gRPC
// API, the OpenAI API and Ollama's, with the real models: the verifier's prompt is the
// rendering the chat package makes of them (cut after the prefill; with the template's
// variable), the output the plain greedy continuation of it, and the reply the
// continuation alone. What cannot be honoured is INVALID_ARGUMENT (400) naming the
// field.
func TestChatPrefill(t *testing.T) {
	tmpl, _ := qwen3Template(t)
	s := startStackWith(t, stackOptions{http: true, chat: tmpl})
	ctx := context.Background()
	const n = 16 // chatParams' max_completion_tokens
	user, prefill := "Tell me a story about a dragon.", "Once upon a time, there was a"
	msgs := []chat.Message{{Role: "user", Content: user}, {Role: "assistant", Content: prefill}}
	ids := func(m []chat.Message, o chat.Options) []int32 {
		t.Helper()
		o.BOS, o.EOS = "<s>", "</s>"
		text, err := tmpl.Render(ctx, m, o)
		if err != nil {
			t.Fatal(err)
		}
		return append([]int32{s.target.Tok.BOS()}, s.target.Tok.EncodeSpecial(text, false)...)
	}
	contIDs := ids(msgs, chat.Options{ContinueFinal: true})
	if text := s.target.Tok.Decode(contIDs); !strings.HasSuffix(text, prefill) {
		t.Fatalf("the continued prompt decodes to %q, want it to end with the prefill", text)
	}
	contWant := s.plainIDs(t, contIDs, n, sample.Params{})
	vars, err := chat.ParseVars(`{"enable_thinking": false}`)
	if err != nil {
		t.Fatal(err)
	}
	thinkIDs, plainIDs := ids(msgs[:1], chat.Options{AddGenerationPrompt: true, Vars: vars}), ids(msgs[:1], chat.Options{AddGenerationPrompt: true})
	if slices.Equal(thinkIDs, plainIDs) {
		t.Fatal("enable_thinking false renders as without it: the test could not tell")
	}
	zero := uint64(0)
	var want string // the continuation's text, as the gRPC API returns it
	grpcReq := func(m []chat.Message) *specdv1.GenerateRequest {
		return &specdv1.GenerateRequest{Model: "specd-target", Messages: toProto(m), MaxTokens: n, Sampling: &specdv1.SamplingParams{Seed: &zero}}
	}

	t.Run("grpc continue", func(t *testing.T) {
		req := grpcReq(msgs)
		req.ContinueFinalMessage = true
		resp, err := s.client.Complete(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.GetPromptIds(), contIDs) || !slices.Equal(resp.GetTokenIds(), contWant) {
			t.Errorf("Complete = prompt %v, tokens %v; want %v, %v", resp.GetPromptIds(), resp.GetTokenIds(), contIDs, contWant)
		}
		if want = resp.GetText(); strings.Contains(want, prefill) || want == "" {
			t.Errorf("Complete text = %q, want the continuation alone", want)
		}
	})
	t.Run("grpc chat_template_kwargs", func(t *testing.T) {
		req := grpcReq(msgs[:1])
		req.ChatTemplateKwargs = `{"enable_thinking": false}`
		resp, err := s.client.Complete(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.GetPromptIds(), thinkIDs) {
			t.Errorf("Complete prompt = %v, want %v", resp.GetPromptIds(), thinkIDs)
		}
	})
	t.Run("grpc refusals", func(t *testing.T) {
		yes := true
		for _, tc := range []struct {
			name  string
			edit  func(*specdv1.GenerateRequest)
			field string
		}{
			{"continue a user message", func(r *specdv1.GenerateRequest) { r.Messages = r.Messages[:1]; r.ContinueFinalMessage = true }, "continue_final_message"},
			{"continue with the generation prompt", func(r *specdv1.GenerateRequest) { r.ContinueFinalMessage, r.AddGenerationPrompt = true, &yes }, "continue_final_message"},
			{"continue into a format", func(r *specdv1.GenerateRequest) {
				r.ContinueFinalMessage = true
				r.ResponseFormat = &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT}
			}, "continue_final_message"},
			// The template drops a reply's think block: the content is not in the
			// rendering, and the verifier says so instead of answering anew.
			{"content the template rewrites", func(r *specdv1.GenerateRequest) {
				r.Messages[1].Content = "<think>hm</think>Once"
				r.ContinueFinalMessage = true
			}, "continue_final_message"},
			{"reserved variable", func(r *specdv1.GenerateRequest) { r.ChatTemplateKwargs = `{"add_generation_prompt": false}` }, "chat_template_kwargs"},
			{"variables nested too deep", func(r *specdv1.GenerateRequest) {
				r.ChatTemplateKwargs = `{"a": ` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`
			}, "chat_template_kwargs"},
		} {
			req := grpcReq(msgs)
			tc.edit(req)
			_, err := s.client.Complete(ctx, req)
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field+":") {
				t.Errorf("%s: %v, want INVALID_ARGUMENT naming %s", tc.name, err, tc.field)
			}
		}
	})

	c := s.openaiClient()
	oaMsgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage(user), openai.AssistantMessage(prefill)}
	t.Run("openai continue", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, chatParams(oaMsgs...), option.WithJSONSet("continue_final_message", true),
			option.WithJSONSet("add_generation_prompt", false))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != want {
			t.Errorf("reply = %q, want the continuation %q", got, want)
		}
		if resp.Usage.PromptTokens != int64(len(contIDs)) {
			t.Errorf("prompt tokens = %d, want %d", resp.Usage.PromptTokens, len(contIDs))
		}
	})
	t.Run("openai chat_template_kwargs", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, chatParams(openai.UserMessage(user)),
			option.WithJSONSet("chat_template_kwargs", map[string]any{"enable_thinking": false}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Usage.PromptTokens != int64(len(thinkIDs)) {
			t.Errorf("prompt tokens = %d, want %d (the rendering with enable_thinking false)", resp.Usage.PromptTokens, len(thinkIDs))
		}
	})
	t.Run("openai refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			msgs  []openai.ChatCompletionMessageParamUnion
			opts  []option.RequestOption
			param string
		}{
			{"continue with the generation prompt", oaMsgs, []option.RequestOption{option.WithJSONSet("continue_final_message", true),
				option.WithJSONSet("add_generation_prompt", true)}, "continue_final_message"},
			{"continue a user message", oaMsgs[:1], []option.RequestOption{option.WithJSONSet("continue_final_message", true)}, "continue_final_message"},
			{"reserved variable", oaMsgs[:1], []option.RequestOption{option.WithJSONSet("chat_template_kwargs", map[string]any{"tools": nil})}, "chat_template_kwargs"},
		} {
			_, err := c.Chat.Completions.New(ctx, chatParams(tc.msgs...), tc.opts...)
			var e *openai.Error
			if !errors.As(err, &e) || e.StatusCode != 400 || e.Param != tc.param {
				t.Errorf("%s: %v, want a 400 naming %s", tc.name, err, tc.param)
			}
		}
	})

	t.Run("ollama continues a trailing assistant message", func(t *testing.T) {
		body := fmt.Sprintf(`{"model":"specd-target","stream":false,"messages":[{"role":"user","content":%q},{"role":"assistant","content":%q}],
			"options":{"temperature":0,"num_predict":%d}}`, user, prefill, n)
		code, answers := ollamaPost(t, s, "/api/chat", body)
		if code != 200 || len(answers) != 1 {
			t.Fatalf("%d %+v", code, answers)
		}
		if got := answers[0].Message.Content; got != want || answers[0].PromptEvalCount != len(contIDs) {
			t.Errorf("reply = %q after %d prompt tokens, want %q after %d", got, answers[0].PromptEvalCount, want, len(contIDs))
		}
	})
}
