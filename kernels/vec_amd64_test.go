package kernels

import (
	"fmt"
	"testing"
)

// BenchmarkAttentionSmall times the scores and the weighted sums (of one output, from
// float32 or fp16 values, two and four) of one head against a block of 64 cached positions for the small head
// dimensions of draft models (32 for specd's draft, 8 for stories260K), rows six heads
// apart as in a cache of six KV heads.
//
//	go test ./kernels -run '^$' -bench AttentionSmall -benchtime 100000x
func BenchmarkAttentionSmall(b *testing.B) {
	const n = 64
	for _, hd := range []int{8, 16, 32, 48, 56} {
		stride := 6 * hd
		kv := make([]float32, n*stride)
		for i := range kv {
			kv[i] = float32(i%7) - 3
		}
		q, w, scores, out := make([]float32, hd), make([]float32, n), make([]float32, n), make([]float32, hd)
		b.Run(fmt.Sprintf("hd=%d/scores", hd), func(b *testing.B) {
			for b.Loop() {
				Scores(scores, q, kv, stride)
			}
		})
		b.Run(fmt.Sprintf("hd=%d/accum", hd), func(b *testing.B) {
			for b.Loop() {
				Accum(out, kv, stride, w)
			}
		})
		// The same values as stored in an F16 cache, read directly.
		vh := make([]uint16, len(kv))
		for i, f := range kv {
			vh[i] = FP32ToFP16(f)
		}
		b.Run(fmt.Sprintf("hd=%d/accum-half", hd), func(b *testing.B) {
			for b.Loop() {
				AccumHalf(out, vh, stride, w)
			}
		})
		// Two and four outputs from the same values: heads that share a KV head, or
		// tokens of one head.
		o2, o3, o4 := make([]float32, hd), make([]float32, hd), make([]float32, hd)
		b.Run(fmt.Sprintf("hd=%d/accum2", hd), func(b *testing.B) {
			for b.Loop() {
				Accum2(out, o2, kv, stride, w, w)
			}
		})
		b.Run(fmt.Sprintf("hd=%d/accum4", hd), func(b *testing.B) {
			for b.Loop() {
				Accum4(out, o2, o3, o4, kv, stride, w, w, w, w)
			}
		})
		if vecAVX512 {
			// The AVX2 path, which keeps at most 32 columns in registers.
			b.Run(fmt.Sprintf("hd=%d/accum-avx2", hd), func(b *testing.B) {
				vecAVX512 = false
				defer func() { vecAVX512 = true }()
				for b.Loop() {
					Accum(out, kv, stride, w)
				}
			})
		}
	}
}
