package serve_test

import (
	"context"
	"testing"

	"github.com/openai/openai-go/v3"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TestOpenAIChoices: n choices, streamed and not, from the official client: choice i
// with seed s is the gRPC API's output with seed s + i (so the choices differ and each
// can be reproduced), the usage counts every choice's tokens, and with temperature 0
// every choice is the same greedy text.
func TestOpenAIChoices(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t)})
	c := s.openaiClient()
	ctx := context.Background()
	const prompt, n, seed = "Once upon a time there was a", 20, 7

	want := make([]string, 3)
	tokens := int64(0)
	for i := range want {
		res, err := s.client.Complete(ctx, request(prompt, n, 0.9, seed+uint64(i), 0))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = res.GetText()
		tokens += int64(res.GetStats().GetCompletionTokens())
	}
	if want[0] == want[1] && want[1] == want[2] {
		t.Fatal("three seeds gave one text; the test would prove nothing")
	}
	p := completionParams(prompt, n, 0.9)
	p.Seed, p.N = openai.Int(seed), openai.Int(3)
	resp, err := c.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 3 {
		t.Fatalf("%d choices, want 3", len(resp.Choices))
	}
	for i, ch := range resp.Choices {
		if ch.Index != int64(i) || ch.Text != want[i] || ch.FinishReason != "length" {
			t.Errorf("choice %d: index %d, %q (%s), want %q with seed %d", i, ch.Index, ch.Text, ch.FinishReason, want[i], seed+i)
		}
	}
	if resp.Usage.CompletionTokens != tokens || resp.Usage.PromptTokens == 0 {
		t.Errorf("usage %s: want %d completion tokens and the prompt's", resp.Usage.RawJSON(), tokens)
	}

	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := c.Completions.NewStreaming(ctx, p)
	got := make([]string, 3)
	finishes := 0
	var usage openai.CompletionUsage
	for st.Next() {
		cur := st.Current()
		if len(cur.Choices) == 0 {
			usage = cur.Usage
		}
		for _, ch := range cur.Choices {
			got[ch.Index] += ch.Text
			if ch.FinishReason != "" {
				finishes++
			}
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("streamed choice %d: %q, want %q", i, got[i], want[i])
		}
	}
	if finishes != 3 || usage.CompletionTokens != tokens {
		t.Errorf("stream: %d finish reasons, usage %s; want 3 and %d completion tokens", finishes, usage.RawJSON(), tokens)
	}

	// Chat, greedy: every choice the same.
	cwant, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Model: "specd-target", MaxTokens: 16,
		Messages: []*specdv1.ChatMessage{{Role: "user", Content: "Once upon a time"}}})
	if err != nil {
		t.Fatal(err)
	}
	cp := chatParams(openai.UserMessage("Once upon a time"))
	cp.N = openai.Int(2)
	cresp, err := c.Chat.Completions.New(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	if len(cresp.Choices) != 2 {
		t.Fatalf("chat: %d choices, want 2", len(cresp.Choices))
	}
	for i, ch := range cresp.Choices {
		if ch.Index != int64(i) || ch.Message.Content != cwant.GetText() {
			t.Errorf("chat choice %d: index %d, %q, want the greedy %q", i, ch.Index, ch.Message.Content, cwant.GetText())
		}
	}
	cst := c.Chat.Completions.NewStreaming(ctx, cp)
	roles := 0
	texts := make([]string, 2)
	for cst.Next() {
		for _, ch := range cst.Current().Choices {
			texts[ch.Index] += ch.Delta.Content
			if ch.Delta.Role != "" {
				roles++
			}
		}
	}
	if err := cst.Err(); err != nil {
		t.Fatal(err)
	}
	if roles != 2 || texts[0] != cwant.GetText() || texts[1] != cwant.GetText() {
		t.Errorf("streamed chat: %d role deltas, texts %q; want one role per choice and %q twice", roles, texts, cwant.GetText())
	}
}
