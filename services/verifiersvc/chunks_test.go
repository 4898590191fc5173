package verifiersvc

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/specd-dev/specd/generate"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
)

// TestPromptChunksAtTheRealLimit: the prompt log-probabilities of a prompt of 48,000
// tokens with the 20 likeliest tokens each (within the context of today's models) take
// more than the 16 MiB every specd service sends and accepts at most — more than one
// message. promptChunks cuts them into messages of at most a quarter of it and at most
// MaxPromptChunkBytes (under grpc-go's default 4 MiB receive limit), in order, each
// entry once; a bound smaller than one entry still moves every entry, one a chunk.
func TestPromptChunksAtTheRealLimit(t *testing.T) {
	const n = 48_000
	top := make([]generate.TopLogprob, generate.MaxTopLogprobs)
	for i := range top {
		b := []byte(fmt.Sprintf(" piece%02d", i))
		top[i] = generate.TopLogprob{ID: int32(3000 + i), Logprob: -1.25 - float32(i), Bytes: b, Text: string(b)}
	}
	lps := make([]*generate.Logprobs, n)
	for k := range lps {
		lps[k] = &generate.Logprobs{Logprob: -float32(k%97) / 7, Bytes: []byte(" word"), Text: " word", Top: top}
	}
	whole := &specdv1.TokenChunk{}
	for _, lp := range lps {
		whole.PromptLogprobs = append(whole.PromptLogprobs, services.LogprobsToProto(lp))
	}
	if size := proto.Size(whole); size <= services.MaxMessageBytes {
		t.Fatalf("%d entries take %d bytes, not over the limit of %d: the test proves nothing", n, size, services.MaxMessageBytes)
	}
	for _, bound := range []int{min(services.MaxMessageBytes/4, MaxPromptChunkBytes), 64 << 10, 10} {
		chunks := promptChunks(lps, bound)
		got := 0
		for i, c := range chunks {
			if size := proto.Size(c); size > bound && len(c.PromptLogprobs) > 1 {
				t.Fatalf("bound %d: chunk %d has %d bytes", bound, i, size)
			}
			for _, p := range c.PromptLogprobs {
				if !proto.Equal(p, whole.PromptLogprobs[got]) {
					t.Fatalf("bound %d: chunk %d: entry %d out of order", bound, i, got)
				}
				got++
			}
		}
		if got != n || (bound >= 64<<10 && len(chunks) < proto.Size(whole)/bound) {
			t.Errorf("bound %d: %d entries in %d chunks, want %d in at least %d", bound, got, len(chunks), n, proto.Size(whole)/bound)
		}
	}
}
