package kernels

import "math"

// The vector exponential used by Softmax and SwiGLU. expLane is one lane of it in Go;
// softmax_amd64.s runs the same operations on 8 lanes at once, so the two agree bit for
// bit. For a lane holding x:
//
//	x = maxps(x, expLo); x = minps(x, expHi)   a NaN becomes expLo
//	t = x*log2e; t = t + 0.5                   two roundings, never fused
//	n = floor(t)                               in [-126, 127] thanks to the clamp
//	r = x - n*ln2hi; r = r - n*ln2lo           each product rounded before the subtraction
//	p = c6; p = p*r + c5; … ; p = p*r + c0     Horner, each step a rounded multiply then add
//	e^x = p * 2^n                              2^n built as (n+127)<<23, a normal float
//
// The coefficients are those of Exp, c_k = 1/k! (c2 = 0.5, c1 = c0 = 1). The clamp keeps
// e^x from overflowing or underflowing: it lies between about 1.2e-38 and 2.4e38.
const (
	expLo    = -87.33654 // just above ln 2^-126
	expHi    = 88.37626  // just below 127.5·ln 2
	expLog2e = 1.44269504
	expLn2Hi = 0.693359375 // 355/512: n*expLn2Hi is exact
	expLn2Lo = -2.12194440e-4
	expC6    = 1.0 / 720
	expC5    = 1.0 / 120
	expC4    = 1.0 / 24
	expC3    = 1.0 / 6
)

// maxps is MAXPS on one lane: a if a > b, else b (so b when either is NaN).
func maxps(a, b float32) float32 {
	if a > b {
		return a
	}
	return b
}

// minps is MINPS on one lane: a if a < b, else b (so b when either is NaN).
func minps(a, b float32) float32 {
	if a < b {
		return a
	}
	return b
}

// expLane is one lane of the vector exponential (see the table above). The explicit
// float32 conversions keep the compiler from fusing a multiply and an add, which the
// assembly does not do either.
func expLane(x float32) float32 {
	x = maxps(x, expLo)
	x = minps(x, expHi)
	t := float32(x*expLog2e) + 0.5
	n := float32(math.Floor(float64(t)))
	r := x - float32(n*expLn2Hi)
	r -= float32(n * expLn2Lo)
	p := float32(expC6)
	p = float32(p*r) + expC5
	p = float32(p*r) + expC4
	p = float32(p*r) + expC3
	p = float32(p*r) + 0.5
	p = float32(p*r) + 1
	p = float32(p*r) + 1
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// softmaxGeneric is the pure-Go reference of Softmax, operation for operation the
// AVX2 kernel: element i belongs to lane i%8 (i%32 for the maximum), lanes are reduced
// by halves (lane l with lane l+4, then l with l+2, then 0 with 1).
//
//	pass 1: m[i%32] = maxps(m[i%32], scale*x[i]), lanes starting at -Inf;
//	        m8[l] = maxps(maxps(m[l], m[l+8]), maxps(m[l+16], m[l+24])); mx = reduce(m8)
//	pass 2: e = exp(scale*x[i] - mx); x[i] = e; s[i%8] += e; sum = reduce(s)
//	pass 3: x[i] *= 1/sum
//
// The maximum is the same whatever the lanes, but for the sign of a zero (which does
// not change any result) and a NaN among the inputs; the 32 lanes are spelled out so
// that even then every path agrees.
func softmaxGeneric(x []float32, scale float32) {
	var m32 [32]float32
	var m, s [8]float32
	for l := range m32 {
		m32[l] = float32(math.Inf(-1))
	}
	for i, v := range x {
		m32[i&31] = maxps(m32[i&31], scale*v)
	}
	for l := range m {
		m[l] = maxps(maxps(m32[l], m32[l+8]), maxps(m32[l+16], m32[l+24]))
	}
	mx := reduce8(m, maxps)
	for i, v := range x {
		e := expLane(float32(scale*v) - mx)
		x[i] = e
		s[i&7] += e
	}
	inv := 1 / reduce8(s, func(a, b float32) float32 { return a + b })
	for i := range x {
		x[i] *= inv
	}
}

// reduce8 folds 8 lanes into one in the order of the assembly: halves, quarters, pair.
func reduce8(v [8]float32, op func(a, b float32) float32) float32 {
	for i := range 4 {
		v[i] = op(v[i], v[i+4])
	}
	for i := range 2 {
		v[i] = op(v[i], v[i+2])
	}
	return op(v[0], v[1])
}

// swigluGeneric is the pure-Go reference of SwiGLU, operation for operation the AVX2
// kernel: g[i] = (g[i] / (1 + exp(-g[i]))) * u[i].
func swigluGeneric(g, u []float32) {
	u = u[:len(g)]
	for i, v := range g {
		d := 1 + expLane(-v)
		g[i] = v / d * u[i]
	}
}
