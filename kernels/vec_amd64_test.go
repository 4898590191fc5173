package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestScoresT2Paths checks that the AVX-512 and AVX2 kernels of ScoresT2 agree bit for
// bit (the same fused operations per lane), on odd shapes and on tails that end inside
// each of a group's vectors, and that neither writes past the keys it was given.
func TestScoresT2Paths(t *testing.T) {
	if !vecAVX2 {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewPCG(21, 22))
	for _, hd := range []int{8, 32, 64, 128} {
		for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 31, 33, 48, 63, 64, 65, 100} {
			stride := n + 5
			q1, q2 := randSlice(rng, hd), randSlice(rng, hd)
			kt := randSlice(rng, hd*stride)
			const guard = 16
			run := func(kernel func(q1, q2, kt *float32, stride, n, hd int, out1, out2 *float32)) (o1, o2 []float32) {
				o1, o2 = make([]float32, n+guard), make([]float32, n+guard)
				for i := n; i < n+guard; i++ {
					o1[i], o2[i] = -7, -7
				}
				kernel(&q1[0], &q2[0], &kt[0], 4*stride, n, hd, &o1[0], &o2[0])
				for i := n; i < n+guard; i++ {
					if o1[i] != -7 || o2[i] != -7 {
						t.Fatalf("hd=%d n=%d: the kernel wrote past the keys, at %d", hd, n, i)
					}
				}
				return o1[:n], o2[:n]
			}
			w1, w2 := make([]float32, n), make([]float32, n)
			scoresT2Generic(w1, w2, q1, q2, kt, stride)
			a1, a2 := run(vscoresT2AVX2)
			for p := range n {
				if math.Abs(float64(a1[p]-w1[p])) > 1e-4 || math.Abs(float64(a2[p]-w2[p])) > 1e-4 {
					t.Fatalf("hd=%d n=%d: vscoresT2AVX2 key %d = %v, %v, want %v, %v", hd, n, p, a1[p], a2[p], w1[p], w2[p])
				}
			}
			if !vecAVX512 {
				continue
			}
			z1, z2 := run(vscoresT2F32)
			for p := range n {
				if math.Float32bits(z1[p]) != math.Float32bits(a1[p]) || math.Float32bits(z2[p]) != math.Float32bits(a2[p]) {
					t.Fatalf("hd=%d n=%d: key %d: AVX-512 %v, %v, AVX2 %v, %v", hd, n, p, z1[p], z2[p], a1[p], a2[p])
				}
			}
		}
	}
}
