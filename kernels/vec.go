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

// scoresT2Generic is the pure-Go reference of ScoresT2: per key, the even dimensions'
// products summed in order, plus the odd ones'.
func scoresT2Generic(out1, out2, q1, q2, kt []float32, stride int) {
	for p := range out1 {
		var e1, o1, e2, o2 float32
		d := 0
		for ; d+1 < len(q1); d += 2 {
			k0, k1 := kt[d*stride+p], kt[(d+1)*stride+p]
			e1 += q1[d] * k0
			e2 += q2[d] * k0
			o1 += q1[d+1] * k1
			o2 += q2[d+1] * k1
		}
		if d < len(q1) {
			k0 := kt[d*stride+p]
			e1 += q1[d] * k0
			e2 += q2[d] * k0
		}
		out1[p], out2[p] = e1+o1, e2+o2
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
