package kernels

import "golang.org/x/sys/cpu"

// halfAVX2 is whether the AVX2 kernels have fp16 versions (F16C converts 8 at a time).
var halfAVX2 = vecAVX2 && cpu.X86.HasF16C

//go:noescape
func vscoresF16(q *float32, k *uint16, stride, n, hd int, out *float32)

//go:noescape
func vaccumF16(out *float32, v *uint16, stride, n, hd int, w *float32)

//go:noescape
func vscores2F16(q1, q2 *float32, k *uint16, stride, n, hd int, out1, out2 *float32)

//go:noescape
func vaccum2F16(out1, out2 *float32, v *uint16, stride, n, hd int, w1, w2 *float32)

//go:noescape
func vaccum4F16(out1, out2, out3, out4 *float32, v *uint16, stride, n, hd int, w1, w2, w3, w4 *float32)

// ScoresHalf is Scores over fp16 keys, k[j*stride:][:len(q)] for j < len(out).
func ScoresHalf(out, q []float32, k []uint16, stride int) {
	n, hd := len(out), len(q)
	if n == 0 {
		return
	}
	_ = k[(n-1)*stride+hd-1]
	if halfAVX2 && hd%8 == 0 && hd > 0 {
		vscoresF16(&q[0], &k[0], 2*stride, n, hd, &out[0])
		return
	}
	scoresHalfRows(out, q, k, stride)
}

// Scores2Half is Scores2 over fp16 keys. Its loop repeats Scores2's on purpose: sharing
// it through a kernel passed as a func value loses //go:noescape, so the tail's scratch
// moved to the heap on every call (attention 10–40% slower, measured).
func Scores2Half(out1, out2, q1, q2 []float32, k []uint16, stride int) {
	n, hd := len(out1), len(q1)
	if n == 0 {
		return
	}
	_, _, _ = out2[n-1], q2[hd-1], k[(n-1)*stride+hd-1]
	if !vecAVX512 || hd%16 != 0 {
		ScoresHalf(out1, q1, k, stride)
		ScoresHalf(out2, q2, k, stride)
		return
	}
	sb := 2 * stride
	j := 0
	for ; j+8 <= n; j += 8 {
		vscores2F16(&q1[0], &q2[0], &k[j*stride], sb, 8, 4*hd, &out1[j], &out2[j])
	}
	if j < n {
		var t1, t2 [8]float32
		vscores2F16(&q1[0], &q2[0], &k[j*stride], sb, n-j, 4*hd, &t1[0], &t2[0])
		copy(out1[j:], t1[:n-j])
		copy(out2[j:], t2[:n-j])
	}
}

// AccumHalf is Accum over fp16 values: it adds w[j] * v[j*stride:][:len(out)] to out
// for j < len(w), in order of j.
func AccumHalf(out []float32, v []uint16, stride int, w []float32) {
	n, hd := len(w), len(out)
	if n == 0 {
		return
	}
	_ = v[(n-1)*stride+hd-1]
	if halfAVX2 && hd%8 == 0 && hd > 0 {
		vaccumF16(&out[0], &v[0], 2*stride, n, hd, &w[0])
		return
	}
	accumHalfRows(out, v, stride, w)
}

// Accum2Half is Accum2 over fp16 values.
func Accum2Half(out1, out2 []float32, v []uint16, stride int, w1, w2 []float32) {
	n, hd := len(w1), len(out1)
	if n == 0 {
		return
	}
	_, _, _ = w2[n-1], out2[hd-1], v[(n-1)*stride+hd-1]
	if !vecAVX512 || hd%16 != 0 {
		AccumHalf(out1, v, stride, w1)
		AccumHalf(out2, v, stride, w2)
		return
	}
	vaccum2F16(&out1[0], &out2[0], &v[0], 2*stride, n, 4*hd, &w1[0], &w2[0])
}

// Accum4Half is Accum4 over fp16 values.
func Accum4Half(out1, out2, out3, out4 []float32, v []uint16, stride int, w1, w2, w3, w4 []float32) {
	n, hd := len(w1), len(out1)
	if n == 0 {
		return
	}
	_, _, _ = w2[n-1], w3[n-1], w4[n-1]
	_, _, _, _ = out2[hd-1], out3[hd-1], out4[hd-1], v[(n-1)*stride+hd-1]
	if !vecAVX512 || hd%16 != 0 {
		Accum2Half(out1, out2, v, stride, w1, w2)
		Accum2Half(out3, out4, v, stride, w3, w4)
		return
	}
	vaccum4F16(&out1[0], &out2[0], &out3[0], &out4[0], &v[0], 2*stride, n, 4*hd, &w1[0], &w2[0], &w3[0], &w4[0])
}

//go:noescape
func toHalvesF16C(dst *uint16, src *float32, n int)

// ToHalves sets dst[i] = FP32ToFP16(src[i]) for i < len(src): an F16 cache's writes.
func ToHalves(dst []uint16, src []float32) {
	n := len(src)
	if n == 0 {
		return
	}
	_ = dst[n-1]
	v := 0
	if halfAVX2 {
		v = n &^ 7
		if v > 0 {
			toHalvesF16C(&dst[0], &src[0], v)
		}
	}
	toHalvesGeneric(dst[v:n], src[v:])
}
