package kernels

import "golang.org/x/sys/cpu"

var (
	vecAVX2    = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	vecAVX512  = vecAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ
	halfAVX512 = vecAVX512 && cpu.X86.HasAVX512BW // masked 16-bit loads
)

//go:noescape
func vscores2F32(q1, q2, k *float32, stride, n, hd int, out1, out2 *float32)

//go:noescape
func vaccum2F32(out1, out2, v *float32, stride, n, hd int, w1, w2 *float32)

//go:noescape
func vaccum4F32(out1, out2, out3, out4, v *float32, stride, n, hd int, w1, w2, w3, w4 *float32)

//go:noescape
func vaccumMultiF32(o1, o2, o3, o4, w1, w2, w3, w4 *float32, k int, v *float32, stride, n, hd int)

//go:noescape
func vaccumMultiY(o1, o2, o3, o4, w1, w2, w3, w4 *float32, k int, v *float32, stride, n, hd int)

//go:noescape
func vscoresF32(q, k *float32, stride, n, hd int, out *float32)

//go:noescape
func vaccumF32(out, v *float32, stride, n, hd int, w *float32, wide bool)

// Scores sets out[j] = Dot(q, k[j*stride:][:len(q)]) for j < len(out): the attention
// scores of one query against len(out) keys laid out stride floats apart. The
// reduction order is fixed per call shape.
func Scores(out, q, k []float32, stride int) {
	n, hd := len(out), len(q)
	if n == 0 {
		return
	}
	_ = k[(n-1)*stride+hd-1]
	if vecAVX2 && hd%8 == 0 && hd > 0 {
		vscoresF32(&q[0], &k[0], stride, n, hd, &out[0])
		return
	}
	scoresGeneric(out, q, k, stride)
}

// Accum adds w[j] * v[j*stride:][:len(out)] to out for j < len(w), in order of j.
func Accum(out, v []float32, stride int, w []float32) {
	n, hd := len(w), len(out)
	if n == 0 {
		return
	}
	_ = v[(n-1)*stride+hd-1]
	if vecAVX2 && hd%8 == 0 && hd > 0 {
		vaccumF32(&out[0], &v[0], stride, n, hd, &w[0], vecAVX512)
		return
	}
	accumGeneric(out, v, stride, w)
}

// Scores2 is Scores for two queries against the same keys: out1 for q1, out2 for q2
// (len(out2) == len(out1), len(q2) == len(q1)). Attention gives it the query heads that
// share a KV head, so each key row is loaded once for both.
//
// With AVX-512 and a head dimension that is a multiple of 16, it rounds differently
// from Scores (16 lanes, not 8): a model must send a given head through one of the two
// every time. Either way a row's score depends only on its query and its key, never on
// how many rows the call takes.
func Scores2(out1, out2, q1, q2, k []float32, stride int) {
	n, hd := len(out1), len(q1)
	if n == 0 {
		return
	}
	_, _, _ = out2[n-1], q2[hd-1], k[(n-1)*stride+hd-1]
	if !vecAVX512 || hd%16 != 0 {
		Scores(out1, q1, k, stride)
		Scores(out2, q2, k, stride)
		return
	}
	sb := 4 * stride
	j := 0
	for ; j+8 <= n; j += 8 {
		vscores2F32(&q1[0], &q2[0], &k[j*stride], sb, 8, 4*hd, &out1[j], &out2[j])
	}
	if j < n {
		var t1, t2 [8]float32
		vscores2F32(&q1[0], &q2[0], &k[j*stride], sb, n-j, 4*hd, &t1[0], &t2[0])
		copy(out1[j:], t1[:n-j])
		copy(out2[j:], t2[:n-j])
	}
}

// Accum2 is Accum for two outputs weighted from the same values: out1 with w1, out2
// with w2. Its results are bitwise those of two Accum calls.
func Accum2(out1, out2, v []float32, stride int, w1, w2 []float32) {
	n, hd := len(w1), len(out1)
	if n == 0 {
		return
	}
	_, _, _ = w2[n-1], out2[hd-1], v[(n-1)*stride+hd-1]
	if accumMulti(&out1[0], &out2[0], nil, nil, &w1[0], &w2[0], nil, nil, 2, &v[0], stride, n, hd) {
		return
	}
	if !vecAVX512 || hd%16 != 0 {
		Accum(out1, v, stride, w1)
		Accum(out2, v, stride, w2)
		return
	}
	vaccum2F32(&out1[0], &out2[0], &v[0], 4*stride, n, 4*hd, &w1[0], &w2[0])
}

//go:noescape
func halfRowsAVX512(dst *float32, dstStride int, src *uint16, srcStride, rows, width int)

// HalfRows converts rows of fp16 values to float32, exactly: dst[r*dstStride+i] =
// FP16ToFP32(src[r*srcStride+i]) for r < rows, i < width. Attention over an F16 cache
// converts just the keys or values of the head it computes, a block at a time.
func HalfRows(dst []float32, dstStride int, src []uint16, srcStride, rows, width int) {
	if rows <= 0 || width <= 0 {
		return
	}
	_, _ = dst[(rows-1)*dstStride+width-1], src[(rows-1)*srcStride+width-1]
	if halfAVX512 {
		halfRowsAVX512(&dst[0], 4*dstStride, &src[0], 2*srcStride, rows, width)
		return
	}
	halfRowsGeneric(dst, dstStride, src, srcStride, rows, width)
}

// Accum4 is Accum for four outputs weighted from the same values, out_i with w_i (all
// of the same lengths): attention gives it two tokens' two query heads that share a
// KV head. Its results are bitwise those of four Accum calls; on AVX-512 the four
// outputs' sixteen FMA chains keep the FMA units busy where Accum2's eight wait on
// latency.
func Accum4(out1, out2, out3, out4, v []float32, stride int, w1, w2, w3, w4 []float32) {
	n, hd := len(w1), len(out1)
	if n == 0 {
		return
	}
	_, _, _ = w2[n-1], w3[n-1], w4[n-1]
	_, _, _, _ = out2[hd-1], out3[hd-1], out4[hd-1], v[(n-1)*stride+hd-1]
	if accumMulti(&out1[0], &out2[0], &out3[0], &out4[0], &w1[0], &w2[0], &w3[0], &w4[0], 4, &v[0], stride, n, hd) {
		return
	}
	if !vecAVX512 || hd%16 != 0 {
		Accum2(out1, out2, v, stride, w1, w2)
		Accum2(out3, out4, v, stride, w3, w4)
		return
	}
	vaccum4F32(&out1[0], &out2[0], &out3[0], &out4[0], &v[0], 4*stride, n, 4*hd, &w1[0], &w2[0], &w3[0], &w4[0])
}

// accumMulti does k (2 or 4) Accum calls over the same n rows of v (stride floats
// apart, hd columns) in one pass, outputs o1…ok with weights w1…wk (the others nil), where
// a kernel keeps every output's columns in registers, and reports whether it did:
// below 64 columns with AVX-512 (the wider go through vaccum2F32 and vaccum4F32, whose
// chains already hide FMA latency, and so do 16, in one pass), and with AVX2 up to 8
// registers of accumulators (two outputs of up to 32 columns, four of up to 16).
func accumMulti(o1, o2, o3, o4, w1, w2, w3, w4 *float32, k int, v *float32, stride, n, hd int) bool {
	switch {
	case !vecAVX2 || hd%8 != 0 || hd <= 0 || hd >= 64:
		return false
	case vecAVX512 && hd == 16:
		return false // vaccum2F32 and vaccum4F32 take 16 columns in one pass, a little faster
	case vecAVX512:
		vaccumMultiF32(o1, o2, o3, o4, w1, w2, w3, w4, k, v, 4*stride, n, hd)
	case k*hd <= 64:
		vaccumMultiY(o1, o2, o3, o4, w1, w2, w3, w4, k, v, 4*stride, n, hd)
	default:
		return false
	}
	return true
}

//go:noescape
func vscaleMulF32(dst, x, w *float32, n int, s float32)

// ScaleMul sets dst[i] = w[i] * (s * x[i]) for i < len(x), rounding each product as Go
// does (two multiplications, no fused operation), so every path gives the same bits.
// RMSNorm's scaling.
func ScaleMul(dst, x, w []float32, s float32) {
	n := len(x)
	if n == 0 {
		return
	}
	_, _ = dst[n-1], w[n-1]
	v := vectorPart(n)
	if v > 0 {
		vscaleMulF32(&dst[0], &x[0], &w[0], v, s)
	}
	scaleMulGeneric(dst[v:n], x[v:], w[v:n], s)
}

//go:noescape
func vrotateF32(v, cs, sn *float32, n int)

// Rotate turns each adjacent pair (v[2i], v[2i+1]) for 2i+1 < len(cs) by an angle given
// as cs = (cos, cos) and sn = (-sin, sin) per pair: v[2i] = v[2i]·cos − v[2i+1]·sin and
// v[2i+1] = v[2i+1]·cos + v[2i]·sin, each product rounded on its own, so every path
// gives the same bits (RoPE).
func Rotate(v, cs, sn []float32) {
	n := len(cs) &^ 1
	if n == 0 {
		return
	}
	_, _ = v[n-1], sn[n-1]
	m := vectorPart(n)
	if m > 0 {
		vrotateF32(&v[0], &cs[0], &sn[0], m)
	}
	rotateGeneric(v[m:n], cs[m:n], sn[m:n])
}

// vectorPart is how many of n elements the elementwise AVX2 kernels take (whole vectors
// of 8); Go does the rest.
func vectorPart(n int) int {
	if !vecAVX2 {
		return 0
	}
	return n &^ 7
}
