package kernels

import (
	"math"

	"github.com/specd-dev/specd/ggml"
)

// Activations for K-quant weights. ggml multiplies Q2_K…Q6_K weights with activations
// quantized to Q8_K (its vec_dot_type for them): one float32 scale per super-block of 256
// values instead of Q8_0's fp16 scale per block of 32, and values rounded half to even
// instead of half away from zero. specd quantizes them the same way, so that its products
// round as llama.cpp's do: on models whose activations are wide, Q8_0's finer scales gave
// argmaxes that differ from llama.cpp's where llama.cpp wins by a clear margin.
//
// Every K-quant kernel reads them in the layout of its Q8_0 activations, the super-block
// scale repeated for each of its eight blocks of 32.

// usesQ8K reports whether products with weights of type t quantize the activations to
// Q8_K (ggml's vec_dot_type of t), rather than Q8_0.
func usesQ8K(t ggml.Type) bool {
	switch t {
	case ggml.Q2_K, ggml.Q3_K, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K:
		return true
	}
	return false
}

// q8kScale returns the scale of a super-block x as quantize_row_q8_K_ref computes it,
// d = 1/is with is = 127/max|x|, and the multiplier is. ggml divides by the value of
// largest magnitude, sign included, which negates every q and d when that value is
// negative; the products d·q and every dot product are then the same, so the sign is
// dropped here. is is 0 (and so d) for an all-zero super-block, and where 127/max|x|
// overflows; there ggml's rounding of ±Inf or NaN gives q = 0 as well.
func q8kScale(x []float32) (d, is float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	if amax == 0 {
		return 0, 0
	}
	is = 127 / amax
	if math.IsInf(float64(is), 0) {
		return 0, 0
	}
	return 1 / is, is
}

// roundEven rounds v to the nearest integer, ties to even, as ggml's nearest_int (and
// the default rounding of a float to int conversion) does, for |v| ≤ 127.
func roundEven(v float32) int8 { return int8(math.RoundToEven(float64(v))) }

// quantizeActsQ8K fills a with n tokens of x in the generic layout of quantizeActs, with
// the values of quantize_row_q8_K_ref: per super-block of 256, q = round(x·is) to even
// and the scale d (see q8kScale) at each of its eight blocks. cols must be a multiple of
// 256.
func quantizeActsQ8K(a *acts, x []float32, n, cols int) {
	nb := cols / ggml.QK
	a.nb, a.stride = nb, 0
	a.q = grow(a.q, n*nb*ggml.QK)
	a.d = grow(a.d, n*nb)
	const per = ggml.QKK / ggml.QK
	for t := range n {
		xt := x[t*cols : (t+1)*cols]
		for s := range cols / ggml.QKK {
			sb := xt[s*ggml.QKK : (s+1)*ggml.QKK]
			d, is := q8kScale(sb)
			q := a.q[(t*nb+s*per)*ggml.QK:][:ggml.QKK]
			for j, v := range sb {
				q[j] = byte(roundEven(v * is))
			}
			for b := range per {
				a.d[t*nb+s*per+b] = d
			}
		}
	}
}

// grow returns s resized to n, reallocated if its capacity is short.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
