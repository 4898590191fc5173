package kernels

import (
	"fmt"
	"testing"
)

// BenchmarkAttentionSmall times the scores and the weighted sums (of one output, from
// float32 or fp16 values, two and four) of one head against a block of 64 cached
// positions for the small head dimensions of draft models (32 for specd's draft, 8 for
// stories260K), rows six heads apart as in a cache of six KV heads; on the AVX-512
// kernels (where the machine has them) and on the AVX2 ones.
//
//	go test ./kernels -run '^$' -bench AttentionSmall -benchtime 100000x
func BenchmarkAttentionSmall(b *testing.B) {
	const n = 64
	saved := vecAVX512
	defer func() { vecAVX512 = saved }()
	paths := []string{"avx2"}
	if saved {
		paths = append(paths, "avx512")
	}
	for _, hd := range []int{8, 16, 32, 48, 56} {
		stride := 6 * hd
		kv := make([]float32, n*stride)
		vh := make([]uint16, len(kv)) // the same values as stored in an F16 cache
		for i := range kv {
			kv[i] = float32(i%7) - 3
			vh[i] = FP32ToFP16(kv[i])
		}
		q, w, scores := make([]float32, hd), make([]float32, n), make([]float32, n)
		o1, o2, o3, o4 := make([]float32, hd), make([]float32, hd), make([]float32, hd), make([]float32, hd)
		for _, path := range paths {
			vecAVX512 = path == "avx512"
			name := fmt.Sprintf("hd=%d/%s/", hd, path)
			b.Run(name+"scores", func(b *testing.B) {
				for b.Loop() {
					Scores(scores, q, kv, stride)
				}
			})
			b.Run(name+"accum", func(b *testing.B) {
				for b.Loop() {
					Accum(o1, kv, stride, w)
				}
			})
			b.Run(name+"accum-half", func(b *testing.B) {
				for b.Loop() {
					AccumHalf(o1, vh, stride, w)
				}
			})
			// Two and four outputs from the same values: heads that share a KV head,
			// or tokens of one head.
			b.Run(name+"accum2", func(b *testing.B) {
				for b.Loop() {
					Accum2(o1, o2, kv, stride, w, w)
				}
			})
			b.Run(name+"accum4", func(b *testing.B) {
				for b.Loop() {
					Accum4(o1, o2, o3, o4, kv, stride, w, w, w, w)
				}
			})
		}
	}
}
