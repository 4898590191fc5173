package verifiersvc_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// llama2Template is a Llama-2-style chat template that writes bos_token and eos_token,
// which the specd vocabulary has (<s> and </s>), and refuses roles out of turn.
const llama2Template = `{% for m in messages %}` +
	`{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}` +
	`{% if m.role == 'user' %}{{ bos_token + '[INST] ' + m.content + ' [/INST]' }}{% else %}{{ ' ' + m.content + ' ' + eos_token }}{% endif %}` +
	`{% endfor %}`

// startChatVerifier serves the Q8_0 target from path with cfg; it returns a client and
// the model, loaded apart, for reference tokenizations.
func startChatVerifier(t *testing.T, path string, cfg verifiersvc.Config) (context.Context, speculationv1.VerifierServiceClient, *model.Model) {
	t.Helper()
	ctx, addr := startService(t, path, 32<<20, func(ctx context.Context, w serve.Worker, lis net.Listener) error {
		return serve.Verifier(ctx, w, cfg, lis)
	})
	cc, err := services.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	m, err := model.Load(path, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return ctx, speculationv1.NewVerifierServiceClient(cc), m
}

// chatRun sends req to the verifier and returns the prompt ids of its first and last
// messages, the generated ids, and the error the stream ended with.
func chatRun(ctx context.Context, client speculationv1.VerifierServiceClient, req *specdv1.GenerateRequest) (first, last, ids []int32, err error) {
	st, err := client.Generate(ctx, &speculationv1.GenerateRequest{Request: req})
	if err != nil {
		return nil, nil, nil, err
	}
	for n := 0; ; n++ {
		msg, err := st.Recv()
		if err != nil {
			return first, last, ids, err
		}
		if n == 0 {
			first = msg.GetPromptIds()
		}
		ids = append(ids, msg.GetChunk().GetTokenIds()...)
		if msg.GetFinal() != nil {
			return first, msg.GetPromptIds(), ids, nil
		}
	}
}

func messages(pairs ...string) []*specdv1.ChatMessage {
	var out []*specdv1.ChatMessage
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &specdv1.ChatMessage{Role: pairs[i], Content: pairs[i+1]})
	}
	return out
}

// TestChatMessages: a verifier renders a request's messages with the template in its
// model's GGUF metadata, with bos_token and eos_token, and tokenizes the text with
// special tokens parsed and no second BOS — the prompt it reports (on its first
// message and its last) is exactly that, and its output is the output of the same ids
// sent as prompt_ids. A template that raises is INVALID_ARGUMENT; an empty role is
// INVALID_ARGUMENT naming it.
func TestChatMessages(t *testing.T) {
	checkLeaks(t)
	path := testmodels.WithMetadata(t, "specd-target-q8_0.gguf", gguf.KV{Key: "tokenizer.chat_template", Value: gguf.NewString(llama2Template)})
	ctx, client, m := startChatVerifier(t, path, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}})
	msgs := messages("user", "Tell me a story.", "assistant", "Once upon a time there was a cat.", "user", "And then?")
	tmpl, err := chat.Parse(llama2Template)
	if err != nil {
		t.Fatal(err)
	}
	text, err := tmpl.Render(ctx, []chat.Message{{Role: "user", Content: "Tell me a story."}, {Role: "assistant", Content: "Once upon a time there was a cat."}, {Role: "user", Content: "And then?"}},
		chat.Options{BOS: "<s>", EOS: "</s>", AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	want := m.Tok.EncodeSpecial(text, false)
	if want[0] != m.Tok.BOS() || slices.Index(want, m.Tok.EOS()) < 0 || strings.Count(text, "<s>") != 2 {
		t.Fatalf("reference: %q tokenizes to %v: want BOS first and EOS inside", text, want)
	}
	first, last, ids, err := chatRun(ctx, client, &specdv1.GenerateRequest{Messages: msgs, MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, want) || !slices.Equal(last, want) {
		t.Errorf("prompt ids: first message %v, final %v; want %v (%q with special tokens)", first, last, want, text)
	}
	_, _, plain, err := chatRun(ctx, client, &specdv1.GenerateRequest{PromptIds: want, MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, plain) {
		t.Errorf("output %v, want %v (the same ids as prompt_ids)", ids, plain)
	}

	for _, tc := range []struct {
		name string
		msgs []*specdv1.ChatMessage
		code codes.Code
		msg  string
	}{
		{"template raises", messages("assistant", "Hi", "user", "x"), codes.InvalidArgument, "roles must alternate"},
		{"empty role", messages("user", "a", "", "b"), codes.InvalidArgument, "messages[1].role"},
	} {
		_, _, _, err := chatRun(ctx, client, &specdv1.GenerateRequest{Messages: tc.msgs, MaxTokens: 4})
		if s := status.Convert(err); s.Code() != tc.code || !strings.Contains(s.Message(), tc.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", tc.name, err, tc.code, tc.msg)
		}
	}
}

// TestChatTemplateOverride: --chat-template renders a model that has none (the shared
// target) with Qwen2.5's template; the vocabulary has no <|im_start|>, so that text
// stays text, and BOS goes first as the vocabulary asks. Without a template a messages
// request is FAILED_PRECONDITION, while prompts are still served.
func TestChatTemplateOverride(t *testing.T) {
	checkLeaks(t)
	_, src, _ := testmodels.QwenChat(t)
	tmpl, err := chat.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	path := testmodels.ForTest(t, "specd-target-q8_0.gguf")
	ctx, client, m := startChatVerifier(t, path, verifiersvc.Config{ChatTemplate: tmpl, Engine: verifiersvc.EngineConfig{Threads: 1}})
	no := false
	text, err := tmpl.Render(ctx, []chat.Message{{Role: "user", Content: "Hello!"}}, chat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]int32{m.Tok.BOS()}, m.Tok.EncodeSpecial(text, false)...)
	_, last, _, err := chatRun(ctx, client, &specdv1.GenerateRequest{Messages: messages("user", "Hello!"), AddGenerationPrompt: &no, MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(last, want) {
		t.Errorf("prompt ids %v, want %v (BOS, then %q)", last, want, text)
	}

	ctx, client, _ = startChatVerifier(t, path, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}})
	_, _, _, err = chatRun(ctx, client, &specdv1.GenerateRequest{Messages: messages("user", "Hello!"), MaxTokens: 2})
	if s := status.Convert(err); s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), "no chat template") {
		t.Errorf("no template: %v, want FAILED_PRECONDITION saying so", err)
	}
	if _, _, _, err := chatRun(ctx, client, &specdv1.GenerateRequest{Prompt: "Hello", MaxTokens: 2}); err != nil {
		t.Errorf("a prompt on a verifier without a template: %v", err)
	}
}

// TestPromptBOSAsVocabularyAsks: a text prompt gets BOS only when the vocabulary asks for
// it (tokenizer.ggml.add_bos_token), as in llama.cpp: Qwen2.5's files name a BOS token
// (<|endoftext|>) and set add_bos_token false.
func TestPromptBOSAsVocabularyAsks(t *testing.T) {
	checkLeaks(t)
	path := testmodels.WithMetadata(t, "specd-target-q8_0.gguf", gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: gguf.NewBool(false)})
	ctx, client, m := startChatVerifier(t, path, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}})
	if m.Tok.AddBOS() {
		t.Fatal("the vocabulary still asks for BOS")
	}
	want := m.Tok.Encode("Once upon a time", false)
	_, last, _, err := chatRun(ctx, client, &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(last, want) {
		t.Errorf("prompt ids %v, want %v (no BOS)", last, want)
	}
}
