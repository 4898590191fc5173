package routersvc

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
)

// TestPromptHead: the affinity key of a conversation depends on its turns (roles and
// contents, so that moving text between turns changes it), stays the same as the
// conversation grows past its first 256 bytes, and never equals a text prompt's key.
func TestPromptHead(t *testing.T) {
	msgs := func(pairs ...string) *specdv1.GenerateRequest {
		r := &specdv1.GenerateRequest{}
		for i := 0; i+1 < len(pairs); i += 2 {
			r.Messages = append(r.Messages, &specdv1.ChatMessage{Role: pairs[i], Content: pairs[i+1]})
		}
		return r
	}
	long := strings.Repeat("a long system prompt ", 20)
	for _, tc := range []struct {
		name string
		a, b *specdv1.GenerateRequest
		same bool
	}{
		{"same conversation", msgs("user", "hi"), msgs("user", "hi"), true},
		{"another role", msgs("user", "hi"), msgs("system", "hi"), false},
		{"text moved between turns", msgs("user", "ab", "assistant", "c"), msgs("user", "a", "assistant", "bc"), false},
		{"grown past the head", msgs("system", long, "user", "hi"), msgs("system", long, "user", "hi", "assistant", "hello", "user", "more"), true},
		{"short conversation grown", msgs("user", "hi"), msgs("user", "hi", "assistant", "hello"), false},
		{"prompt vs messages", &specdv1.GenerateRequest{Prompt: "user\x00hi\x00"}, msgs("user", "hi"), false},
	} {
		ka, kb := promptHead(tc.a), promptHead(tc.b)
		if (ka == kb) != tc.same {
			t.Errorf("%s: promptHead = %q and %q; want equal: %v", tc.name, ka, kb, tc.same)
		}
		if len(ka) > 256+len("messages:") {
			t.Errorf("%s: promptHead is %d bytes long", tc.name, len(ka))
		}
	}
}

// TestCompleteFitsTheRealLimit: a Complete response over the message limit the router
// sends (16 MiB unless configured) — here the prompt log-probabilities of 48,000
// prompt tokens with the 20 likeliest each — is refused as a bad prompt_logprobs
// (INVALID_ARGUMENT) naming the limit, not sent to fail as RESOURCE_EXHAUSTED, which
// reads as "busy, retry"; one under it, and the same under a raised limit, passes.
func TestCompleteFitsTheRealLimit(t *testing.T) {
	top := make([]*specdv1.TopLogprob, 20)
	for i := range top {
		top[i] = &specdv1.TopLogprob{TokenId: int32(3000 + i), Logprob: -1.25, Token: []byte(" piece"), Text: " piece"}
	}
	entry := &specdv1.TokenLogprob{Logprob: -0.5, Token: []byte(" word"), Text: " word", Top: top}
	res := func(n int) *specdv1.CompleteResponse {
		r := &specdv1.CompleteResponse{Text: "x"}
		for range n {
			r.PromptLogprobs = append(r.PromptLogprobs, entry)
		}
		return r
	}
	req := &specdv1.GenerateRequest{Prompt: "x", PromptLogprobs: true, TopLogprobs: 20}
	s := &Server{}
	err := s.fits(req, res(48_000))
	if st := status.Convert(services.Status(err)); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "16777216") || !strings.Contains(st.Message(), "prompt_logprobs") {
		t.Errorf("48,000 entries: %v, want INVALID_ARGUMENT naming prompt_logprobs and the limit of 16777216 bytes", err)
	}
	if err := s.fits(req, res(30_000)); err != nil {
		t.Errorf("30,000 entries: %v, want them sent", err)
	}
	s.MaxMessageBytes = 64 << 20
	if err := s.fits(req, res(48_000)); err != nil {
		t.Errorf("48,000 entries under a 64 MiB limit: %v, want them sent", err)
	}
}

// TestDeadlineNotCanceled: an error that says Canceled — a call the router cancelled —
// after the caller's deadline has passed is answered as the deadline, DEADLINE_EXCEEDED;
// before it, Canceled stays Canceled.
func TestDeadlineNotCanceled(t *testing.T) {
	s := &Server{}
	cancelled := status.Error(codes.Canceled, "context canceled")
	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if got := status.Code(s.publicStatus(past, cancelled)); got != codes.DeadlineExceeded {
		t.Errorf("Canceled after the deadline: %v, want DeadlineExceeded", got)
	}
	if got := status.Code(s.publicStatus(context.Background(), cancelled)); got != codes.Canceled {
		t.Errorf("Canceled with no deadline passed: %v, want Canceled", got)
	}
}
