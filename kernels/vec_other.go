//go:build !amd64

package kernels

// Scores sets out[j] = dot(q, k[j*stride:][:len(q)]) for j < len(out).
func Scores(out, q, k []float32, stride int) { scoresGeneric(out, q, k, stride) }

// Accum adds w[j] * v[j*stride:][:len(out)] to out for j < len(w), in order of j.
func Accum(out, v []float32, stride int, w []float32) { accumGeneric(out, v, stride, w) }

// Scores2 is Scores for two queries against the same keys.
func Scores2(out1, out2, q1, q2, k []float32, stride int) {
	scoresGeneric(out1, q1, k, stride)
	scoresGeneric(out2, q2, k, stride)
}

// Accum2 is Accum for two outputs weighted from the same values.
func Accum2(out1, out2, v []float32, stride int, w1, w2 []float32) {
	accumGeneric(out1, v, stride, w1)
	accumGeneric(out2, v, stride, w2)
}

// Accum4 is Accum for four outputs weighted from the same values.
func Accum4(out1, out2, out3, out4, v []float32, stride int, w1, w2, w3, w4 []float32) {
	Accum2(out1, out2, v, stride, w1, w2)
	Accum2(out3, out4, v, stride, w3, w4)
}

// ScaleMul sets dst[i] = w[i] * (s * x[i]).
func ScaleMul(dst, x, w []float32, s float32) { scaleMulGeneric(dst, x, w, s) }

// Rotate turns each adjacent pair (v[2i], v[2i+1]) for 2i+1 < len(cs) by an angle given
// as cs = (cos, cos) and sn = (-sin, sin) per pair.
func Rotate(v, cs, sn []float32) { rotateGeneric(v, cs, sn) }

// HalfRows converts rows of fp16 values to float32: dst[r*dstStride+i] =
// FP16ToFP32(src[r*srcStride+i]) for r < rows, i < width.
func HalfRows(dst []float32, dstStride int, src []uint16, srcStride, rows, width int) {
	halfRowsGeneric(dst, dstStride, src, srcStride, rows, width)
}
