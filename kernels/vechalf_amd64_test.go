package kernels

import (
	"math/rand/v2"
	"testing"
)

// halfPaths runs f once on the paths this machine takes and once with each faster
// path turned off in turn, so the fallbacks are checked here too. The float32 kernels
// follow the same switches, so each run compares like with like.
func halfPaths(t *testing.T, f func(t *testing.T)) {
	saved := [...]bool{vecAVX2, vecAVX512, halfAVX2}
	defer func() { vecAVX2, vecAVX512, halfAVX2 = saved[0], saved[1], saved[2] }()
	for _, p := range []struct {
		name             string
		avx2, avx512, fc bool
	}{
		{"native", saved[0], saved[1], saved[2]},
		{"noAVX512", saved[0], false, saved[2]},
		{"noF16C", saved[0], false, false},
		{"generic", false, false, false},
	} {
		vecAVX2, vecAVX512, halfAVX2 = p.avx2, p.avx512, p.fc
		t.Run(p.name, f)
	}
}

// BenchmarkAttentionHalf times one decode step's attention work for one KV head of the
// target (two query heads of 64 dimensions) against a block of 64 positions of an F16
// cache, 256 halves apart: converting the head's keys and values first, or reading the
// halves directly; on the AVX-512 kernels and on the AVX2 + F16C ones. The block stays
// in L1, so this is the arithmetic alone, not the memory traffic the halves save.
func BenchmarkAttentionHalf(b *testing.B) {
	const hd, n, stride = 64, 64, 256
	saved := vecAVX512
	defer func() { vecAVX512 = saved }()
	rng := rand.New(rand.NewPCG(25, 26))
	kh, vh := randHalves(rng, n*stride), randHalves(rng, n*stride)
	q1, q2, w1, w2 := randSlice(rng, hd), randSlice(rng, hd), randSlice(rng, n), randSlice(rng, n)
	s1, s2, o1, o2 := make([]float32, n), make([]float32, n), make([]float32, hd), make([]float32, hd)
	buf := make([]float32, n*hd)
	for _, p := range []struct {
		name   string
		avx512 bool
	}{{"avx512", saved}, {"avx2", false}} {
		vecAVX512 = p.avx512
		b.Run(p.name+"/converted", func(b *testing.B) {
			for b.Loop() {
				HalfRows(buf, hd, kh, stride, n, hd)
				Scores2(s1, s2, q1, q2, buf, hd)
				HalfRows(buf, hd, vh, stride, n, hd)
				Accum2(o1, o2, buf, hd, w1, w2)
			}
		})
		b.Run(p.name+"/direct", func(b *testing.B) {
			for b.Loop() {
				Scores2Half(s1, s2, q1, q2, kh, stride)
				Accum2Half(o1, o2, vh, stride, w1, w2)
			}
		})
	}
}
