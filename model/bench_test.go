package model_test

import (
	"fmt"
	"testing"

	"github.com/specd-dev/specd/kernels"
)

// BenchmarkForward times one forward pass over a block of n tokens at position ~100 of
// the target (the cost of verifying n-1 draft tokens) and of the draft.
//
//	go test ./model -run '^$' -bench Forward -benchtime 200x
func BenchmarkForward(b *testing.B) {
	f32 := kernels.F32
	for _, c := range []struct {
		name  string
		file  string
		quant *kernels.Type
	}{
		{"target-q8_0", "specd-target-q8_0.gguf", nil},
		{"target-f32", "specd-target-q8_0.gguf", &f32},
		{"draft-q8_0", "specd-draft-q8_0.gguf", nil},
		{"draft-f16", "specd-draft-f16.gguf", nil},
	} {
		m := load(b, c.file, c.quant)
		for _, threads := range []int{1, 2} {
			for _, n := range []int{1, 2, 3, 5, 9} {
				b.Run(fmt.Sprintf("%s/threads=%d/block=%d", c.name, threads, n), func(b *testing.B) {
					st := newState(b, m, threads, 16)
					ctx := make([]int32, 100)
					for i := range ctx {
						ctx[i] = int32(100 + i)
					}
					if _, err := st.Forward(ctx, false); err != nil {
						b.Fatal(err)
					}
					blk := ctx[:n]
					for b.Loop() {
						if _, err := st.Forward(blk, true); err != nil {
							b.Fatal(err)
						}
						st.Seq.Truncate(100)
					}
				})
			}
		}
	}
}
