package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specd-dev/specd/ggml"
)

// fuzzType picks one of the supported types from a fuzzed byte.
func fuzzType(b byte) ggml.Type { return allTypes[int(b)%len(allTypes)] }

// FuzzDequantizeQuantize decodes arbitrary bytes as a row of each type (the bytes of a
// GGUF tensor are untrusted input), re-encodes the floats, and checks the round trip:
// exact for F32, exact up to NaN quieting for F16, and within the quantization error for
// Q8_0 and Q4_0.
func FuzzDequantizeQuantize(f *testing.F) {
	f.Add([]byte{0x00, 0x3c, 1, 2, 3}, byte(0))
	f.Add(make([]byte, 34), byte(3))
	rng := rand.New(rand.NewPCG(27, 28))
	f.Add(randBlocks(rng, ggml.Q8_0, 16*34), byte(2)) // a group of 16 blocks: packed
	f.Add(randBlocks(rng, ggml.Q8_0, 44*34), byte(2)) // 44 blocks: a last partial group
	f.Fuzz(func(t *testing.T, data []byte, tb byte) {
		typ := fuzzType(tb)
		nblk := len(data) / typ.BlockBytes()
		src := data[:nblk*typ.BlockBytes()]
		n := nblk * typ.BlockSize()
		vals := make([]float32, n)
		if err := Dequantize(typ, vals, src); err != nil {
			t.Fatalf("Dequantize(%v, %d bytes): %v", typ, len(src), err)
		}
		re := make([]byte, len(src))
		if err := Quantize(typ, re, vals); err != nil {
			t.Fatalf("Quantize(%v, %d floats): %v", typ, n, err)
		}
		switch typ {
		case ggml.F32:
			for i := range re {
				if re[i] != src[i] {
					t.Fatalf("F32 round trip changed byte %d: %#02x, want %#02x", i, re[i], src[i])
				}
			}
		case ggml.F16:
			for i := range n {
				h := binary.LittleEndian.Uint16(src[2*i:])
				want := h
				if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
					want |= 0x200 // NaNs come back quiet
				}
				if got := binary.LittleEndian.Uint16(re[2*i:]); got != want {
					t.Fatalf("F16 round trip of %#04x = %#04x, want %#04x", h, got, want)
				}
			}
		case ggml.Q8_0, ggml.Q4_0:
			back := make([]float32, n)
			if err := Dequantize(typ, back, re); err != nil {
				t.Fatal(err)
			}
			for b := range nblk {
				checkRequantized(t, typ, vals[b*ggml.QK:(b+1)*ggml.QK], back[b*ggml.QK:(b+1)*ggml.QK])
			}
			checkPackedRow(t, typ, src, vals)
		}
	})
}

// checkPackedRow multiplies src, one row of typ whose weights are vals, packed (when
// the implementation packs it: tiles for Q8_0 on avx512vnni) and not, by two tokens,
// and checks that the two agree within float32 summation error wherever the product is
// finite.
func checkPackedRow(t *testing.T, typ ggml.Type, src []byte, vals []float32) {
	t.Helper()
	n := len(vals)
	if n == 0 {
		return
	}
	x := make([]float32, 2*n)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	var outs [2][2]float32
	for i, pack := range []bool{false, true} {
		w, err := NewMatrix(typ, 1, n, src)
		if err != nil {
			t.Fatal(err)
		}
		if pack {
			w.Pack()
		}
		fuzzPool.MatMul(outs[i][:], w, x, 2)
	}
	var mag float64
	for _, v := range vals {
		mag += 3 * math.Abs(float64(v))
	}
	tol := 0x1p-20 * float64(n/ggml.QK+8) * mag
	for tok, u := range outs[0] {
		p := outs[1][tok]
		if math.IsInf(mag, 0) || math.IsNaN(mag) || math.IsInf(float64(u), 0) || math.IsNaN(float64(u)) {
			continue
		}
		if d := math.Abs(float64(p) - float64(u)); !(d <= tol) {
			t.Fatalf("%v row of %d: packed product of token %d = %v, unpacked %v", typ, n, tok, p, u)
		}
	}
}

// fuzzPool runs the fuzz targets' products.
var fuzzPool = NewPool(1)

// checkRequantized checks that back, a block re-quantized from vals, is within the
// quantization error of vals. Blocks whose scale leaves the normal fp16 range (where the
// scale itself loses precision or overflows) or that hold non-finite values are skipped.
func checkRequantized(t *testing.T, typ ggml.Type, vals, back []float32) {
	t.Helper()
	var amax float64
	for _, v := range vals {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return
		}
		amax = max(amax, math.Abs(float64(v)))
	}
	div, tol := 127.0, 0.5/127+1.0/1024
	if typ == ggml.Q4_0 {
		div, tol = 8, 1.0/8+1.0/1024
	}
	if d := amax / div; amax != 0 && (d < 1.0/(1<<14) || d > 65000) {
		return
	}
	for j := range vals {
		if e := math.Abs(float64(back[j]) - float64(vals[j])); e > tol*amax {
			t.Fatalf("%v block %v re-quantized to %v: element %d off by %g > %g", typ, vals, back, j, e, tol*amax)
		}
	}
}

// fuzzActivations reads data as float32 activations, as many whole blocks of block
// values as it holds. NaN and Inf, which have no meaningful quantization, read as 0.
func fuzzActivations(data []byte, block int) []float32 {
	x := make([]float32, len(data)/4/block*block)
	for i := range x {
		v := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			v = 0
		}
		x[i] = v
	}
	return x
}

// FuzzQuantizeActivations quantizes arbitrary float32 activations with every
// implementation's quantizer and checks each against quantizeActs.
func FuzzQuantizeActivations(f *testing.F) {
	f.Add(make([]byte, 128))
	f.Fuzz(func(t *testing.T, data []byte) {
		x := fuzzActivations(data, ggml.QK)
		cols := len(x)
		if cols == 0 {
			return
		}
		for _, ks := range impls {
			var got acts
			ks.prep(&got, x, 1, cols)
			checkPrepared(t, ks.name, &got, x, 1, cols)
		}
	})
}
