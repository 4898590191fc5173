package serve_test

import (
	"context"
	"slices"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
)

// TestOpenAIPromptEOS: through the router, the gRPC API and the OpenAI completions and
// chat paths use the prompt ids llama.cpp b4748's llama-server gives (recorded in
// internal/testmodels/testdata): EOS last for a target whose vocabulary sets
// add_eos_token, none for the shipped target, with or without a chat template that
// ends in eos_token. The draft (the shared specd-draft-q8_0, add_eos_token unset) still
// pairs with the add_eos target — the tokenizer hash leaves AddEOS out, as the draft
// never encodes text — and speculates on those ids; the greedy output is plain decoding
// of them (lossless, Leviathan et al. 2023 §2.3).
func TestOpenAIPromptEOS(t *testing.T) {
	ref := testmodels.LlamaServerPrompts(t)
	for _, name := range []string{"shipped", "template", "add_eos"} {
		t.Run(name, func(t *testing.T) {
			v := ref.Variant(t, name)
			s := startStackWith(t, stackOptions{http: true, target: v.Path(t)})
			if got, want := s.target.Tok.AddEOS(), name == "add_eos"; got != want {
				t.Fatalf("target AddEOS() = %v, want %v", got, want)
			}
			models, err := s.client.ListModels(context.Background(), &specdv1.ListModelsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range models.GetModels() {
				if m.GetTokenizerHash() != s.target.Tok.Hash() {
					t.Errorf("%s %s: tokenizer hash %.12s, the target's %.12s: the pair would be refused", m.GetRole(), m.GetName(), m.GetTokenizerHash(), s.target.Tok.Hash())
				}
			}
			c := s.openaiClient()
			ctx := context.Background()
			const n = 16
			checkEnd := func(ids []int32) {
				if got, want := ids[len(ids)-1] == s.target.Tok.EOS(), name == "add_eos"; got != want {
					t.Fatalf("reference %v ends in EOS: %v, want %v", ids, got, want)
				}
			}
			for _, p := range v.Completions {
				checkEnd(p.IDs)
				want := s.plainIDs(t, p.IDs, n, sample.Params{})
				g, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: p.Prompt, MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Gamma: 4}})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(g.GetPromptIds(), p.IDs) || !slices.Equal(g.GetTokenIds(), want) {
					t.Errorf("Complete(%q): prompt %v, output %v; want llama-server's prompt %v and plain greedy %v", p.Prompt, g.GetPromptIds(), g.GetTokenIds(), p.IDs, want)
				}
				// A fixed γ always gets its draft (an adaptive request only while the
				// verifier measures speculation faster, which a loaded CI machine may not).
				if g.GetStats().GetDraft().GetModel() == "" {
					t.Errorf("Complete(%q) at γ 4: no draft paired with the verifier (stats %v)", p.Prompt, g.GetStats())
				}
				resp, err := c.Completions.New(ctx, completionParams(p.Prompt, n, 0))
				if err != nil {
					t.Fatal(err)
				}
				if resp.Choices[0].Text != g.GetText() || resp.Usage.PromptTokens != int64(len(p.IDs)) {
					t.Errorf("/v1/completions %q: %q with %d prompt tokens, want %q with %d", p.Prompt, resp.Choices[0].Text, resp.Usage.PromptTokens, g.GetText(), len(p.IDs))
				}
			}
			for _, p := range v.Chats {
				checkEnd(p.IDs)
				var msgs []*specdv1.ChatMessage
				var params []openai.ChatCompletionMessageParamUnion
				for _, m := range p.Messages {
					msgs = append(msgs, &specdv1.ChatMessage{Role: m.Role, Content: m.Content})
					if m.Role == "user" {
						params = append(params, openai.UserMessage(m.Content))
					} else {
						params = append(params, openai.AssistantMessage(m.Content))
					}
				}
				want := s.plainIDs(t, p.IDs, n, sample.Params{})
				g, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Messages: msgs, MaxTokens: n})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(g.GetPromptIds(), p.IDs) || !slices.Equal(g.GetTokenIds(), want) {
					t.Errorf("Complete(%v): prompt %v, output %v; want llama-server's prompt %v and plain greedy %v", p.Messages, g.GetPromptIds(), g.GetTokenIds(), p.IDs, want)
				}
				resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "specd-target", Messages: params, MaxCompletionTokens: openai.Int(n), Temperature: openai.Float(0)})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Choices[0].Message.Content != g.GetText() || resp.Usage.PromptTokens != int64(len(p.IDs)) {
					t.Errorf("/v1/chat/completions %v: %q with %d prompt tokens, want %q with %d", p.Messages, resp.Choices[0].Message.Content, resp.Usage.PromptTokens, g.GetText(), len(p.IDs))
				}
			}
		})
	}
}
