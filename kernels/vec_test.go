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

func TestExp(t *testing.T) {
	for x := float32(-110); x < 90; x += 0.013 {
		got, want := float64(Exp(x)), math.Exp(float64(x))
		if want > math.MaxFloat32 {
			if !math.IsInf(got, 1) {
				t.Fatalf("Exp(%v) = %v, want +Inf", x, got)
			}
			continue
		}
		if want < 1e-38 {
			if math.Abs(got-want) > 1e-44 {
				t.Fatalf("Exp(%v) = %v, want %v", x, got, want)
			}
			continue
		}
		if rel := math.Abs(got-want) / want; rel > 4e-7 {
			t.Fatalf("Exp(%v) = %v, want %v (relative error %.2g)", x, got, want, rel)
		}
	}
	if v := Exp(float32(math.NaN())); v == v {
		t.Errorf("Exp(NaN) = %v, want NaN", v)
	}
}

func BenchmarkExp(b *testing.B) {
	x := float32(0.3)
	for b.Loop() {
		x = Exp(x) - 1.1
	}
}
