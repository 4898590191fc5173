package kernels

// The attention kernels over an F16 cache. ScoresHalf, Scores2Half, AccumHalf,
// Accum2Half and Accum4Half take the keys or values as the cache stores them (fp16,
// rows stride elements apart) and give bitwise the results of converting those rows
// (HalfRows) and calling the float32 kernel of the same name: the vector paths convert
// in registers and then do the float32 kernel's operations in its order; the others
// convert a row at a time and call the float32 kernel on it. Attention reads half the
// bytes, and an F16 cache stays batch invariant and keeps its expected values.

// halfRowBuf returns a scratch row of n floats, in arr when it fits.
func halfRowBuf(arr *[256]float32, n int) []float32 {
	if n <= len(arr) {
		return arr[:n]
	}
	return make([]float32, n)
}

// convertRow sets dst[i] = FP16ToFP32(src[i]) for i < len(dst).
func convertRow(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = f16Table[h]
	}
}

// scoresHalfRows is ScoresHalf a row at a time: a row's score does not depend on how
// many rows a Scores call takes.
func scoresHalfRows(out, q []float32, k []uint16, stride int) {
	var arr [256]float32
	row := halfRowBuf(&arr, len(q))
	for j := range out {
		convertRow(row, k[j*stride:])
		Scores(out[j:j+1], q, row, len(row))
	}
}

// accumHalfRows is AccumHalf a row at a time: Accum adds the rows in order, each
// output element with one operation per row, so splitting the rows changes nothing.
func accumHalfRows(out []float32, v []uint16, stride int, w []float32) {
	var arr [256]float32
	row := halfRowBuf(&arr, len(out))
	for j := range w {
		convertRow(row, v[j*stride:])
		Accum(out, row, len(row), w[j:j+1])
	}
}

// toHalvesGeneric is the pure-Go reference of ToHalves.
func toHalvesGeneric(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = FP32ToFP16(f)
	}
}
