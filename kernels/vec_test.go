package kernels

import (
	"fmt"
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

// TestScoresRowsIndependent checks that a row's score does not depend on how many rows
// one call takes (the kernel goes eight, four and one at a time): attention relies on it
// for batch invariance.
func TestScoresRowsIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, hd := range []int{8, 64, 72, 128} {
		const n = 29
		stride := hd + 8
		q := make([]float32, hd)
		kv := make([]float32, n*stride)
		for i := range q {
			q[i] = rng.Float32()*2 - 1
		}
		for i := range kv {
			kv[i] = rng.Float32()*2 - 1
		}
		for lo := range n {
			all := make([]float32, n-lo)
			Scores(all, q, kv[lo*stride:], stride)
			for j := range all {
				one := make([]float32, 1)
				Scores(one, q, kv[(lo+j)*stride:], stride)
				if math.Float32bits(one[0]) != math.Float32bits(all[j]) {
					t.Fatalf("hd=%d: row %d alone = %v, among %d rows = %v", hd, lo+j, one[0], n-lo, all[j])
				}
			}
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// TestScores2 checks the two-query scores against the reference, and that a score
// depends only on its own query and key row: not on the other query, nor on how many
// rows the call takes (attention's batch invariance rests on it).
func TestScores2(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, hd := range []int{8, 16, 32, 64, 72, 128} {
		const n = 29
		stride := hd + 16
		q1, q2, q3 := randSlice(rng, hd), randSlice(rng, hd), randSlice(rng, hd)
		kv := randSlice(rng, n*stride)
		for lo := range n {
			m := n - lo
			a1, a2 := make([]float32, m), make([]float32, m)
			Scores2(a1, a2, q1, q2, kv[lo*stride:], stride)
			w1, w2 := make([]float32, m), make([]float32, m)
			scoresGeneric(w1, q1, kv[lo*stride:], stride)
			scoresGeneric(w2, q2, kv[lo*stride:], stride)
			for j := range m {
				if math.Abs(float64(a1[j]-w1[j])) > 1e-4 || math.Abs(float64(a2[j]-w2[j])) > 1e-4 {
					t.Fatalf("hd=%d: Scores2 row %d = %v, %v, want %v, %v", hd, lo+j, a1[j], a2[j], w1[j], w2[j])
				}
				one1, one3 := make([]float32, 1), make([]float32, 1)
				Scores2(one1, one3, q1, q3, kv[(lo+j)*stride:], stride)
				if math.Float32bits(one1[0]) != math.Float32bits(a1[j]) {
					t.Fatalf("hd=%d: row %d alone with another query = %v, among %d rows = %v", hd, lo+j, one1[0], m, a1[j])
				}
			}
		}
	}
}

// TestAccumManyMatchesAccum checks that the two- and four-output weighted sums are
// bitwise so many Accum calls.
func TestAccumManyMatchesAccum(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, k := range []struct {
		name string
		outs int
		f    func(o, w [][]float32, v []float32, stride int)
	}{
		{"Accum2", 2, func(o, w [][]float32, v []float32, stride int) { Accum2(o[0], o[1], v, stride, w[0], w[1]) }},
		{"Accum4", 4, func(o, w [][]float32, v []float32, stride int) {
			Accum4(o[0], o[1], o[2], o[3], v, stride, w[0], w[1], w[2], w[3])
		}},
	} {
		outs := k.outs
		for _, hd := range []int{8, 16, 32, 48, 64, 80, 128, 200, 272} {
			for _, n := range []int{1, 2, 7, 32, 64} {
				stride := hd + 16
				kv := randSlice(rng, n*stride)
				o, r, w := make([][]float32, outs), make([][]float32, outs), make([][]float32, outs)
				for i := range o {
					w[i], o[i] = randSlice(rng, n), randSlice(rng, hd)
					r[i] = append([]float32(nil), o[i]...)
				}
				k.f(o, w, kv, stride)
				for i := range r {
					Accum(r[i], kv, stride, w[i])
					for j := range hd {
						if math.Float32bits(o[i][j]) != math.Float32bits(r[i][j]) {
							t.Fatalf("hd=%d n=%d: %s output %d [%d] = %v, want %v as Accum", hd, n, k.name, i, j, o[i][j], r[i][j])
						}
					}
				}
			}
		}
	}
}

// BenchmarkAttention times, for one head of the target (64 dimensions) against a block
// of 64 cached positions, the scores (rows packed, or 256 floats apart as in the cache)
// and the weighted sum of the values.
func BenchmarkAttention(b *testing.B) {
	const hd, n = 64, 64
	block := func(stride int) []float32 {
		kv := make([]float32, n*stride)
		for i := range kv {
			kv[i] = float32(i%7) - 3
		}
		return kv
	}
	q, w, scores, out := make([]float32, hd), make([]float32, n), make([]float32, n), make([]float32, hd)
	for _, stride := range []int{64, 256} {
		kv := block(stride)
		b.Run(fmt.Sprintf("scores/stride=%d", stride), func(b *testing.B) {
			for b.Loop() {
				Scores(scores, q, kv, stride)
			}
		})
	}
	kv := block(256)
	q2, scores2 := make([]float32, hd), make([]float32, n)
	b.Run("scores2/stride=256", func(b *testing.B) {
		for b.Loop() {
			Scores2(scores, scores2, q, q2, kv, 256)
		}
	})
	b.Run("accum/stride=256", func(b *testing.B) {
		for b.Loop() {
			Accum(out, kv, 256, w)
		}
	})
	out2 := make([]float32, hd)
	b.Run("accum2/stride=256", func(b *testing.B) {
		for b.Loop() {
			Accum2(out, out2, kv, 256, w, w)
		}
	})
}

func TestScaleMulMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for n := range 40 {
		x, w := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], w[i] = rng.Float32()*8-4, rng.Float32()*2-1
		}
		s := rng.Float32()
		got, want := make([]float32, n), make([]float32, n)
		ScaleMul(got, x, w, s)
		scaleMulGeneric(want, x, w, s)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d: ScaleMul[%d] = %v, want %v", n, i, got[i], want[i])
			}
		}
	}
}

func TestRotateMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for n := range 40 {
		v, cs, sn := make([]float32, n+1), make([]float32, n), make([]float32, n)
		for i := range v {
			v[i] = rng.Float32()*8 - 4
		}
		for i := 0; i+1 < n; i += 2 {
			s, c := math.Sincos(rng.Float64() * 6)
			cs[i], cs[i+1], sn[i], sn[i+1] = float32(c), float32(c), -float32(s), float32(s)
		}
		got, want := append([]float32(nil), v...), append([]float32(nil), v...)
		Rotate(got, cs, sn)
		rotateGeneric(want, cs, sn)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d: Rotate[%d] = %v, want %v", n, i, got[i], want[i])
			}
		}
	}
}

// TestHalfRows converts every fp16 bit pattern, in rows of odd widths and strides, with
// HalfRows and with its Go reference, and checks each against FP16ToFP32 (bitwise; a
// NaN must stay a NaN) and that nothing around the rows is written.
func TestHalfRows(t *testing.T) {
	all := make([]uint16, 1<<16)
	for i := range all {
		all[i] = uint16(i)
	}
	for _, impl := range []struct {
		name string
		f    func(dst []float32, dstStride int, src []uint16, srcStride, rows, width int)
	}{{"HalfRows", HalfRows}, {"halfRowsGeneric", halfRowsGeneric}} {
		testHalfRows(t, impl.name, impl.f, all)
	}
}

func testHalfRows(t *testing.T, name string, conv func(dst []float32, dstStride int, src []uint16, srcStride, rows, width int), all []uint16) {
	for _, width := range []int{1, 5, 15, 16, 17, 64, 100} {
		srcStride, dstStride := width+3, width+7
		for lo := 0; lo < len(all); lo += 40 * srcStride {
			rows := min(40, (len(all)-lo)/srcStride)
			if rows == 0 {
				continue
			}
			src := all[lo : lo+(rows-1)*srcStride+width]
			dst := make([]float32, rows*dstStride)
			for i := range dst {
				dst[i] = -7
			}
			conv(dst, dstStride, src, srcStride, rows, width)
			for i, got := range dst {
				r, c := i/dstStride, i%dstStride
				if c >= width {
					if got != -7 {
						t.Fatalf("width %d: %s wrote %v past row %d", width, name, got, r)
					}
					continue
				}
				h := src[r*srcStride+c]
				want := FP16ToFP32(h)
				if math.Float32bits(got) != math.Float32bits(want) && !(math.IsNaN(float64(got)) && math.IsNaN(float64(want))) {
					t.Fatalf("width %d: %s(%#04x) = %v, want %v", width, name, h, got, want)
				}
			}
		}
	}
}
