package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestMinCold: many distinct matrices totalling ~64MB, n tokens, 1 thread.
var coldType = Q8_0

func TestMinCold(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	var ws []*Matrix
	for range 48 {
		ws = append(ws, randMatrix(t, rng, coldType, 2048, 512))
	}
	p := NewPool(1)
	defer p.Close()
	for _, n := range []int{1, 5} {
		x := randFloats(rng, n*512, 1)
		out := make([]float32, n*2048)
		d := minTimeD(1, 15, func() {
			for _, w := range ws {
				p.MatMul(out, w, x, n)
			}
		})
		fmt.Printf("cold n=%d: %.3f ms for %d MB: %.2f GB/s, %.3f ns/tokpair\n", n, d/1e6, 48*2048*544>>20, float64(48*2048*544)/d, d/float64(48*2048*8*n))
	}
}
