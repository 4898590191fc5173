package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// softmaxLens are the row lengths the Softmax and SwiGLU tests try: every length up to
// 300 (all tail sizes, odd and even), and a few long rows.
func softmaxLens() []int {
	var ns []int
	for n := 1; n <= 300; n++ {
		ns = append(ns, n)
	}
	return append(ns, 511, 512, 1000, 1408)
}

// softmaxInput fills x with one of several value mixes: small, ±100, and rows where
// most entries are -1e4 (far below the maximum, so their exponentials are clamped).
func softmaxInput(rng *rand.Rand, kind int, x []float32) {
	for i := range x {
		switch kind {
		case 0:
			x[i] = rng.Float32()*8 - 4
		case 1:
			x[i] = rng.Float32()*200 - 100
		default:
			switch rng.IntN(4) {
			case 0:
				x[i] = rng.Float32()*200 - 100
			case 1:
				x[i] = rng.Float32() * 1e-3
			default:
				x[i] = -1e4
			}
		}
	}
}

// guard fills the buffer around a row under test; no kernel may write it.
const guard = -12345.5

// guarded returns a buffer holding x at offset off with guard values around it, and the
// view of x inside it; checkGuards reports any guard a kernel overwrote.
func guarded(x []float32, off int) (buf, view []float32) {
	buf = make([]float32, off+len(x)+9)
	for i := range buf {
		buf[i] = guard
	}
	view = buf[off : off+len(x)]
	copy(view, x)
	return buf, view
}

func checkGuards(t *testing.T, name string, buf []float32, off, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < off || i >= off+n) && v != guard {
			t.Fatalf("%s: buffer[%d] (outside the %d elements at %d) = %v, want %v untouched", name, i, n, off, v, float32(guard))
		}
	}
}

func TestExpLane(t *testing.T) {
	for x := float32(-87.3); x < 88.3; x += 0.0071 {
		got, want := float64(expLane(x)), math.Exp(float64(x))
		if rel := math.Abs(got-want) / want; rel > 4e-7 {
			t.Fatalf("expLane(%v) = %v, want %v (relative error %.2g)", x, got, want, rel)
		}
	}
	for _, c := range []struct{ x, want float32 }{
		{-1e4, expLane(expLo)},
		{float32(math.Inf(-1)), expLane(expLo)},
		{float32(math.NaN()), expLane(expLo)},
		{1e4, expLane(expHi)},
		{float32(math.Inf(1)), expLane(expHi)},
	} {
		if got := expLane(c.x); got != c.want {
			t.Errorf("expLane(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	if lo := float64(expLane(expLo)); lo < 0x1p-126 || lo > 0x1.01p-126 {
		t.Errorf("expLane(expLo) = %v, want just above 2^-126", lo)
	}
	if hi := expLane(expHi); math.IsInf(float64(hi), 0) || hi < 2.3e38 {
		t.Errorf("expLane(expHi) = %v, want finite, about 2.4e38", hi)
	}
}

// TestSoftmaxMatchesGeneric checks Softmax against softmaxGeneric bit for bit, at every
// tail size and alignment, that it writes nothing outside x, and that both are within
// float32 rounding of a float64 softmax.
func TestSoftmaxMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var worst float64
	for _, n := range softmaxLens() {
		for kind := range 3 {
			for _, scale := range []float32{0.125, float32(1 / math.Sqrt(96)), 1} {
				x := make([]float32, n)
				softmaxInput(rng, kind, x)
				want := append([]float32(nil), x...)
				softmaxGeneric(want, scale)
				off := n % 8
				buf, got := guarded(x, off)
				Softmax(got, scale)
				name := fmt.Sprintf("Softmax(n=%d, kind=%d, scale=%v)", n, kind, scale)
				checkGuards(t, name, buf, off, n)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s[%d] = %v (%#x), want %v (%#x) as softmaxGeneric", name, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
				}
				worst = max(worst, checkSoftmax64(t, name, x, scale, got))
			}
		}
	}
	t.Logf("largest error against float64, in units of the tolerance: %.3f", worst)
}

// checkSoftmax64 compares got with the float64 softmax of scale·x. The tolerance
// allows 2e-6 relative error, plus the rounding of scale·x[i] - max in float32 (which
// moves the exponent by up to 2^-24 of its terms), plus 2e-38 for clamped weights. It
// returns the largest error as a fraction of the tolerance.
func checkSoftmax64(t *testing.T, name string, x []float32, scale float32, got []float32) float64 {
	t.Helper()
	s := make([]float64, len(x))
	m := math.Inf(-1)
	for i, v := range x {
		s[i] = float64(scale) * float64(v)
		m = max(m, s[i])
	}
	var sum float64
	for _, v := range s {
		sum += math.Exp(v - m)
	}
	var worst float64
	for i, v := range s {
		want := math.Exp(v-m) / sum
		tol := want*(2e-6+0x1p-23*(math.Abs(v)+math.Abs(m))) + 2e-38
		err := math.Abs(float64(got[i]) - want)
		if err > tol {
			t.Fatalf("%s[%d] = %v, want %v (float64), error %.3g > %.3g", name, i, got[i], want, err, tol)
		}
		worst = max(worst, err/tol)
	}
	return worst
}

func TestSoftmaxUniformRow(t *testing.T) {
	// A row of equal values is uniform whatever its level.
	for _, v := range []float32{0, -1e4, 1e4, 3.5} {
		x := []float32{v, v, v, v, v, v, v, v, v, v}
		Softmax(x, 1)
		for i, p := range x {
			if p != 0.1 {
				t.Fatalf("Softmax(10 × %v)[%d] = %v, want 0.1", v, i, p)
			}
		}
	}
}

// TestSwiGLUMatchesGeneric checks SwiGLU against swigluGeneric bit for bit, at every
// tail size and alignment, that it writes nothing outside g and leaves u alone, and that
// both are within float32 rounding of float64 math.
func TestSwiGLUMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	special := []float32{0, 100, -100, 1e4, -1e4, 88, -88, 1e-30, 1e-40, -1e-40}
	var worst float64
	for _, n := range softmaxLens() {
		for kind := range 2 {
			g := make([]float32, n)
			u := make([]float32, n+3)
			for i := range g {
				g[i] = rng.Float32()*20 - 10
				if kind == 1 && rng.IntN(3) == 0 {
					g[i] = special[rng.IntN(len(special))]
				}
			}
			for i := range u {
				u[i] = rng.Float32()*4 - 2
			}
			u0 := append([]float32(nil), u...)
			want := append([]float32(nil), g...)
			swigluGeneric(want, u)
			off := n % 8
			buf, got := guarded(g, off)
			SwiGLU(got, u)
			name := fmt.Sprintf("SwiGLU(n=%d, kind=%d)", n, kind)
			checkGuards(t, name, buf, off, n)
			for i := range u {
				if u[i] != u0[i] {
					t.Fatalf("%s changed u[%d] from %v to %v", name, i, u0[i], u[i])
				}
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s[%d] = %v (%#x), want %v (%#x) as swigluGeneric", name, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
				gv, uv := float64(g[i]), float64(u[i])
				w := gv / (1 + math.Exp(-gv)) * uv
				// exp(-g) is clamped at about 2.4e38, so for g below -88.4 the result is
				// g·u/2.4e38 rather than about g·u·e^g: off by at most 5e-39·|g·u|.
				tol := 1e-6*math.Abs(w) + 5e-39*math.Abs(gv*uv) + 1e-44
				err := math.Abs(float64(got[i]) - w)
				if err > tol {
					t.Fatalf("%s[%d] = %v, want %v (float64; g=%v, u=%v), error %.3g > %.3g", name, i, got[i], w, g[i], u[i], err, tol)
				}
				worst = max(worst, err/tol)
			}
		}
	}
	t.Logf("largest error against float64, in units of the tolerance: %.3f", worst)
}

func BenchmarkSoftmax(b *testing.B) {
	for _, n := range []int{100, 512} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			x := make([]float32, n)
			softmaxInput(rng, 0, x)
			scale := float32(1 / math.Sqrt(64))
			// Softmax in place: from the second call on the row is a distribution,
			// which keeps every value normal.
			for b.Loop() {
				Softmax(x, scale)
			}
		})
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	const n = 1408
	rng := rand.New(rand.NewPCG(1, 2))
	g, u := make([]float32, n), make([]float32, n)
	for i := range g {
		g[i] = rng.Float32()*8 - 4
		// u = 1/sigmoid(g) makes g a fixed point of SwiGLU in place (up to rounding),
		// so the inputs stay the same without a copy per call.
		u[i] = float32(1 + math.Exp(-float64(g[i])))
	}
	for b.Loop() {
		SwiGLU(g, u)
	}
}
