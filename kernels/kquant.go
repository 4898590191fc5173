package kernels

import (
	"encoding/binary"
	"math"

	"github.com/specd-dev/specd/ggml"
)

// Block layouts of the types beyond Q8_0 and Q4_0, as in ggml-common.h (little-endian,
// fp16 scales). A K-quant super-block holds 256 weights in sub-blocks of 16 or 32:
//
//	Q5_0:   d, qh[4], qs[16]               x = d·(q-16), q = nibble | high bit<<4
//	Q5_1:   d, m, qh[4], qs[16]            x = d·q + m
//	IQ4_NL: d, qs[16]                      x = d·kvalues[nibble]
//	Q2_K:   scales[16], qs[64], d, dmin    x = d·(sc&15)·q - dmin·(sc>>4), 2-bit q, 16 a scale
//	Q3_K:   hmask[32], qs[64], scales[12], d          x = d·(sc-32)·(q-4·!hbit), 6-bit sc
//	Q4_K:   d, dmin, scales[12], qs[128]   x = d·sc·q - dmin·m, 6-bit sc and m per 32
//	Q5_K:   d, dmin, scales[12], qh[32], qs[128]      as Q4_K with a fifth bit
//	Q6_K:   ql[128], qh[64], scales[16] int8, d       x = d·sc·(q-32), 16 a scale
//
// Every one of them decodes, per sub-block of 32 weights, to small integers w and per
// half (16 weights) a scale D and offset F: x = D·w + F. That form is what the kernels
// compute with: Σ x·a = D·Σ w·a + F·Σ a, an exact integer sum and a block sum of the
// activations.

// subScales are the scales and offsets of the two halves of a sub-block of 32 weights:
// x[j] = dl·w[j] + fl for j < 16, dh·w[j] + fh after. Types with one scale per 32 have
// dl = dh and fl = fh.
type subScales struct{ dl, dh, fl, fh float32 }

// decodeSub decodes sub-block s (of 32 weights) of the block blk of type t into w and
// returns its scales. blk is one whole block; s < t.BlockSize()/32. t is Q8_0 (for the
// tiled packing, packTilesBytes) or one of the types beyond F32, F16, BF16, Q8_0 and
// Q4_0, whose unpacked products go through genericSubs.
func decodeSub(t ggml.Type, blk []byte, s int, w *[ggml.QK]int8) subScales {
	switch t {
	case ggml.Q8_0:
		for j, q := range blk[2:34] {
			w[j] = int8(q)
		}
		d := f16(blk)
		return subScales{d, d, 0, 0}
	case ggml.Q5_0, ggml.Q5_1:
		d, m, off := f16(blk), float32(0), 2
		if t == ggml.Q5_1 {
			m, off = f16(blk[2:]), 4
		}
		qh := binary.LittleEndian.Uint32(blk[off:])
		bias := int8(16)
		if t == ggml.Q5_1 {
			bias = 0
		}
		for j, q := range blk[off+4 : off+20] {
			w[j] = int8(q&15|byte(qh>>j<<4)&16) - bias
			w[j+16] = int8(q>>4|byte(qh>>(j+12))&16) - bias
		}
		return subScales{d, d, m, m}
	case ggml.IQ4_NL:
		d := f16(blk)
		for j, q := range blk[2:18] {
			w[j], w[j+16] = iq4nlValues[q&15], iq4nlValues[q>>4]
		}
		return subScales{d, d, 0, 0}
	case ggml.Q2_K:
		return decodeQ2K(blk, s, w)
	case ggml.Q3_K:
		return decodeQ3K(blk, s, w)
	case ggml.Q4_K, ggml.Q5_K:
		return decodeQ45K(t, blk, s, w)
	case ggml.Q6_K:
		return decodeQ6K(blk, s, w)
	}
	panic("kernels: decodeSub of " + t.String())
}

// iq4nlValues is ggml's kvalues_iq4nl, the non-linear levels of IQ4_NL.
var iq4nlValues = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

func f16(b []byte) float32 { return f16Table[binary.LittleEndian.Uint16(b)] }

// decodeQ2K: sub-block s = 4n+j is bits 2j..2j+1 of qs[32n:32n+32], scales[2s] for its
// first 16 weights and scales[2s+1] for the rest (low nibble scale, high nibble min).
func decodeQ2K(blk []byte, s int, w *[ggml.QK]int8) subScales {
	n, j := s/4, s%4
	qs := blk[16+32*n : 16+32*n+32]
	for l, q := range qs {
		w[l] = int8(q >> (2 * j) & 3)
	}
	d, dmin := f16(blk[80:]), f16(blk[82:])
	lo, hi := blk[2*s], blk[2*s+1]
	return subScales{
		dl: d * float32(lo&15), dh: d * float32(hi&15),
		fl: -(dmin * float32(lo>>4)), fh: -(dmin * float32(hi>>4)),
	}
}

// decodeQ3K: sub-block s = 4n+j is bits 2j..2j+1 of qs[32n:32n+32] less 4 where bit
// 4n+j of hmask[l] is clear, with 6-bit scales 2s and 2s+1 (less 32).
func decodeQ3K(blk []byte, s int, w *[ggml.QK]int8) subScales {
	n, j := s/4, s%4
	hm, qs := blk[:32], blk[32+32*n:32+32*n+32]
	m := byte(1) << s
	for l, q := range qs {
		v := int8(q >> (2 * j) & 3)
		if hm[l]&m == 0 {
			v -= 4
		}
		w[l] = v
	}
	d := f16(blk[108:])
	sc := blk[96:108]
	return subScales{dl: d * float32(q3Scale(sc, 2*s)-32), dh: d * float32(q3Scale(sc, 2*s+1)-32)}
}

// q3Scale unpacks 6-bit scale i of Q3_K's 12 bytes: low 4 bits from byte i (or the high
// nibble of byte i-8), high 2 bits from bytes 8..11.
func q3Scale(sc []byte, i int) int {
	switch {
	case i < 4:
		return int(sc[i]&15 | (sc[i+8]&3)<<4)
	case i < 8:
		return int(sc[i]&15 | (sc[i+4]>>2&3)<<4)
	case i < 12:
		return int(sc[i-8]>>4 | (sc[i]>>4&3)<<4)
	}
	return int(sc[i-8]>>4 | (sc[i-4]>>6&3)<<4)
}

// kScaleMin unpacks the 6-bit scale and min of sub-block j from Q4_K/Q5_K's 12 bytes
// (ggml's get_scale_min_k4).
func kScaleMin(j int, q []byte) (sc, m byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&15 | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// decodeQ45K: sub-block s takes the low (even s) or high (odd s) nibbles of
// qs[32(s/2):], plus for Q5_K bit s of qh[l] as 16.
func decodeQ45K(t ggml.Type, blk []byte, s int, w *[ggml.QK]int8) subScales {
	d, dmin := f16(blk), f16(blk[2:])
	sc, m := kScaleMin(s, blk[4:16])
	qsOff := 16
	if t == ggml.Q5_K {
		qsOff = 48
	}
	qs := blk[qsOff+32*(s/2) : qsOff+32*(s/2)+32]
	shift := 4 * (s % 2)
	for l, q := range qs {
		w[l] = int8(q >> shift & 15)
	}
	if t == ggml.Q5_K {
		bit := byte(1) << s
		for l, h := range blk[16:48] {
			if h&bit != 0 {
				w[l] += 16
			}
		}
	}
	D, F := d*float32(sc), -(dmin * float32(m))
	return subScales{D, D, F, F}
}

// decodeQ6K: sub-block s = 4n+k of half n (128 weights) is quarter k: low (k<2) or high
// nibbles of ql[64n+32(k%2):], bits 2k..2k+1 of qh[32n:], less 32; scales 8n+2k and
// 8n+2k+1.
func decodeQ6K(blk []byte, s int, w *[ggml.QK]int8) subScales {
	n, k := s/4, s%4
	ql := blk[64*n+32*(k%2) : 64*n+32*(k%2)+32]
	qh := blk[128+32*n : 128+32*n+32]
	shift := 4 * (k / 2)
	for l := range 32 {
		w[l] = int8(ql[l]>>shift&15|(qh[l]>>(2*k)&3)<<4) - 32
	}
	d := f16(blk[208:])
	return subScales{dl: d * float32(int8(blk[192+8*n+2*k])), dh: d * float32(int8(blk[192+8*n+2*k+1]))}
}

// dequantizeSubs decodes src, whole blocks of the 32-weight types or K-quants, into dst
// with ggml's arithmetic: x = D·w then + F, in float32.
func dequantizeSubs(t ggml.Type, dst []float32, src []byte) {
	bb, nsub := t.BlockBytes(), t.BlockSize()/ggml.QK
	var w [ggml.QK]int8
	for b := range len(dst) / t.BlockSize() {
		blk := src[b*bb : (b+1)*bb]
		for s := range nsub {
			sc := decodeSub(t, blk, s, &w)
			out := dst[(b*nsub+s)*ggml.QK:][:ggml.QK]
			for j, v := range w[:16] {
				out[j] = float32(sc.dl*float32(v)) + sc.fl
			}
			for j, v := range w[16:] {
				out[16+j] = float32(sc.dh*float32(v)) + sc.fh
			}
		}
	}
}

// bf16 returns the float32 whose high half is the bfloat16 at b.
func bf16(b []byte) float32 {
	return math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16)
}

// fp32ToBF16 rounds f to bfloat16 as ggml's GGML_FP32_TO_BF16 does: to nearest even,
// a NaN kept quiet.
func fp32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16 | 64)
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}
