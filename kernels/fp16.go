package kernels

import "math"

// f16Table maps every IEEE 754 half-precision bit pattern to its float32 value. It makes
// the pure-Go F16 kernels a load per weight instead of a branchy conversion.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = fp16ToFP32(uint16(i))
	}
	return &t
}()

// FP16ToFP32 converts an IEEE 754 half-precision value to float32. The conversion is
// exact: every half value, subnormals, infinities and NaN payloads included, is a
// float32.
func FP16ToFP32(h uint16) float32 { return f16Table[h] }

func fp16ToFP32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // inf or NaN: keep the payload in the top mantissa bits
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: mant * 2^-24, normal as a float32. Shift until the implicit bit
	// appears, counting the exponent down.
	e := uint32(113) // exponent of 2^-14 as a float32, the scale of the leading bit
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// FP32ToFP16 converts f to IEEE 754 half precision, rounding to nearest with ties to even,
// as ggml's GGML_FP32_TO_FP16 (F16C vcvtps2ph) and numpy's float16 do: values beyond the
// half range become ±Inf, values below it become half subnormals or ±0. A NaN stays a
// quiet NaN of the same sign keeping the top 10 bits of its payload (the F16C rule).
func FP32ToFP16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // biased half exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Half subnormal: the value is m·2^(exp-150) = h·2^-24, so h = m >> (126-exp).
		// float32 subnormals (exp == 0) are far below half's range and round to zero.
		shift := uint32(14 - e)
		if shift > 24 {
			return sign
		}
		m := mant | 0x800000
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && h&1 == 1 {
			h++ // may carry into the smallest normal, which is the right encoding
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && h&1 == 1 {
		h++ // a carry out of the mantissa bumps the exponent, up to Inf
	}
	return sign | uint16(h)
}
