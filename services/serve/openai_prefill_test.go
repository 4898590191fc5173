package serve_test

import (
	"context"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestOpenAIChatEcho: vLLM's echo on chat completions puts the final message's content
// before every choice's reply when that message is the assistant's — with
// continue_final_message, the prefill and its continuation, the whole message — streamed
// (a chunk of its own, ahead of the generation) and not; the usage and the
// log-probabilities stay the generation's. A final message from the user is not
// echoed.
func TestOpenAIChatEcho(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t)})
	c := s.openaiClient()
	ctx := context.Background()
	user, prefill := "Tell me a story about a dragon.", "Once upon a time, there was a"
	cont := []option.RequestOption{option.WithJSONSet("continue_final_message", true), option.WithJSONSet("add_generation_prompt", false)}
	params := func(msgs ...openai.ChatCompletionMessageParamUnion) openai.ChatCompletionNewParams {
		p := chatParams(msgs...)
		p.N, p.Seed, p.Temperature, p.Logprobs = openai.Int(2), openai.Int(5), openai.Float(0.8), openai.Bool(true)
		return p
	}
	prefilled := params(openai.UserMessage(user), openai.AssistantMessage(prefill))
	plain, err := c.Chat.Completions.New(ctx, prefilled, cont...)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		params openai.ChatCompletionNewParams
		opts   []option.RequestOption
		want   func(i int) string // choice i's content, from the unechoed reply's
	}{
		{"continued", prefilled, cont, func(i int) string { return prefill + plain.Choices[i].Message.Content }},
		{"user's last message", params(openai.UserMessage(user)), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := c.Chat.Completions.New(ctx, tc.params, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == nil {
				want = func(i int) string { return base.Choices[i].Message.Content }
			}
			echo := append(tc.opts[:len(tc.opts):len(tc.opts)], option.WithJSONSet("echo", true))
			got, err := c.Chat.Completions.New(ctx, tc.params, echo...)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Choices) != 2 {
				t.Fatalf("%d choices, want 2", len(got.Choices))
			}
			for i, ch := range got.Choices {
				if ch.Message.Content != want(i) {
					t.Errorf("choice %d = %q, want %q", i, ch.Message.Content, want(i))
				}
				if len(ch.Logprobs.Content) != len(base.Choices[i].Logprobs.Content) {
					t.Errorf("choice %d: %d log-probabilities, want the generation's %d", i, len(ch.Logprobs.Content), len(base.Choices[i].Logprobs.Content))
				}
			}
			if got.Usage.CompletionTokens != base.Usage.CompletionTokens || got.Usage.PromptTokens != base.Usage.PromptTokens {
				t.Errorf("usage %+v, want the unechoed %+v", got.Usage, base.Usage)
			}

			st := c.Chat.Completions.NewStreaming(ctx, tc.params, echo...)
			var acc openai.ChatCompletionAccumulator
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if acc.Choices[i].Message.Content != want(i) {
					t.Errorf("streamed choice %d = %q, want %q", i, acc.Choices[i].Message.Content, want(i))
				}
			}
		})
	}
}
