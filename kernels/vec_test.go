package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestScoresAccumMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, hd := range []int{8, 32, 64, 12, 72, 128, 200} {
		for _, n := range []int{1, 4, 5, 7, 16} {
			stride := hd * 3
			q := make([]float32, hd)
			kv := make([]float32, n*stride)
			w := make([]float32, n)
			for i := range q {
				q[i] = rng.Float32()*2 - 1
			}
			for i := range kv {
				kv[i] = rng.Float32()*2 - 1
			}
			for i := range w {
				w[i] = rng.Float32()
			}
			got, want := make([]float32, n), make([]float32, n)
			Scores(got, q, kv, stride)
			scoresGeneric(want, q, kv, stride)
			for j := range got {
				if math.Abs(float64(got[j]-want[j])) > 1e-5 {
					t.Fatalf("Scores(hd=%d, n=%d)[%d] = %v, want %v", hd, n, j, got[j], want[j])
				}
			}
			a, b := make([]float32, hd), make([]float32, hd)
			Accum(a, kv, stride, w)
			accumGeneric(b, kv, stride, w)
			for i := range a {
				if math.Abs(float64(a[i]-b[i])) > 1e-5 {
					t.Fatalf("Accum(hd=%d, n=%d)[%d] = %v, want %v", hd, n, i, a[i], b[i])
				}
			}
		}
	}
}
