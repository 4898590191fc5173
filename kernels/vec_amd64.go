package kernels

import "golang.org/x/sys/cpu"

var vecAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func vscoresF32(q, k *float32, stride, n, hd int, out *float32)

//go:noescape
func vaccumF32(out, v *float32, stride, n, hd int, w *float32)

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
		vaccumF32(&out[0], &v[0], stride, n, hd, &w[0])
		return
	}
	accumGeneric(out, v, stride, w)
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
