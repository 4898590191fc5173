package verifiersvc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// TestLongTextPromptRefusedByLength: a text prompt, or a text to Tokenize, too long to fit, whatever it
// tokenizes to, is refused by its length before it is tokenized — tokenizing costs
// about a second of CPU and 45 MB per MB of text, and a message may carry 16 MiB — and
// one at that length is still tokenized and judged by its tokens. No token stands for
// more bytes of text than its piece spells (or than one character, for an unknown
// one), so a text longer than the limit times the longest piece has more tokens than
// the limit.
func TestLongTextPromptRefusedByLength(t *testing.T) {
	checkLeaks(t)
	const limit = 8
	path := testmodels.WithMetadata(t, "specd-target-q8_0.gguf", gguf.KV{Key: "tokenizer.chat_template", Value: gguf.NewString(llama2Template)})
	ctx, client, m := startChatVerifier(t, path, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1}, MaxPromptTokens: limit})
	perToken := utf8.UTFMax
	for id := range m.Tok.VocabSize() {
		perToken = max(perToken, len(m.Tok.Piece(int32(id))))
	}
	long := strings.Repeat("Once upon a time ", 2<<20/17)
	for _, tc := range []struct {
		name   string
		req    *specdv1.GenerateRequest
		field  string
		length bool
	}{
		{"at the bound", &specdv1.GenerateRequest{Prompt: strings.Repeat("a", limit*perToken)}, "prompt", false},
		{"past the bound", &specdv1.GenerateRequest{Prompt: strings.Repeat("a", limit*perToken+1)}, "prompt", true},
		{"2 MiB of words", &specdv1.GenerateRequest{Prompt: long}, "prompt", true},
		{"a conversation of 2 MiB", &specdv1.GenerateRequest{Messages: messages("user", long)}, "messages", true},
	} {
		tc.req.MaxTokens, tc.req.Speculation = 1, &specdv1.SpeculationOptions{Disabled: true}
		err := refusal(ctx, client, tc.req)
		st := status.Convert(err)
		length := strings.Contains(st.Message(), "bytes of text")
		if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field+": ") || length != tc.length {
			t.Errorf("%s (limit %d tokens of at most %d bytes): %v, want INVALID_ARGUMENT on the %s, refused by its length %v",
				tc.name, limit, perToken, err, tc.field, tc.length)
		}
	}
	// Tokenize takes no more text than the longest prompt could spell either: past it,
	// INVALID_ARGUMENT on the text, naming the bound in bytes.
	for _, tc := range []struct {
		name string
		text string
		ok   bool
	}{
		{"at the bound", strings.Repeat("a", limit*perToken), true},
		{"past the bound", strings.Repeat("a", limit*perToken+1), false},
		{"2 MiB of words", long, false},
	} {
		_, err := client.Tokenize(ctx, &specdv1.TokenizeRequest{Text: tc.text})
		st := status.Convert(err)
		bound := fmt.Sprintf("at most %d ", limit*perToken)
		switch {
		case tc.ok && err != nil:
			t.Errorf("Tokenize %s (%d bytes): %v, want ids", tc.name, len(tc.text), err)
		case !tc.ok && (st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "text: ") || !strings.Contains(st.Message(), bound)):
			t.Errorf("Tokenize %s (%d bytes): %v, want INVALID_ARGUMENT on the text naming %q", tc.name, len(tc.text), err, bound)
		}
	}
}

// refusal runs req and returns how it ended.
func refusal(ctx context.Context, client speculationv1.VerifierServiceClient, req *specdv1.GenerateRequest) error {
	st, err := client.Generate(ctx, &speculationv1.GenerateRequest{Request: req})
	if err != nil {
		return err
	}
	for {
		msg, err := st.Recv()
		if err != nil {
			return err
		}
		if msg.GetFinal() != nil {
			return nil
		}
	}
}
