package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestSoftmaxPaths runs the softmax kernel with 8-lane and with 16-lane exponentials
// (the AVX-512 path) and checks both bitwise against softmaxGeneric, whatever the
// machine's Softmax would choose, on rows with a NaN too (any NaN matching any NaN).
func TestSoftmaxPaths(t *testing.T) {
	if !vecAVX2 {
		t.Skip("no AVX2")
	}
	wides := []bool{false}
	if vecAVX512 {
		wides = append(wides, true)
	}
	rng := rand.New(rand.NewPCG(23, 24))
	for _, wide := range wides {
		for _, n := range softmaxLens() {
			for kind := range 4 {
				x := make([]float32, n)
				softmaxInput(rng, kind%3, x)
				if kind == 3 { // a NaN among the inputs: the lanes of the maximum must match
					x[rng.IntN(n)] = float32(math.NaN())
				}
				want := append([]float32(nil), x...)
				softmaxGeneric(want, 0.125)
				off := n % 8
				buf, got := guarded(x, off)
				vsoftmaxF32(&got[0], n, 0.125, &expTab, wide)
				name := fmt.Sprintf("vsoftmaxF32(n=%d, kind=%d, wide=%v)", n, kind, wide)
				checkGuards(t, name, buf, off, n)
				for i := range got {
					if math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i])) {
						continue
					}
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s[%d] = %v, want %v as softmaxGeneric", name, i, got[i], want[i])
					}
				}
			}
		}
	}
}
