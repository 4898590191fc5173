package serve_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/specd-dev/specd/chat"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
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

// TestChatPrefillBoundary: a prefill is tokenized as its text ends — a word cut in
// two, a character of several bytes last — and the model writes on from those tokens,
// as vLLM does (no token healing: the tokens at the boundary are not re-tokenized with
// the continuation); the continuation's text is what its tokens add after the
// prefill's. Stop strings are looked for in the continuation alone, so one that
// straddles the boundary ends nothing; max_tokens counts the continuation alone. The
// same continuations come streamed and not, with n 2 and log-probabilities, and the
// prefix cache serves a prefill that extends an earlier request.
func TestChatPrefillBoundary(t *testing.T) {
	tmpl := qwenChat(t)
	s := startStackWith(t, stackOptions{http: true, chat: tmpl})
	ctx := context.Background()
	const n = 12
	user := "Tell me a story about a dragon."
	zero := uint64(0)
	prefills := []string{"Once upon a ti", "The dragon said: 日本", "Once upon a time, in a café", "Once upon a time, "}
	if testing.Short() {
		prefills = prefills[:2] // a word cut in two, a multi-byte character last
	}
	for _, prefill := range prefills {
		t.Run(prefill, func(t *testing.T) {
			msgs := []chat.Message{{Role: "user", Content: user}, {Role: "assistant", Content: prefill}}
			text, err := tmpl.Render(ctx, msgs, chat.Options{ContinueFinal: true, BOS: "<s>", EOS: "</s>"})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(text, prefill) {
				t.Fatalf("the rendering ends %q, want the prefill %q", text[max(0, len(text)-40):], prefill)
			}
			prompt := append([]int32{s.target.Tok.BOS()}, s.target.Tok.EncodeSpecial(text, false)...)
			wantIDs := s.plainIDs(t, prompt, n, sample.Params{})
			dec := s.target.Tok.NewDecoder(prompt)
			var want strings.Builder
			for _, id := range wantIDs {
				want.WriteString(dec.Next(id))
			}
			want.WriteString(dec.Flush())

			req := &specdv1.GenerateRequest{Model: "specd-target", Messages: toProto(msgs), ContinueFinalMessage: true, MaxTokens: n, Sampling: &specdv1.SamplingParams{Seed: &zero}}
			resp, err := s.client.Complete(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(resp.GetPromptIds(), prompt) || !slices.Equal(resp.GetTokenIds(), wantIDs) || resp.GetText() != want.String() {
				t.Fatalf("Complete = prompt %v, tokens %v, text %q; want %v, %v, %q", resp.GetPromptIds(), resp.GetTokenIds(), resp.GetText(), prompt, wantIDs, want.String())
			}
			if got := resp.GetStats().GetCompletionTokens(); got != n || resp.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_LENGTH {
				t.Errorf("%d completion tokens, finish %v; want %d, length", got, resp.GetFinishReason(), n)
			}

			// A stop string of the prefill's last character and the continuation's
			// first three bytes is in neither alone.
			last, _ := utf8.DecodeLastRuneInString(prefill)
			cont := want.String()
			if len(cont) >= 3 && utf8.ValidString(cont[:3]) {
				straddle := string(last) + cont[:3]
				if !strings.Contains(cont, straddle) {
					req.Stop = []string{straddle}
					got, err := s.client.Complete(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					if got.GetText() != cont || got.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_LENGTH {
						t.Errorf("stop %q across the boundary: %q (%v), want %q (length)", straddle, got.GetText(), got.GetFinishReason(), cont)
					}
					req.Stop = nil
				}
			}

			// The same prompt and answer extended: the cache holds them.
			longer := slices.Clone(msgs)
			longer[1].Content = prefill + cont
			req.Messages = toProto(longer)
			again, err := s.client.Complete(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if c := again.GetStats().GetCachedPromptTokens(); int(c) < len(prompt) {
				t.Errorf("the prefill extended by its continuation: %d prompt tokens cached, want at least the %d of the first request", c, len(prompt))
			}
		})
	}

	// Streamed and not, n 2, sampled, log-probabilities: the same continuations.
	c := s.openaiClient()
	p := chatParams(openai.UserMessage(user), openai.AssistantMessage("Once upon a time"))
	p.N, p.Seed, p.Temperature, p.Logprobs, p.TopLogprobs = openai.Int(2), openai.Int(9), openai.Float(0.9), openai.Bool(true), openai.Int(2)
	cont := option.WithJSONSet("continue_final_message", true)
	whole, err := c.Chat.Completions.New(ctx, p, cont)
	if err != nil {
		t.Fatal(err)
	}
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := c.Chat.Completions.NewStreaming(ctx, p, cont)
	var acc openai.ChatCompletionAccumulator
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	tokens := 0
	for i, ch := range whole.Choices {
		if got := acc.Choices[i].Message.Content; got != ch.Message.Content || got == "" {
			t.Errorf("choice %d streamed %q, unstreamed %q", i, got, ch.Message.Content)
		}
		if a, b := len(acc.Choices[i].Logprobs.Content), len(ch.Logprobs.Content); a != b {
			t.Errorf("choice %d: %d log-probabilities streamed, %d not", i, a, b)
		}
		tokens += len(ch.Logprobs.Content)
	}
	if whole.Usage.CompletionTokens != int64(tokens) || acc.Usage.CompletionTokens != whole.Usage.CompletionTokens || acc.Usage.PromptTokens != whole.Usage.PromptTokens {
		t.Errorf("usage: streamed %+v, unstreamed %+v, want %d completion tokens (the log-probabilities')", acc.Usage, whole.Usage, tokens)
	}
}
