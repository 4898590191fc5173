package kernels

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/specd-dev/specd/ggml"
)

// Block layouts, as in ggml (all little-endian):
//
//	Q8_0: d fp16, then 32 int8 q;             x[j] = d·q[j]
//	Q4_0: d fp16, then 16 bytes of nibbles;   x[j] = d·(lo(qs[j])-8), x[j+16] = d·(hi(qs[j])-8)

// checkSizes reports whether n elements of t fit exactly in nbytes.
func checkSizes(t ggml.Type, n, nbytes int) error {
	rb, err := t.RowBytes(n)
	if err != nil {
		return err
	}
	if rb != nbytes {
		return fmt.Errorf("%d elements of %v take %d bytes, have %d", n, t, rb, nbytes)
	}
	return nil
}

// ErrNotQuantizable means specd reads and computes with a type but cannot yet produce it
// (the K-quants, Q5_0, Q5_1, IQ4_NL).
var ErrNotQuantizable = errors.New("not supported yet")

// CanQuantize reports whether Quantize can produce type t.
func CanQuantize(t ggml.Type) bool {
	switch t {
	case ggml.F32, ggml.F16, ggml.BF16, ggml.Q8_0, ggml.Q4_0:
		return true
	}
	return false
}

// Quantize encodes src into dst in the GGUF layout of t. len(src) must be a multiple of
// t.BlockSize() and len(dst) exactly t.RowBytes(len(src)). Q8_0 and Q4_0 produce the bytes
// of llama.cpp's quantize_row_q8_0_ref and quantize_row_q4_0_ref; F16 rounds to nearest
// even, BF16 as ggml does. It returns an error for an unsupported type or mismatched sizes,
// and ErrNotQuantizable for a type it can read but not produce.
func Quantize(t ggml.Type, dst []byte, src []float32) error {
	if err := checkSizes(t, len(src), len(dst)); err != nil {
		return err
	}
	switch t {
	case ggml.F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case ggml.F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], FP32ToFP16(v))
		}
	case ggml.Q8_0:
		for b := 0; b < len(src)/ggml.QK; b++ {
			quantizeBlockQ8(dst[b*34:(b+1)*34], src[b*ggml.QK:(b+1)*ggml.QK])
		}
	case ggml.Q4_0:
		for b := 0; b < len(src)/ggml.QK; b++ {
			quantizeBlockQ4(dst[b*18:(b+1)*18], src[b*ggml.QK:(b+1)*ggml.QK])
		}
	case ggml.BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], fp32ToBF16(v))
		}
	default:
		return fmt.Errorf("quantizing to %v: %w", t, ErrNotQuantizable)
	}
	return nil
}

// q8Scale returns the Q8_0 scale of a block, d = amax/127, and its inverse, as
// quantize_row_q8_0_ref computes them in float32. The inverse is 0 for an all-zero block
// and for a block so small that 1/d overflows (its fp16 scale is 0 anyway); there C
// converts ±Inf or NaN to int8, which x86 turns into 0, the same bytes.
func q8Scale(x []float32) (d, id float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d = amax / 127
	if d != 0 {
		id = 1 / d
	}
	if math.IsInf(float64(id), 0) {
		id = 0
	}
	return d, id
}

// roundAway rounds half away from zero, as C's roundf, for |v| < 128. Adding ±0.5 in
// float64 is exact for a float32 v, so truncating the sum rounds correctly.
func roundAway(v float32) int8 {
	if v < 0 {
		return int8(float64(v) - 0.5)
	}
	return int8(float64(v) + 0.5)
}

func quantizeBlockQ8(dst []byte, x []float32) {
	d, id := q8Scale(x)
	binary.LittleEndian.PutUint16(dst, FP32ToFP16(d))
	q := dst[2:34]
	for j, v := range x[:ggml.QK] {
		q[j] = byte(roundAway(v * id))
	}
}

func quantizeBlockQ4(dst []byte, x []float32) {
	var amax, vmax float32
	for _, v := range x[:ggml.QK] {
		if a := float32(math.Abs(float64(v))); amax < a {
			amax, vmax = a, v
		}
	}
	d := vmax / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(dst, FP32ToFP16(d))
	q := dst[2:18]
	for j := range ggml.QK / 2 {
		// The explicit float32 conversions forbid fusing x·id + 8.5 into one FMA, which
		// would round differently from the C code.
		lo := min(15, int8(float32(x[j]*id)+8.5))
		hi := min(15, int8(float32(x[j+ggml.QK/2]*id)+8.5))
		q[j] = byte(lo) | byte(hi)<<4
	}
}

// Dequantize decodes src, in the GGUF layout of t, into dst. len(src) must be exactly
// t.RowBytes(len(dst)). It returns an error for an unsupported type or mismatched sizes.
func Dequantize(t ggml.Type, dst []float32, src []byte) error {
	if err := checkSizes(t, len(dst), len(src)); err != nil {
		return err
	}
	switch t {
	case ggml.F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case ggml.F16:
		for i := range dst {
			dst[i] = f16Table[binary.LittleEndian.Uint16(src[2*i:])]
		}
	case ggml.Q8_0:
		for b := 0; b < len(dst)/ggml.QK; b++ {
			blk := src[b*34 : (b+1)*34]
			d := f16Table[binary.LittleEndian.Uint16(blk)]
			out := dst[b*ggml.QK : (b+1)*ggml.QK]
			for j, q := range blk[2:34] {
				out[j] = float32(int8(q)) * d
			}
		}
	case ggml.Q4_0:
		for b := 0; b < len(dst)/ggml.QK; b++ {
			blk := src[b*18 : (b+1)*18]
			d := f16Table[binary.LittleEndian.Uint16(blk)]
			out := dst[b*ggml.QK : (b+1)*ggml.QK]
			for j, q := range blk[2:18] {
				out[j] = float32(int(q&15)-8) * d
				out[j+ggml.QK/2] = float32(int(q>>4)-8) * d
			}
		}
	case ggml.BF16:
		for i := range dst {
			dst[i] = bf16(src[2*i:])
		}
	default:
		dequantizeSubs(t, dst, src)
	}
	return nil
}
