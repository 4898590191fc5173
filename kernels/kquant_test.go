package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
)

// ggmlDequantize is a transcription of ggml's dequantize_row_* loops for the sub types,
// a super-block at a time in ggml's own order, independent of decodeSub's per-sub-block
// decomposition. Products are rounded to float32 one at a time, as in C without FMA
// contraction.
func ggmlDequantize(t ggml.Type, y []float32, x []byte) {
	h := func(b []byte) float32 { return FP16ToFP32(binary.LittleEndian.Uint16(b)) }
	bb := t.BlockBytes()
	for i := range len(y) / t.BlockSize() {
		b := x[i*bb : (i+1)*bb]
		y := y[i*t.BlockSize() : (i+1)*t.BlockSize()]
		switch t {
		case ggml.Q5_0, ggml.Q5_1:
			d, m, qh, qs := h(b), float32(0), binary.LittleEndian.Uint32(b[2:]), b[6:22]
			if t == ggml.Q5_1 {
				m, qh, qs = h(b[2:]), binary.LittleEndian.Uint32(b[4:]), b[8:24]
			}
			for j := range 16 {
				xh0 := byte((qh>>j)<<4) & 0x10
				xh1 := byte(qh>>(j+12)) & 0x10
				x0, x1 := int32(qs[j]&0x0f|xh0), int32(qs[j]>>4|xh1)
				if t == ggml.Q5_0 {
					y[j], y[j+16] = float32(x0-16)*d, float32(x1-16)*d
				} else {
					y[j], y[j+16] = float32(float32(x0)*d)+m, float32(float32(x1)*d)+m
				}
			}
		case ggml.IQ4_NL:
			d := h(b)
			for j := range 16 {
				y[j], y[j+16] = d*float32(iq4nlValues[b[2+j]&15]), d*float32(iq4nlValues[b[2+j]>>4])
			}
		case ggml.Q2_K:
			d, dmin := h(b[80:]), h(b[82:])
			q, sc, is, k := b[16:], b[:16], 0, 0
			for n := 0; n < 256; n += 128 {
				shift := 0
				for range 4 {
					for half := range 2 {
						s := sc[is]
						is++
						dl, ml := d*float32(s&0xf), dmin*float32(s>>4)
						for l := range 16 {
							y[k] = float32(dl*float32(int8(q[l+16*half]>>shift)&3)) - ml
							k++
						}
					}
					shift += 2
				}
				q = q[32:]
			}
		case ggml.Q3_K:
			d := h(b[108:])
			hm, q, sc := b[:32], b[32:], b[96:108]
			var aux [4]uint32
			for j := range 3 {
				aux[j] = binary.LittleEndian.Uint32(sc[4*j:])
			}
			const km1, km2 = 0x03030303, 0x0f0f0f0f
			tmp := aux[2]
			aux[2] = (aux[0]>>4)&km2 | ((tmp>>4)&km1)<<4
			aux[3] = (aux[1]>>4)&km2 | ((tmp>>6)&km1)<<4
			aux[0] = aux[0]&km2 | ((tmp>>0)&km1)<<4
			aux[1] = aux[1]&km2 | ((tmp>>2)&km1)<<4
			var scales [16]int8
			for j := range 16 {
				scales[j] = int8(aux[j/4] >> (8 * (j % 4)))
			}
			m, is, k := byte(1), 0, 0
			for n := 0; n < 256; n += 128 {
				shift := 0
				for range 4 {
					for half := range 2 {
						dl := d * float32(scales[is]-32)
						is++
						for l := 16 * half; l < 16*half+16; l++ {
							v := int8(q[l]>>shift) & 3
							if hm[l]&m == 0 {
								v -= 4
							}
							y[k] = dl * float32(v)
							k++
						}
					}
					shift += 2
					m <<= 1
				}
				q = q[32:]
			}
		case ggml.Q4_K, ggml.Q5_K:
			d, dmin, sc := h(b), h(b[2:]), b[4:16]
			ql, qh := b[16:], b[16:48]
			if t == ggml.Q5_K {
				ql = b[48:]
			}
			is, k := 0, 0
			u1, u2 := byte(1), byte(2)
			for j := 0; j < 256; j += 64 {
				s1, m1 := kScaleMin(is, sc)
				s2, m2 := kScaleMin(is+1, sc)
				d1, mm1 := d*float32(s1), dmin*float32(m1)
				d2, mm2 := d*float32(s2), dmin*float32(m2)
				for l := range 32 {
					v := ql[l] & 0xf
					if t == ggml.Q5_K && qh[l]&u1 != 0 {
						v += 16
					}
					y[k+l] = float32(d1*float32(v)) - mm1
				}
				for l := range 32 {
					v := ql[l] >> 4
					if t == ggml.Q5_K && qh[l]&u2 != 0 {
						v += 16
					}
					y[k+32+l] = float32(d2*float32(v)) - mm2
				}
				k += 64
				ql = ql[32:]
				is += 2
				u1 <<= 2
				u2 <<= 2
			}
		case ggml.Q6_K:
			d := h(b[208:])
			ql, qh, sc := b[:128], b[128:192], b[192:208]
			for n := 0; n < 256; n += 128 {
				for l := range 32 {
					is := l / 16
					q1 := int8(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
					q2 := int8(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
					q3 := int8(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
					q4 := int8(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
					y[n+l] = d * float32(int8(sc[is])) * float32(q1)
					y[n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
					y[n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
					y[n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
				}
				ql, qh, sc = ql[64:], qh[32:], sc[8:]
			}
		default:
			panic("ggmlDequantize of " + t.String())
		}
	}
}

// sameFloats reports the first index where got and want differ as float32 values (NaNs
// equal any NaN, and -0 equals +0: C's d·0 - 0 and Go's d·0 + -0 may differ in sign), or -1.
func sameFloats(got, want []float32) int {
	for i := range got {
		g, w := got[i], want[i]
		if g != w && !(g != g && w != w) {
			return i
		}
	}
	return -1
}

func TestDequantizeMatchesGGML(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, typ := range subTypes {
		if typ == ggml.BF16 {
			continue
		}
		for _, nblk := range []int{1, 2, 7} {
			src := randBlocks(rng, typ, nblk*typ.BlockBytes())
			got := make([]float32, nblk*typ.BlockSize())
			want := make([]float32, len(got))
			if err := Dequantize(typ, got, src); err != nil {
				t.Fatal(err)
			}
			ggmlDequantize(typ, want, src)
			if i := sameFloats(got, want); i >= 0 {
				t.Fatalf("Dequantize(%v) of %d random blocks: [%d] = %v, ggml %v", typ, nblk, i, got[i], want[i])
			}
		}
	}
}

func TestBF16(t *testing.T) {
	tests := []struct {
		f    float32
		bits uint16
	}{
		{1, 0x3f80}, {-2, 0xc000}, {0, 0}, {float32(math.Inf(1)), 0x7f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, to even
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, to even (up)
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{math.Float32frombits(0x7f800001), 0x7fc0}, // signalling NaN made quiet
	}
	for _, tt := range tests {
		if got := fp32ToBF16(tt.f); got != tt.bits {
			t.Errorf("fp32ToBF16(%#08x) = %#04x, want %#04x", math.Float32bits(tt.f), got, tt.bits)
		}
	}
	src := []byte{0x80, 0x3f, 0x00, 0xc0}
	got := make([]float32, 2)
	if err := Dequantize(ggml.BF16, got, src); err != nil || got[0] != 1 || got[1] != -2 {
		t.Errorf("Dequantize(BF16, % x) = %v, %v, want [1 -2]", src, got, err)
	}
}

// TestRealKQuantTensors reads the target's Q4_K_M requantization (Q4_K, Q6_K and Q5_0
// tensors) and checks each tensor against the Q8_0 file it was made from: the weights
// must be the same up to the quantization error of their type (a wrong layout would be
// off by the weights' own size), dequantized the ggml way, and their packed products
// must match the float64 reference.
func TestRealKQuantTensors(t *testing.T) {
	kq := readTestGGUF(t, testmodels.ForTest(t, "specd-target-q4_k_m.gguf"))
	q8 := readTestGGUF(t, testmodels.ForTest(t, "specd-target-q8_0.gguf"))
	// Relative RMS error of each type against the Q8_0 weights, from its bits per weight
	// (Q8_0's own error is an order of magnitude below these).
	maxErr := map[ggml.Type]float64{ggml.Q4_K: 0.12, ggml.Q5_0: 0.08, ggml.Q6_K: 0.04, ggml.Q8_0: 0.01}
	seen := map[ggml.Type]int{}
	pool := NewPool(2)
	defer pool.Close()
	rng := rand.New(rand.NewPCG(23, 24))
	for name, tk := range kq {
		if tk.Type == ggml.F32 {
			continue
		}
		t8, ok := q8[name]
		if !ok {
			t.Fatalf("tensor %s of the Q4_K_M file is not in the Q8_0 file", name)
		}
		limit, ok := maxErr[tk.Type]
		if !ok {
			t.Fatalf("tensor %s has type %v, want Q4_K, Q6_K, Q5_0 or Q8_0", name, tk.Type)
		}
		seen[tk.Type]++
		cols, rows := tk.Dims[0], len(t8.Data)/t8.Type.BlockBytes()*ggml.QK/tk.Dims[0]
		got := make([]float32, rows*cols)
		ref := make([]float32, rows*cols)
		want := make([]float32, rows*cols)
		if err := Dequantize(tk.Type, got, tk.Data); err != nil {
			t.Fatal(err)
		}
		if tk.Type != ggml.Q8_0 {
			ggmlDequantize(tk.Type, ref, tk.Data)
			if i := sameFloats(got, ref); i >= 0 {
				t.Fatalf("%s (%v): Dequantize [%d] = %v, ggml's loop %v", name, tk.Type, i, got[i], ref[i])
			}
		}
		if err := Dequantize(ggml.Q8_0, want, t8.Data); err != nil {
			t.Fatal(err)
		}
		var se, sw float64
		for i, v := range got {
			d := float64(v - want[i])
			se += d * d
			sw += float64(want[i]) * float64(want[i])
		}
		if e := math.Sqrt(se / sw); e > limit {
			t.Errorf("%s (%v): relative RMS difference from the Q8_0 weights %.4f, want ≤ %g", name, tk.Type, e, limit)
		}
		if rows*cols < 1<<17 {
			continue
		}
		w, err := NewMatrix(tk.Type, rows, cols, tk.Data)
		if err != nil {
			t.Fatal(err)
		}
		w.Pack()
		n := 3
		x := randFloats(rng, n*cols, 1)
		wantP, mag := refMatMul(w, x, n)
		out := make([]float32, n*rows)
		pool.MatMul(out, w, x, n)
		tol := 1.2e-7 * float64(cols/8+8)
		for i := range out {
			if d := math.Abs(float64(out[i]) - wantP[i]); d > tol*mag[i] {
				t.Fatalf("%s (%v, packed=%v): out[%d] = %v, want %v", name, tk.Type, w.Packed(), i, out[i], wantP[i])
			}
		}
	}
	for _, typ := range []ggml.Type{ggml.Q4_K, ggml.Q6_K, ggml.Q5_0} {
		if seen[typ] == 0 {
			t.Errorf("no %v tensor in the Q4_K_M file", typ)
		}
	}
	t.Logf("tensors checked: %v", seen)
}

// FuzzDecodeBlocks decodes arbitrary bytes (a GGUF tensor's bytes are untrusted input) as
// rows of each sub type: Dequantize must equal ggml's loops, and a packed and an unpacked
// product of them must run without a panic, to a NaN or Inf at worst.
func FuzzDecodeBlocks(f *testing.F) {
	f.Add(make([]byte, 210), byte(1))
	f.Add([]byte{0x00, 0x3c, 0x00, 0xbc, 1, 2, 3, 4, 0xff, 0xfe, 0x80, 0x7f, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, byte(6))
	rng := rand.New(rand.NewPCG(25, 26))
	for i, typ := range subTypes {
		f.Add(randBlocks(rng, typ, 2*typ.BlockBytes()), byte(i))
	}
	pool := NewPool(1)
	f.Cleanup(pool.Close)
	f.Fuzz(func(t *testing.T, data []byte, tb byte) {
		typ := subTypes[int(tb)%len(subTypes)]
		nblk := len(data) / typ.BlockBytes()
		if nblk == 0 {
			return
		}
		src := data[:nblk*typ.BlockBytes()]
		n := nblk * typ.BlockSize()
		got := make([]float32, n)
		if err := Dequantize(typ, got, src); err != nil {
			t.Fatalf("Dequantize(%v, %d bytes): %v", typ, len(src), err)
		}
		if typ != ggml.BF16 {
			want := make([]float32, n)
			ggmlDequantize(typ, want, src)
			if i := sameFloats(got, want); i >= 0 {
				t.Fatalf("Dequantize(%v) [%d] = %v, ggml %v", typ, i, got[i], want[i])
			}
		}
		for _, pack := range []bool{false, true} {
			w, err := NewMatrix(typ, 1, n, src)
			if err != nil {
				t.Fatal(err)
			}
			if pack {
				w.Pack()
			}
			x := make([]float32, 2*n)
			for i := range x {
				x[i] = float32(i%7) - 3
			}
			out := make([]float32, 2)
			pool.MatMul(out, w, x, 2)
		}
	})
}
