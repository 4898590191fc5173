package serve_test

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/specd-dev/specd/generate"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TestPromptLogprobsOverMessageLimit: the prompt log-probabilities of a long prompt
// with the most likeliest tokens a request may ask for (top 20) take more than one
// gRPC message may hold. Every service here runs with --max-message-bytes 64 KiB and
// the client accepts no more, so the set (about 150 KiB for a prompt of ~450 tokens;
// at the default 16 MiB the same happens from ~45,000 prompt tokens, within the
// context of today's models) must be streamed in pieces: Generate carries them in the
// chunks ahead of the first generated token, each message under the limit, and they
// are the very numbers a request for the top 1 gets. Complete, whose answer is one
// message, is refused with INVALID_ARGUMENT naming the limit instead of failing to
// send it.
func TestPromptLogprobsOverMessageLimit(t *testing.T) {
	const limit = 64 << 10
	s := startStackWith(t, stackOptions{maxMsg: limit})
	ctx := context.Background()
	prompt := strings.Repeat("Once upon a time there was a little girl who liked to play in the park with her dog. ", 24)
	ids := s.target.Tok.Prompt(prompt)
	if len(ids) < 400 || len(ids)+2 > s.target.Context {
		t.Fatalf("the prompt has %d tokens: want 400 to %d", len(ids), s.target.Context-2)
	}
	stream := func(top uint32) ([]*specdv1.TokenLogprob, int) {
		t.Helper()
		st, err := s.client.Generate(ctx, &specdv1.GenerateRequest{Prompt: prompt, MaxTokens: 2, PromptLogprobs: true, TopLogprobs: top})
		if err != nil {
			t.Fatal(err)
		}
		var lps []*specdv1.TokenLogprob
		tokens, msgs := 0, 0
		for {
			msg, err := st.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("top %d: message %d: %v", top, msgs, err)
			}
			msgs++
			if n := proto.Size(msg); n > limit {
				t.Errorf("top %d: message %d has %d bytes, over the limit of %d", top, msgs, n, limit)
			}
			c := msg.GetChunk()
			if len(c.GetPromptLogprobs()) > 0 && tokens > 0 {
				t.Errorf("top %d: prompt log-probabilities after %d generated tokens", top, tokens)
			}
			lps = append(lps, c.GetPromptLogprobs()...)
			tokens += len(c.GetTokenIds())
			if f := msg.GetFinal(); f != nil && len(f.GetPromptLogprobs()) > 0 {
				t.Errorf("top %d: the final message carries %d prompt log-probabilities too", top, len(f.GetPromptLogprobs()))
			}
		}
		if tokens != 2 {
			t.Errorf("top %d: %d tokens generated, want 2", top, tokens)
		}
		return lps, msgs
	}
	big, msgs := stream(generate.MaxTopLogprobs)
	if len(big) != len(ids) {
		t.Fatalf("%d prompt log-probabilities for %d prompt tokens", len(big), len(ids))
	}
	if n := proto.Size(&specdv1.Final{PromptLogprobs: big}); n <= limit || msgs < 3 {
		t.Fatalf("the set has %d bytes in %d messages: the test needs more than the limit of %d", n, msgs, limit)
	}
	small, _ := stream(1)
	for k := range big {
		if len(big[k].GetTop()) != min(k, 1)*generate.MaxTopLogprobs || big[k].GetLogprob() != small[k].GetLogprob() || string(big[k].GetToken()) != string(small[k].GetToken()) {
			t.Fatalf("prompt token %d: %q %v with %d top, want %q %v with %d", k, big[k].GetToken(), big[k].GetLogprob(), len(big[k].GetTop()),
				small[k].GetToken(), small[k].GetLogprob(), min(k, 1)*generate.MaxTopLogprobs)
		}
	}

	_, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: prompt, MaxTokens: 2, PromptLogprobs: true, TopLogprobs: generate.MaxTopLogprobs})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), strconv.Itoa(limit)) {
		t.Errorf("Complete = %v, want INVALID_ARGUMENT naming the limit of %d bytes", err, limit)
	}
	// One that fits is answered whole.
	res, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: prompt, MaxTokens: 2, PromptLogprobs: true, TopLogprobs: 1})
	if err != nil || len(res.GetPromptLogprobs()) != len(ids) {
		t.Fatalf("Complete with top 1 = %d prompt log-probabilities, %v; want %d", len(res.GetPromptLogprobs()), err, len(ids))
	}
}

// TestOpenAIEchoOverMessageLimit: the front door answers a completion with echo and
// logprobs 20 over a long prompt — the very request lm-evaluation-harness sends to
// score a text — whole, streamed or not, however far its log-probabilities exceed the
// gRPC message limit: it reads the router's stream, whose messages stay under it,
// rather than the one message of Complete.
func TestOpenAIEchoOverMessageLimit(t *testing.T) {
	const limit = 64 << 10
	s := startStackWith(t, stackOptions{maxMsg: limit, http: true})
	prompt := strings.Repeat("Once upon a time there was a little girl who liked to play in the park with her dog. ", 24)
	ids := s.target.Tok.Prompt(prompt)
	body := map[string]any{"model": "specd-target", "prompt": prompt, "echo": true, "logprobs": generate.MaxTopLogprobs, "max_tokens": 1, "temperature": 0}
	want, _ := postCompletion(t, s.http, body)
	if len(want.Choices) != 1 || want.Choices[0].Logprobs == nil || len(want.Choices[0].Logprobs.Tokens) < len(ids)+1 {
		t.Fatalf("unstreamed: %+v, want %d prompt tokens' entries and the generated one's", want, len(ids))
	}
	if !strings.HasPrefix(want.Choices[0].Text, prompt) {
		t.Errorf("unstreamed text %.80q…, want the prompt first", want.Choices[0].Text)
	}
	body["stream"] = true
	got, _ := postCompletion(t, s.http, body)
	if len(got.Choices) != 1 || got.Choices[0].Text != want.Choices[0].Text || len(got.Choices[0].Logprobs.Tokens) != len(want.Choices[0].Logprobs.Tokens) {
		t.Errorf("streamed: %d choices, want the unstreamed text and entries", len(got.Choices))
	}
}
