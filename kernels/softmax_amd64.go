package kernels

import "math"

// expTab holds the constants of vsoftmaxF32 and vswigluF32, each repeated in 8 lanes;
// row i sits at byte offset 32·i, the order softmax_amd64.s addresses them in. Rows 14
// and 15 are 8 all-ones lanes then 8 zero lanes: the 8 lanes starting at row 14 lane
// 8-t are the mask of a t-element tail. The values come from the constants expLane
// uses, so the two cannot drift apart.
var expTab = func() (t [16][8]uint32) {
	rows := [...]uint32{
		math.Float32bits(expLo),
		math.Float32bits(expHi),
		math.Float32bits(expLog2e),
		math.Float32bits(0.5),
		math.Float32bits(expLn2Hi),
		math.Float32bits(expLn2Lo),
		math.Float32bits(expC6),
		math.Float32bits(expC5),
		math.Float32bits(expC4),
		math.Float32bits(expC3),
		math.Float32bits(1),
		127,        // exponent bias
		1 << 31,    // sign bit
		0xff800000, // -Inf
		^uint32(0), // tail mask ones
		0,          // tail mask zeros
	}
	for i, v := range rows {
		for l := range t[i] {
			t[i][l] = v
		}
	}
	return t
}()

//go:noescape
func vsoftmaxF32(x *float32, n int, scale float32, c *[16][8]uint32, wide bool)

//go:noescape
func vswigluF32(gate, up *float32, n int, c *[16][8]uint32)

// Softmax replaces x by the softmax of scale·x: x[i] = exp(scale·x[i] - m) / sum, with m
// the maximum of scale·x and sum that of the exponentials. The arguments of exp are
// clamped to [-87.33654, 88.37626], so a weight that would be below about 1.2e-38/sum
// is 1.2e-38/sum rather than 0. The result depends on x and scale alone, bit for bit,
// on every path (see softmaxGeneric for the operation order). An empty x is left alone.
func Softmax(x []float32, scale float32) {
	if len(x) == 0 {
		return
	}
	if vecAVX2 {
		vsoftmaxF32(&x[0], len(x), scale, &expTab, vecAVX512)
		return
	}
	softmaxGeneric(x, scale)
}

// SwiGLU sets g[i] = SiLU(g[i])·u[i] = g[i] / (1 + exp(-g[i])) · u[i] for i < len(g);
// u must be at least as long as g. Each element depends on g[i] and u[i] alone, bit for
// bit, on every path (see swigluGeneric), with exp clamped as in Softmax.
func SwiGLU(g, u []float32) {
	if len(g) == 0 {
		return
	}
	u = u[:len(g)]
	if vecAVX2 {
		vswigluF32(&g[0], &u[0], len(g), &expTab)
		return
	}
	swigluGeneric(g, u)
}
