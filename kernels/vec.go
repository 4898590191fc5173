package kernels

// scoresGeneric is the pure-Go reference of Scores.
func scoresGeneric(out, q, k []float32, stride int) {
	for j := range out {
		row := k[j*stride : j*stride+len(q)]
		var s float32
		for i, x := range q {
			s += x * row[i]
		}
		out[j] = s
	}
}

// halfRowsGeneric is the pure-Go reference of HalfRows.
func halfRowsGeneric(dst []float32, dstStride int, src []uint16, srcStride, rows, width int) {
	for r := range rows {
		d, s := dst[r*dstStride:r*dstStride+width], src[r*srcStride:r*srcStride+width]
		for i, h := range s {
			d[i] = f16Table[h]
		}
	}
}

// accumGeneric is the pure-Go reference of Accum.
func accumGeneric(out, v []float32, stride int, w []float32) {
	for j, a := range w {
		row := v[j*stride : j*stride+len(out)]
		for i := range out {
			out[i] += a * row[i]
		}
	}
}

// scaleMulGeneric is the pure-Go reference of ScaleMul.
func scaleMulGeneric(dst, x, w []float32, s float32) {
	for i, v := range x {
		dst[i] = w[i] * (s * v)
	}
}

// rotateGeneric is the pure-Go reference of Rotate. The conversions keep each product
// rounded on its own (no fused multiply-add on any platform).
func rotateGeneric(v, cs, sn []float32) {
	for i := 0; i+1 < len(cs); i += 2 {
		a, b := v[i], v[i+1]
		v[i] = float32(a*cs[i]) + float32(b*sn[i])
		v[i+1] = float32(b*cs[i+1]) + float32(a*sn[i+1])
	}
}
