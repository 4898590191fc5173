//go:build !amd64

package kernels

// ScoresHalf is Scores over fp16 keys, k[j*stride:][:len(q)] for j < len(out).
func ScoresHalf(out, q []float32, k []uint16, stride int) { scoresHalfRows(out, q, k, stride) }

// Scores2Half is Scores2 over fp16 keys.
func Scores2Half(out1, out2, q1, q2 []float32, k []uint16, stride int) {
	scores2HalfRows(out1, out2, q1, q2, k, stride)
}

// AccumHalf is Accum over fp16 values: it adds w[j] * v[j*stride:][:len(out)] to out
// for j < len(w), in order of j.
func AccumHalf(out []float32, v []uint16, stride int, w []float32) { accumHalfRows(out, v, stride, w) }

// Accum2Half is Accum2 over fp16 values.
func Accum2Half(out1, out2 []float32, v []uint16, stride int, w1, w2 []float32) {
	AccumHalf(out1, v, stride, w1)
	AccumHalf(out2, v, stride, w2)
}

// Accum4Half is Accum4 over fp16 values.
func Accum4Half(out1, out2, out3, out4 []float32, v []uint16, stride int, w1, w2, w3, w4 []float32) {
	Accum2Half(out1, out2, v, stride, w1, w2)
	Accum2Half(out3, out4, v, stride, w3, w4)
}

// scores2HalfRows is Scores2Half a row at a time (Scores2's rows are independent too).
func scores2HalfRows(out1, out2, q1, q2 []float32, k []uint16, stride int) {
	var arr [256]float32
	row := halfRowBuf(&arr, len(q1))
	for j := range out1 {
		convertRow(row, k[j*stride:])
		Scores2(out1[j:j+1], out2[j:j+1], q1, q2, row, len(row))
	}
}

// ToHalves sets dst[i] = FP32ToFP16(src[i]) for i < len(src): an F16 cache's writes.
func ToHalves(dst []uint16, src []float32) { toHalvesGeneric(dst, src) }
