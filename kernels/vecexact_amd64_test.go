package kernels

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// fma32 returns a·b + c rounded once to float32 (to nearest, ties to even), as a lane
// of VFMADD231PS computes it. The product is exact in float64 (24 + 24 bits); the sum
// is rounded to float64 by rounding to odd, after which rounding to float32, 29 bits
// shorter, is correct (Boldo and Melquiond, "Emulation of FMA and correctly rounded
// sums: proved algorithms using rounding to odd", IEEE TC 2008). Inputs are finite.
func fma32(a, b, c float32) float32 {
	p, z := float64(a)*float64(b), float64(c)
	s := p + z
	// TwoSum: e is the exact error of s.
	bz := s - p
	e := (p - (s - bz)) + (z - bz)
	if bits := math.Float64bits(s); e != 0 && bits&1 == 0 {
		// s is even: the exact sum lies strictly between s and its neighbour on e's
		// side, which is odd.
		if (e > 0) == (s > 0) {
			bits++
		} else {
			bits--
		}
		s = math.Float64frombits(bits)
	}
	return float32(s)
}

// fma32Big is fma32 by exact arithmetic, to check it.
func fma32Big(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	x := new(big.Float).SetPrec(1000).SetFloat64(p)
	x.Add(x, new(big.Float).SetFloat64(float64(c)))
	if x.Sign() == 0 { // IEEE: an exact zero sum is -0 only if both terms are -0
		if math.Signbit(p) && math.Signbit(float64(c)) {
			return float32(math.Copysign(0, -1))
		}
		return 0
	}
	f, _ := x.Float32()
	return f
}

// TestFMA32 checks fma32 against exact arithmetic on random operands, on sums that
// cancel almost entirely, on ties and near-ties of the float32 rounding (a double
// rounding through float64 would get some of them wrong), and on subnormal results.
func TestFMA32(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	f := func() float32 {
		m := rng.Float64() + 1
		return float32(math.Ldexp(m, rng.IntN(60)-30) * float64(1-2*rng.IntN(2)))
	}
	check := func(a, b, c float32) {
		if got, want := fma32(a, b, c), fma32Big(a, b, c); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
	for range 200000 {
		a, b := f(), f()
		check(a, b, f())
		p := float64(a) * float64(b)
		check(a, b, -float32(p))                    // cancels to the product's low bits
		check(a, b, float32(math.Ldexp(p, -25)))    // near a tie of the result
		check(a, b, float32(math.Ldexp(p, -24))*-1) // near a tie, below
		check(a, b, float32(math.Ldexp(p, -60)))    // far below the result's last bit
	}
	tiny := float32(math.SmallestNonzeroFloat32)
	for _, c := range [][3]float32{{tiny, 0.5, 0}, {tiny, 1.5, 0}, {tiny, 0.5, tiny}, {1e-20, 1e-20, 0}, {0, -1, 0}, {0, -1, float32(math.Copysign(0, -1))}, {1, 1, -1}} {
		check(c[0], c[1], c[2])
	}
}

// accumFMA is Accum's arithmetic one rounding at a time: each element adds its rows in
// order, one fused multiply-add each.
func accumFMA(out, v []float32, stride int, w []float32) {
	for i := range out {
		acc := out[i]
		for j, a := range w {
			acc = fma32(a, v[j*stride+i], acc)
		}
		out[i] = acc
	}
}

// scoresFMA is Scores' arithmetic one rounding at a time, for a head dimension that is
// a multiple of 8: lane l of a row sums the products of columns l, l+8, … in order
// with fused multiply-adds from zero, and the lanes add up as
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
func scoresFMA(out, q, k []float32, stride int) {
	for j := range out {
		row := k[j*stride : j*stride+len(q)]
		var l [8]float32
		for c, x := range q {
			l[c%8] = fma32(x, row[c], l[c%8])
		}
		out[j] = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
	}
}

// vecPaths runs f on the vector paths this machine has: with 512-bit registers and
// without.
func vecPaths(t *testing.T, f func(t *testing.T)) {
	if !vecAVX2 {
		t.Skip("no AVX2 and FMA: Scores and Accum take the Go code, whose rounding differs")
	}
	saved := vecAVX512
	defer func() { vecAVX512 = saved }()
	paths := []bool{false}
	if saved {
		paths = append(paths, true)
	}
	for _, wide := range paths {
		vecAVX512 = wide
		t.Run(fmt.Sprintf("avx512=%v", wide), f)
	}
}

// TestScoresAccumExact checks Scores and Accum bitwise against their arithmetic done one
// rounding at a time (accumFMA, scoresFMA), for every head dimension from 8 to 64 in
// steps of 8 (small models' heads, which Accum keeps in registers whole) and a few wider,
// odd row counts and odd strides, with the rows and the output ending at an unreadable
// page: a kernel that reads or writes past them faults.
func TestScoresAccumExact(t *testing.T) {
	vecPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(33, 34))
		hds := []int{8, 16, 24, 32, 40, 48, 56, 64, 72, 96, 120, 200}
		for _, hd := range hds {
			for _, n := range []int{1, 2, 3, 5, 7, 8, 9, 13, 31, 37, 64, 65} {
				for _, stride := range []int{hd, hd + 1, hd + 3, 6*hd + 5} {
					name := fmt.Sprintf("hd=%d n=%d stride=%d", hd, n, stride)
					kv := pageEdge(t, (n-1)*stride+hd)
					for i := range kv {
						kv[i] = rng.Float32()*2 - 1
					}
					q, w := randSlice(rng, hd), randSlice(rng, n)

					out := pageEdge(t, hd)
					copy(out, randSlice(rng, hd))
					want := append([]float32(nil), out...)
					Accum(out, kv, stride, w)
					accumFMA(want, kv, stride, w)
					for i := range want {
						if math.Float32bits(out[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s: Accum[%d] = %v, want %v", name, i, out[i], want[i])
						}
					}

					got := pageEdge(t, n)
					wantS := make([]float32, n)
					Scores(got, q, kv, stride)
					scoresFMA(wantS, q, kv, stride)
					for j := range wantS {
						if math.Float32bits(got[j]) != math.Float32bits(wantS[j]) {
							t.Fatalf("%s: Scores[%d] = %v, want %v", name, j, got[j], wantS[j])
						}
					}
				}
			}
		}
	})
}

// TestAccumManyExact checks Accum2 and Accum4 bitwise against accumFMA for every head
// dimension from 8 to 64 in steps of 8 and a few wider, odd row counts and strides,
// with every output, the values and the weights ending at an unreadable page.
func TestAccumManyExact(t *testing.T) {
	vecPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(35, 36))
		fill := func(n int) []float32 {
			s := pageEdge(t, n)
			copy(s, randSlice(rng, n))
			return s
		}
		check := func(name string, got, want []float32) {
			t.Helper()
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], want[i])
				}
			}
		}
		for _, hd := range []int{8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 128} {
			for _, n := range []int{1, 2, 3, 7, 9, 31, 37, 64, 65} {
				for _, stride := range []int{hd + 1, 4*hd + 3} {
					name := fmt.Sprintf("hd=%d n=%d stride=%d", hd, n, stride)
					v := fill((n-1)*stride + hd)
					var outs, want, ws [4][]float32
					for i := range outs {
						outs[i], ws[i] = fill(hd), fill(n)
						want[i] = append([]float32(nil), outs[i]...)
						accumFMA(want[i], v, stride, ws[i])
					}
					o2 := [2][]float32{append(pageEdge(t, hd)[:0], outs[0]...), append(pageEdge(t, hd)[:0], outs[1]...)}
					Accum2(o2[0], o2[1], v, stride, ws[0], ws[1])
					check(name+": Accum2 out1", o2[0], want[0])
					check(name+": Accum2 out2", o2[1], want[1])
					Accum4(outs[0], outs[1], outs[2], outs[3], v, stride, ws[0], ws[1], ws[2], ws[3])
					for i := range outs {
						check(fmt.Sprintf("%s: Accum4 out%d", name, i+1), outs[i], want[i])
					}
				}
			}
		}
	})
}
