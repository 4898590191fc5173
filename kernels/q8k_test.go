package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specd-dev/specd/ggml"
)

// ggmlQ8K is one super-block as ggml's quantize_row_q8_K_ref leaves it.
type ggmlQ8K struct {
	d     float32
	qs    [ggml.QKK]int8
	bsums [16]int16
}

// ggmlQuantizeQ8K transcribes quantize_row_q8_K_ref: the value of largest magnitude
// (the first, sign included) sets iscale = -127/max, each q is nearest_int(iscale·x)
// (float32 product, then round half to even by ggml's 1.5·2^23 trick) capped at 127,
// bsums are the sums of 16 values, and d = 1/iscale. An all-zero super-block is d = 0,
// q = 0 (ggml leaves its bsums as they were; zero here).
func ggmlQuantizeQ8K(x []float32) []ggmlQ8K {
	out := make([]ggmlQ8K, len(x)/ggml.QKK)
	for i := range out {
		xb := x[i*ggml.QKK : (i+1)*ggml.QKK]
		var mx, amax float32
		for _, v := range xb {
			if a := float32(math.Abs(float64(v))); a > amax {
				amax, mx = a, v
			}
		}
		if amax == 0 {
			continue
		}
		iscale := -127 / mx
		y := &out[i]
		for j, v := range xb {
			p := float32(iscale * v)
			val := p + 12582912
			bits := int32(math.Float32bits(val))
			y.qs[j] = int8(min(127, bits&0x007fffff-0x00400000))
		}
		for j := range 16 {
			var s int16
			for _, q := range y.qs[16*j : 16*j+16] {
				s += int16(q)
			}
			y.bsums[j] = s
		}
		y.d = 1 / iscale
	}
	return out
}

// q8kInputs returns n tokens of cols activations with the cases that matter to Q8_K:
// an all-zero super-block, one whose largest value is negative, a huge outlier, exact
// ties of the rounding (the scale is 1 where 127 is the largest value) and random values.
func q8kInputs(rng *rand.Rand, n, cols int) []float32 {
	x := randFloats(rng, n*cols, 1)
	clear(x[:ggml.QKK])
	if n*cols > 2*ggml.QKK {
		x[ggml.QKK+7] = -300
		copy(x[2*ggml.QKK-8:], []float32{127, 2.5, -3.5, 0.5, -0.5, 1.5, -126.5, 0.49999997})
	}
	if n*cols > 3*ggml.QKK {
		x[2*ggml.QKK+1] = 1e30
	}
	return x
}

// TestQuantizeActsQ8K: quantizeActsQ8K gives, per super-block, ggml's values and scale
// up to one sign for both (ggml divides by the signed maximum), so that every product
// d·q, and every dot product, is ggml's.
func TestQuantizeActsQ8K(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, cols := range []int{256, 512, 1024} {
		const n = 3
		x := q8kInputs(rng, n, cols)
		var a acts
		quantizeActsQ8K(&a, x, n, cols)
		nb := cols / ggml.QK
		for tok := range n {
			want := ggmlQuantizeQ8K(x[tok*cols : (tok+1)*cols])
			for s, w := range want {
				sign := int8(1)
				d := a.d[tok*nb+8*s]
				if d != 0 && w.d != 0 && (d < 0) != (w.d < 0) {
					sign = -1
				}
				if d*float32(sign) != w.d && !(d == 0 && w.d == 0) {
					t.Fatalf("cols=%d token %d super-block %d: d = %v, ggml %v", cols, tok, s, d, w.d)
				}
				for b := range 8 {
					if a.d[tok*nb+8*s+b] != d {
						t.Fatalf("cols=%d token %d super-block %d: block %d scale %v, want %v", cols, tok, s, b, a.d[tok*nb+8*s+b], d)
					}
				}
				for j, wq := range w.qs {
					if g := int8(a.q[(tok*nb+8*s)*ggml.QK+j]); g*sign != wq {
						t.Fatalf("cols=%d token %d super-block %d: q[%d] = %d, ggml %d (x = %v)", cols, tok, s, j, g, wq, x[tok*cols+s*ggml.QKK+j])
					}
				}
			}
		}
	}
}

// TestPreparedQ8K checks the Q8_K quantizers of the assembly sets against
// quantizeActsQ8K: prepK in the paired layout of prep, prepTokPK in the packed layout
// (values, scales, and the corrections TestPreparedPacked describes).
func TestPreparedQ8K(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, cols := range []int{256, 512, 768, 1024, 2048} {
		const n = 3
		x := q8kInputs(rng, n, cols)
		x[cols+5] = 1e-39 // a denormal maximum: 127/amax overflows
		var want acts
		quantizeActsQ8K(&want, x, n, cols)
		for _, ks := range impls {
			if ks.prepK != nil {
				var got acts
				ks.prepK(&got, x, n, cols)
				checkPairedLayout(t, ks.name+" prepK", &got, &want, n, cols)
			}
			if ks.prepTokPK != nil {
				var got acts
				ks.sizeP(&got, n, cols)
				for tok := range n {
					ks.prepTokPK(&got, x, tok, cols)
				}
				checkPackedLayout(t, ks.name+" prepTokPK", &got, &want, n, cols)
			}
		}
	}
}

// FuzzQuantizeQ8K quantizes arbitrary float32 activations to Q8_K with every
// implementation's quantizers and checks each against quantizeActsQ8K, and that against
// ggml's loop.
func FuzzQuantizeQ8K(f *testing.F) {
	f.Add(make([]byte, 4*ggml.QKK))
	seed := make([]byte, 8*ggml.QKK)
	for i := range 2 * ggml.QKK {
		binary.LittleEndian.PutUint32(seed[4*i:], math.Float32bits(float32(i%37)-18.5))
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		x := fuzzActivations(data, ggml.QKK)
		cols := len(x)
		if cols == 0 {
			return
		}
		var want acts
		quantizeActsQ8K(&want, x, 1, cols)
		for s, w := range ggmlQuantizeQ8K(x) {
			d := want.d[8*s]
			for j, wq := range w.qs {
				g := int8(want.q[s*ggml.QKK+j])
				// Up to the common sign, unless 127/amax overflowed: ggml's Inf and NaN
				// products round to a q of 0 mod 256 too.
				if g != wq && g != -wq {
					t.Fatalf("super-block %d: q[%d] = %d, ggml %d (d %v, ggml %v)", s, j, g, wq, d, w.d)
				}
			}
		}
		for _, ks := range impls {
			if ks.prepK != nil {
				var got acts
				ks.prepK(&got, x, 1, cols)
				checkPairedLayout(t, ks.name+" prepK", &got, &want, 1, cols)
			}
			if ks.prepTokPK != nil {
				var got acts
				ks.sizeP(&got, 1, cols)
				ks.prepTokPK(&got, x, 0, cols)
				checkPackedLayout(t, ks.name+" prepTokPK", &got, &want, 1, cols)
			}
		}
	})
}
