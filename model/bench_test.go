package model_test

import (
	"fmt"
	"testing"

	"github.com/specd-dev/specd/ggml"
)

// BenchmarkForward times one forward pass over a block of n tokens after 100 or 250 cached positions of
// the target (the cost of verifying n-1 draft tokens, or of one pass of a batch of n
// sequences' tokens) and of the draft.
//
//	go test ./model -run '^$' -bench Forward -benchtime 200x
func BenchmarkForward(b *testing.B) {
	f32 := ggml.F32
	for _, c := range []struct {
		name  string
		file  string
		quant *ggml.Type
	}{
		{"target-q8_0", "specd-target-q8_0.gguf", nil},
		{"target-q4_k_m", "specd-target-q4_k_m.gguf", nil},
		{"target-f32", "specd-target-q8_0.gguf", &f32},
		{"draft-q8_0", "specd-draft-q8_0.gguf", nil},
		{"draft-f16", "specd-draft-f16.gguf", nil},
		{"qwen2-f16", "arch-qwen2-f16.gguf", nil},   // biases, NEOX RoPE
		{"llama3-f16", "arch-llama3-f16.gguf", nil}, // rope_freqs, untied output
	} {
		m := load(b, c.file, c.quant)
		for _, threads := range []int{1, 2} {
			for _, n := range []int{1, 2, 3, 5, 9, 16, 32} {
				// 100 cached positions, and 250: attention grows with the context,
				// and a block's attention with its tokens too.
				for _, past := range []int{100, 250} {
					b.Run(fmt.Sprintf("%s/threads=%d/block=%d/past=%d", c.name, threads, n, past), func(b *testing.B) {
						st := newState(b, m, threads, 64)
						ctx := make([]int32, past)
						for i := range ctx {
							ctx[i] = int32(100 + i%300)
						}
						if _, err := st.Forward(ctx, false); err != nil {
							b.Fatal(err)
						}
						blk := ctx[:n]
						for b.Loop() {
							if _, err := st.Forward(blk, true); err != nil {
								b.Fatal(err)
							}
							st.Seq.Truncate(past)
						}
					})
				}
			}
		}
	}
}
