package serve_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/tokenizer"
)

// qwenTemplate returns the path and source of Qwen2.5's chat template.
func qwenTemplate(t *testing.T) (string, string) {
	path, src, _ := testmodels.QwenChat(t)
	return path, src
}

// renderIDs is what a verifier with template src takes as the prompt of msgs: the
// rendering, tokenized with special tokens, BOS first (the specd vocabulary asks for
// it and the Qwen template does not write it).
func renderIDs(t *testing.T, tok *tokenizer.Tokenizer, src string, msgs []chat.Message) []int32 {
	t.Helper()
	tmpl, err := chat.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	text, err := tmpl.Render(context.Background(), msgs, chat.Options{AddGenerationPrompt: true, BOS: "<s>", EOS: "</s>"})
	if err != nil {
		t.Fatal(err)
	}
	return append([]int32{tok.BOS()}, tok.EncodeSpecial(text, false)...)
}

func toProto(msgs []chat.Message) []*specdv1.ChatMessage {
	out := make([]*specdv1.ChatMessage, len(msgs))
	for i, m := range msgs {
		out[i] = &specdv1.ChatMessage{Role: m.Role, Content: m.Content}
	}
	return out
}

// TestChatThroughRouter: the router passes messages to the verifier, whose greedy
// answer through the draft is plain decoding of the rendered ids, and Complete returns
// those ids as prompt_ids. Bad inputs are refused at the router naming the field.
func TestChatThroughRouter(t *testing.T) {
	_, src := qwenTemplate(t)
	tmpl, err := chat.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	s := startStackWith(t, stackOptions{chat: tmpl})
	msgs := []chat.Message{{Role: "system", Content: "You tell stories."}, {Role: "user", Content: "Once upon a time"}}
	prompt := renderIDs(t, s.target.Tok, src, msgs)
	want := s.plainIDs(t, prompt, 24, sample.Params{})
	zero := uint64(0)
	resp, err := s.client.Complete(context.Background(), &specdv1.GenerateRequest{Messages: toProto(msgs), MaxTokens: 24,
		Sampling: &specdv1.SamplingParams{Seed: &zero}, Speculation: &specdv1.SpeculationOptions{Gamma: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.GetPromptIds(), prompt) {
		t.Errorf("Complete prompt_ids = %v, want %v", resp.GetPromptIds(), prompt)
	}
	if !slices.Equal(resp.GetTokenIds(), want) {
		t.Errorf("Complete token_ids = %v, want plain greedy %v", resp.GetTokenIds(), want)
	}
	for _, tc := range []struct {
		name  string
		req   *specdv1.GenerateRequest
		field string
	}{
		{"empty role", &specdv1.GenerateRequest{Messages: []*specdv1.ChatMessage{{Role: "user", Content: "a"}, {Content: "b"}}}, "messages[1].role"},
		{"prompt and messages", &specdv1.GenerateRequest{Prompt: "x", Messages: toProto(msgs)}, "prompt"},
	} {
		_, err := s.client.Complete(context.Background(), tc.req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field+":") {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming %s", tc.name, err, tc.field)
		}
	}
}

// TestChatVerifierKilledMidStream: two verifiers render the same conversation
// differently (another default system prompt — as another template version, or
// strftime_now on another day, would); the one serving a chat request is killed
// mid-stream. The other must continue the first one's rendering, not its own: the
// client gets the greedy continuation of the first rendering, with its prompt length.
func TestChatVerifierKilledMidStream(t *testing.T) {
	pathA, src := qwenTemplate(t)
	srcB := strings.ReplaceAll(src, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
		"You are a storyteller of the old school, who answers every question with a long tale about kings and dragons.")
	if srcB == src {
		t.Fatal("the Qwen template no longer has its default system prompt")
	}
	pathB := filepath.Join(t.TempDir(), "other.jinja")
	if err := os.WriteFile(pathB, []byte(srcB), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDraftProcess(t)
	va := startProcess(t, "verifier", "-m", "specd-target-q8_0", "--drafts", d.addr, "--chat-template", pathA)
	vb := startProcess(t, "verifier", "-m", "specd-target-q8_0", "--drafts", d.addr, "--chat-template", pathB)
	client := startRouter(t, serve.RouterConfig{Verifiers: []string{va.addr, vb.addr}, Drafts: []string{d.addr}, Refresh: 100 * time.Millisecond,
		Breakers: services.NewBreakers(3, time.Second)})
	s := &stack{client: client, target: loadTarget(t)}

	const key = "chat-failover"
	first, _, _ := router.Pick(router.NewStatic(
		router.Endpoint{ID: va.addr, Address: va.addr, Role: router.Verifier},
		router.Endpoint{ID: vb.addr, Address: vb.addr, Role: router.Verifier}), key, nil, nil)
	victim, victimSrc, otherSrc := va, src, srcB
	if first.ID == vb.addr {
		victim, victimSrc, otherSrc = vb, srcB, src
	}
	msgs := []chat.Message{{Role: "user", Content: "It was the best of times, it was the worst of times, it was the age of"}}
	prompt := renderIDs(t, s.target.Tok, victimSrc, msgs)
	if other := renderIDs(t, s.target.Tok, otherSrc, msgs); len(other) == len(prompt) {
		t.Fatalf("the two renderings have the same length %d: the test could not tell them apart", len(prompt))
	}
	want := s.plainIDs(t, prompt, 120, sample.Params{})
	zero := uint64(0)
	st, err := client.Generate(context.Background(), &specdv1.GenerateRequest{Messages: toProto(msgs), MaxTokens: 120, SessionKey: key,
		Sampling: &specdv1.SamplingParams{Seed: &zero}, Speculation: &specdv1.SpeculationOptions{Gamma: 4}})
	if err != nil {
		t.Fatal(err)
	}
	var got []int32
	var final *specdv1.Final
	killed := false
	for final == nil {
		msg, err := st.Recv()
		if err != nil {
			t.Fatalf("stream broke after %d tokens: %v", len(got), err)
		}
		got = append(got, msg.GetChunk().GetTokenIds()...)
		if len(got) >= 10 && !killed {
			victim.kill(t)
			killed = true
		}
		final = msg.GetFinal()
	}
	if !slices.Equal(got, want) {
		t.Errorf("output across the failover differs from the first rendering's greedy continuation:\n got %v\nwant %v", got, want)
	}
	if n := final.GetStats().GetPromptTokens(); int(n) != len(prompt) {
		t.Errorf("final prompt_tokens %d, want %d (the first verifier's rendering)", n, len(prompt))
	}
	if final.GetStats().GetFailovers() != 1 {
		t.Errorf("stats report %d failovers, want 1", final.GetStats().GetFailovers())
	}
}
