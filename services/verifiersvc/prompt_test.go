package verifiersvc_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// TestPromptIDsAsLlamaServer: a verifier turns text prompts and conversations into the
// ids llama.cpp b4748's llama-server gave for the same file (recorded in
// internal/testmodels/testdata): EOS last where the vocabulary sets add_eos_token and
// not for the shipped target, BOS as add_bos_token says, and a chat template's leading
// BOS text and trailing EOS text removed before they are added back as the vocabulary
// asks. Tokenize with add_bos gives a text prompt's ids too. Each variant runs on a real
// verifier on loopback.
func TestPromptIDsAsLlamaServer(t *testing.T) {
	ref := testmodels.LlamaServerPrompts(t)
	for _, v := range ref.Variants {
		t.Run(v.Name, func(t *testing.T) {
			checkLeaks(t)
			ctx, client, m := startChatVerifier(t, v.Path(t), verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}})
			wantEOS := v.AddEOS != nil && *v.AddEOS
			if m.Tok.AddEOS() != wantEOS {
				t.Fatalf("AddEOS() = %v, want %v", m.Tok.AddEOS(), wantEOS)
			}
			endsEOS := func(ids []int32) bool { return len(ids) > 0 && ids[len(ids)-1] == m.Tok.EOS() }
			for _, c := range v.Completions {
				if endsEOS(c.IDs) != wantEOS {
					t.Errorf("reference ids of %q: %v, ending in EOS %v, want %v", c.Prompt, c.IDs, !wantEOS, wantEOS)
				}
				_, last, _, err := chatRun(ctx, client, &specdv1.GenerateRequest{Prompt: c.Prompt, MaxTokens: 1})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(last, c.IDs) {
					t.Errorf("prompt %q: ids %v, want llama-server's %v", c.Prompt, last, c.IDs)
				}
				tok, err := client.Tokenize(ctx, &specdv1.TokenizeRequest{Text: c.Prompt, AddBos: true})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(tok.GetTokenIds(), c.IDs) {
					t.Errorf("Tokenize(%q, add_bos) = %v, want %v", c.Prompt, tok.GetTokenIds(), c.IDs)
				}
				raw, err := client.Tokenize(ctx, &specdv1.TokenizeRequest{Text: c.Prompt})
				if err != nil {
					t.Fatal(err)
				}
				if want := m.Tok.Encode(c.Prompt, false); !slices.Equal(raw.GetTokenIds(), want) {
					t.Errorf("Tokenize(%q) = %v, want %v (no BOS, no EOS)", c.Prompt, raw.GetTokenIds(), want)
				}
			}
			for _, c := range v.Chats {
				if endsEOS(c.IDs) != wantEOS {
					t.Errorf("reference ids of %v: %v, ending in EOS %v, want %v", c.Messages, c.IDs, !wantEOS, wantEOS)
				}
				var msgs []*specdv1.ChatMessage
				for _, msg := range c.Messages {
					msgs = append(msgs, &specdv1.ChatMessage{Role: msg.Role, Content: msg.Content})
				}
				first, last, _, err := chatRun(ctx, client, &specdv1.GenerateRequest{Messages: msgs, MaxTokens: 1})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(first, c.IDs) || !slices.Equal(last, c.IDs) {
					t.Errorf("messages %s: ids %v (first message %v), want llama-server's %v", fmt.Sprint(c.Messages), last, first, c.IDs)
				}
			}
		})
	}
}
