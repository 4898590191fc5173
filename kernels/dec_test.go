package kernels

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func minTimeD(iters, reps int, f func()) float64 {
	best := 1e18
	for range reps {
		t0 := time.Now()
		for range iters {
			f()
		}
		best = min(best, float64(time.Since(t0).Nanoseconds())/float64(iters))
	}
	return best
}

func TestMinDecode(t *testing.T) {
	impls := strings.Split(os.Getenv("IMPLS"), ",")
	types := map[string]Type{"q8_0": Q8_0, "q4_0": Q4_0, "f16": F16, "f32": F32}
	for _, impl := range impls {
		UseImpl(impl)
		for _, tn := range strings.Split(os.Getenv("TYPES"), ",") {
			typ := types[tn]
			for _, m := range []struct {
				name                           string
				layers, dim, kvDim, ffn, vocab int
			}{{"target", 8, 512, 256, 1408, 4096}, {"draft", 4, 192, 192, 512, 4096}} {
				if !strings.Contains(os.Getenv("MODELS"), m.name) {
					continue
				}
				s := newDecodeSet(t, typ, m.layers, m.dim, m.kvDim, m.ffn, m.vocab)
				res := map[string]float64{}
				for _, n := range []int{1, 5} {
					rng := rand.New(rand.NewPCG(3, 3))
					x := randFloats(rng, n*m.dim, 1)
					xf := randFloats(rng, n*m.ffn, 1)
					outs := make([][]float32, 3)
					for i := range outs {
						outs[i] = make([]float32, n*max(m.vocab, m.ffn))
					}
					for _, th := range []int{1, 2} {
						p := NewPool(th)
						ns := minTimeD(5, 30, func() { s.run(p, x, xf, outs, n) })
						p.Close()
						res[fmt.Sprint(n, th)] = ns
						fmt.Printf("%s %s %v n=%d threads=%d: %.3f ms\n", impl, m.name, typ, n, th, ns/1e6)
					}
				}
				fmt.Printf("   ratio n5/n1: t1 %.2f t2 %.2f\n", res["5 1"]/res["1 1"], res["5 2"]/res["1 2"])
			}
		}
	}
}
