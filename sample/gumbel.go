package sample

import "math"

// Gumbel noise without math.Log. Every (seed, pos, token) must draw the same bits on
// every machine and code path: a draft and a verifier on different hosts, one with AVX2
// and one without, share the noise in coupled verification. So the noise uses logLane,
// a logarithm written here as a fixed sequence of IEEE operations, which gumbel_amd64.s
// repeats on 4 lanes at once; math.Log may differ between platforms and Go releases.
//
// logLane(x), for a positive normal x, is the fdlibm logarithm (Go's math.Log) with
// its reduction done on the bits:
//
//	kb = (bits(x) + logOff) >> 52           k + 1023, for x = m·2^k, m in [√½, √2)
//	m  = frombits(bits(x) - kb<<52 + bits(1.0))
//	k  = frombits(kb | 0x433<<52) - (2^52 + 1023)     exact: kb < 2^11
//	f  = m - 1                               exact (Sterbenz)
//	s  = f / (2 + f); s2 = s*s; s4 = s2*s2
//	t1 = s2*(L1 + s4*(L3 + s4*(L5 + s4*L7)))
//	t2 = s4*(L2 + s4*(L4 + s4*L6))
//	h  = (0.5*f)*f
//	log x = k*ln2hi - ((h - (s*(h + (t1+t2)) + k*ln2lo)) - f)
//
// Each product is rounded before it is added (no fused multiply-adds: the float64
// conversions below stop the Go compiler from fusing, and the assembly has none), so
// the Go and assembly results agree bit for bit. The error is below 1 ulp, as for
// fdlibm (TestLogLane measures at most 0.72 ulp against a 200-bit reference).
//
// The noise is g = -logLane(|logLane(u)|) with u = Uniform(seed, pos, token). Uniform
// returns values in [2^-54, 1], so the inner argument is a positive normal and the
// outer one lies in [2.2e-16, 37.5] or is 0. It is 0 only for u = 1 (h>>11 = 2^53-1,
// where Uniform's +0.5 rounds up), probability 2^-53 per token: logLane(+0) reads the
// zero bits as 1·2^-1023 and returns -1023·ln 2, so g = 709.09 there where
// -math.Log(-math.Log(1)) would be +Inf. Both make the token win its race.
const (
	logOff   = 0x3ff0000000000000 - 0x3fe6a09e667f3bcd // 1.0 minus √½, as bits
	logOne   = 0x3ff0000000000000                      // bits of 1.0
	logMagic = 0x4330000000000000                      // bits of 2^52
	logKBias = 1<<52 + 1023

	logLn2Hi = 6.93147180369123816490e-01 // 0x3fe62e42fee00000: k*logLn2Hi is exact
	logLn2Lo = 1.90821492927058770002e-10 // 0x3dea39ef35793c76
	logL1    = 6.666666666666735130e-01   // 0x3fe5555555555593
	logL2    = 3.999999999940941908e-01   // 0x3fd999999997fa04
	logL3    = 2.857142874366239149e-01   // 0x3fd2492494229359
	logL4    = 2.222219843214978396e-01   // 0x3fcc71c51d8e78af
	logL5    = 1.818357216161805012e-01   // 0x3fc7466496cb03de
	logL6    = 1.531383769920937332e-01   // 0x3fc39a09d078c69f
	logL7    = 1.479819860511658591e-01   // 0x3fc2f112df3e5244
)

// logLane is the natural logarithm of a positive normal x, as one lane of the assembly
// computes it (see the table above). For other inputs the result is meaningless but
// still the same on every path.
func logLane(x float64) float64 {
	b := math.Float64bits(x)
	kb := (b + logOff) >> 52
	m := math.Float64frombits(b - kb<<52 + logOne)
	k := math.Float64frombits(kb|logMagic) - logKBias
	f := m - 1
	s := f / (2 + f)
	s2 := s * s
	s4 := s2 * s2
	t1 := float64(s2 * (logL1 + float64(s4*(logL3+float64(s4*(logL5+float64(s4*logL7)))))))
	t2 := float64(s4 * (logL2 + float64(s4*(logL4+float64(s4*logL6)))))
	h := float64(float64(0.5*f) * f)
	r := float64(s*(h+(t1+t2))) + float64(k*logLn2Lo)
	return float64(k*logLn2Hi) - ((h - r) - f)
}

// gumbelOf is the Gumbel noise for a uniform draw u in (0, 1].
func gumbelOf(u float64) float64 {
	return -logLane(math.Abs(logLane(u)))
}

// Gumbel returns standard Gumbel noise for (seed, pos, token): -log(-log(u)) with
// u = Uniform(seed, pos, token) and the logarithm of logLane, the same bits on every
// platform and in the batched gumbelRange and gumbelIDs.
func Gumbel(seed, pos, token uint64) float64 {
	return gumbelOf(Uniform(seed, pos, token))
}

// Constants of Uniform's hash, split so that the batch functions can hoist the part
// that depends on (seed, pos) alone: Uniform(seed, pos, t) hashes
// mix(posKey(seed, pos) ^ mix(t + streamOff)).
const (
	mixAdd    = 0x9e3779b97f4a7c15
	mixMul1   = 0xbf58476d1ce4e5b9
	mixMul2   = 0x94d049bb133111eb
	posOff    = 0x9e3779b97f4a7c15
	streamOff = 0x632be59bd9b4e019
)

// posKey is the part of Uniform's hash that does not depend on the stream.
func posKey(seed, pos uint64) uint64 { return seed ^ mix(pos^posOff) }

// uniformKeyed is Uniform(seed, pos, t) given key = posKey(seed, pos).
func uniformKeyed(key, t uint64) float64 {
	h := mix(key ^ mix(t+streamOff))
	return (float64(h>>11) + 0.5) * (1.0 / (1 << 53))
}

// mix is SplitMix64's finaliser: a bijection with good avalanche.
func mix(z uint64) uint64 {
	z += mixAdd
	z = (z ^ (z >> 30)) * mixMul1
	z = (z ^ (z >> 27)) * mixMul2
	return z ^ (z >> 31)
}

// gumbelRange sets dst[i] = Gumbel(seed, pos, first+i) for i < len(dst).
func gumbelRange(dst []float64, seed, pos, first uint64) {
	key := posKey(seed, pos)
	n := gumbelsVec(dst, nil, first, key)
	for i := n; i < len(dst); i++ {
		dst[i] = gumbelOf(uniformKeyed(key, first+uint64(i)))
	}
}

// gumbelIDs sets dst[i] = Gumbel(seed, pos, uint64(ids[i])) for i < len(ids); dst must
// be at least as long as ids.
func gumbelIDs(dst []float64, seed, pos uint64, ids []int32) {
	dst = dst[:len(ids)]
	key := posKey(seed, pos)
	n := gumbelsVec(dst, ids, 0, key)
	for i := n; i < len(dst); i++ {
		dst[i] = gumbelOf(uniformKeyed(key, uint64(ids[i])))
	}
}
