package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specd-dev/specd/ggml"
)

// realShapes are products of the shapes real models have and the test models do not:
// columns of Qwen2.5 (896, 1536, 3584, 4864, 8960) and Llama 3 (14336) — 896 is where a
// K-quant file falls back to Q5_0, Q8_0 or IQ4_NL (28 blocks, not a whole group of 16),
// 4864 is an odd number of super-blocks (19) — and row counts that end in a partial
// tile of 16 rows or not. Rows are few (a vocabulary of 151936 would only repeat whole
// tiles); each matrix is large enough that two threads split it even for one token.
var realShapes = []struct {
	typ        ggml.Type
	rows, cols int
}{
	{ggml.Q8_0, 136, 896},
	{ggml.Q5_0, 131, 896},
	{ggml.IQ4_NL, 147, 896},
	{ggml.Q5_1, 93, 1536},
	{ggml.Q8_0, 112, 4864},
	{ggml.Q5_0, 75, 8960},
	{ggml.Q6_K, 149, 4864},
	{ggml.Q6_K, 64, 3584},
	{ggml.Q5_K, 83, 3584},
	{ggml.Q4_K, 137, 8960},
	{ggml.Q4_K, 160, 1536},
	{ggml.Q4_K, 45, 14336},
	{ggml.Q5_K, 32, 4864},
}

// TestMatMulRealShapes runs Pool.MatMul on real models' shapes, packed and not, under
// every implementation: each token of a block of 1 to 40, cut into calls of several
// sizes at several offsets of unaligned slices, on one thread and two, must be bitwise
// what it is alone (batch invariance), and a few tokens must match the float64
// reference.
func TestMatMulRealShapes(t *testing.T) {
	shapes := realShapes
	calls := [][]int{{40}, {1, 2, 3, 4, 5, 6, 7, 12}, {13, 11, 16}, {9, 8, 23}}
	if testing.Short() || raceEnabled {
		shapes = shapes[:0]
		for i, sh := range realShapes {
			if i%3 == 0 || sh.typ == ggml.Q4_K {
				shapes = append(shapes, sh)
			}
		}
		calls = calls[1:3]
	}
	forEachImpl(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(31, 32))
		pools := []*Pool{NewPool(1), NewPool(2)}
		defer pools[0].Close()
		defer pools[1].Close()
		for _, sh := range shapes {
			for _, pack := range []bool{false, true} {
				w := randMatrix(t, rng, sh.typ, sh.rows, sh.cols)
				if pack && !packs(w) {
					continue
				}
				if !pack && sh.typ != ggml.Q8_0 && (Impl() != "generic" || sh.cols > 4096) {
					continue // genericSubs, portable Go on every implementation: once, small
				}
				const n = 40
				buf := randFloats(rng, n*sh.cols+3, 1)
				x := buf[3:] // not aligned to a vector
				x[7] = 1e4
				clear(x[sh.cols : sh.cols+sh.typ.BlockSize()])
				alone := make([]float32, n*sh.rows)
				for tok := range n {
					pools[0].MatMul(alone[tok*sh.rows:], w, x[tok*sh.cols:], 1)
				}
				const checked = 3
				want, mag := refMatMul(w, x, checked)
				for i := range checked * sh.rows {
					if d := math.Abs(float64(alone[i]) - want[i]); d > 1.2e-7*float64(sh.cols/8+8)*mag[i]+1e-30 {
						t.Fatalf("%v %d×%d packed=%v: token %d row %d = %v, want %v", sh.typ, sh.rows, sh.cols, pack, i/sh.rows, i%sh.rows, alone[i], want[i])
					}
				}
				for _, p := range pools {
					for _, sizes := range calls {
						out := make([]float32, n*sh.rows+5)
						got := out[5:] // not aligned either
						tok := 0
						for _, k := range sizes {
							k = min(k, n-tok)
							p.MatMul(got[tok*sh.rows:], w, x[tok*sh.cols:], k)
							tok += k
						}
						for i := range tok * sh.rows {
							if math.Float32bits(got[i]) != math.Float32bits(alone[i]) {
								t.Fatalf("%v %d×%d packed=%v threads=%d calls %v: token %d row %d = %v, alone %v",
									sh.typ, sh.rows, sh.cols, pack, p.Threads(), sizes, i/sh.rows, i%sh.rows, got[i], alone[i])
							}
						}
					}
				}
			}
		}
	})
}

// TestMatMulsRealShapes computes the projections a layer of a Q4_K_M file runs together
// (Q, K and V at 896 columns in its fallback types; gate and up at 4864 in K-quants)
// in one MatMuls, packed, for several token counts on two threads (see checkMatMuls).
func TestMatMulsRealShapes(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(33, 34))
		pool := NewPool(2)
		defer pool.Close()
		for _, c := range []struct {
			cols  int
			types []ggml.Type
			rows  []int
		}{
			{896, []ggml.Type{ggml.Q5_0, ggml.Q8_0, ggml.IQ4_NL}, []int{896, 128, 136}},
			{4864, []ggml.Type{ggml.Q4_K, ggml.Q6_K, ggml.Q5_K}, []int{93, 128, 48}},
		} {
			ws := make([]*Matrix, len(c.types))
			for i, typ := range c.types {
				ws[i] = randMatrix(t, rng, typ, c.rows[i], c.cols)
				ws[i].Pack()
			}
			for _, n := range []int{1, 5, 12, 17} {
				checkMatMuls(t, pool, ws, randFloats(rng, n*c.cols, 1), n)
			}
		}
	})
}
