package kernels

import "math"

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

// accumGeneric is the pure-Go reference of Accum.
func accumGeneric(out, v []float32, stride int, w []float32) {
	for j, a := range w {
		row := v[j*stride : j*stride+len(out)]
		for i := range out {
			out[i] += a * row[i]
		}
	}
}

// Exp is a float32 exponential accurate to about 2 ulp over the float32 range: x is
// split as n·ln2 + r with |r| ≤ ln2/2, e^r comes from a degree-6 polynomial, and 2^n is
// put in the exponent. It is several times faster than math.Exp and deterministic.
func Exp(x float32) float32 {
	switch {
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	case x != x:
		return x
	}
	const (
		log2e = 1.44269504
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	t := x*log2e + 0.5
	k := int32(t)
	if float32(k) > t {
		k-- // floor for negative t
	}
	n := float32(k)
	r := x - n*ln2hi - n*ln2lo
	// Taylor-like minimax coefficients for e^r on [-ln2/2, ln2/2].
	p := float32(1.0 / 720)
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	if k < -126 {
		// Subnormal results: scale in two steps.
		return p * math.Float32frombits(uint32(k+126+127)<<23) * math.Float32frombits(uint32(1)<<23)
	}
	if k > 127 {
		return p * math.Float32frombits(uint32(127+127)<<23) * math.Float32frombits(uint32(k-127+127)<<23)
	}
	return p * math.Float32frombits(uint32(k+127)<<23)
}
