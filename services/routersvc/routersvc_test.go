package routersvc

import (
	"strings"
	"testing"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
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
