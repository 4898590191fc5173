package sample

import (
	"math"

	"golang.org/x/sys/cpu"
)

// gumbelAVX2 selects the assembly; without it every draw takes the scalar path, which
// gives the same bits.
var gumbelAVX2 = cpu.X86.HasAVX2

// gumbelTab holds the constants of gumbelUniforms and gumbelLogs, each repeated in 4 lanes; row i sits at
// byte offset 32·i, the order gumbel_amd64.s addresses them in. The values come from
// the constants logLane, mix and uniformKeyed use, so the paths cannot drift apart.
var gumbelTab = func() (t [28][4]uint64) {
	f := math.Float64bits
	rows := [...]uint64{
		logOff,
		logOne, // also 1.0
		logMagic,
		f(logKBias),
		f(2),
		f(0.5),
		f(logL1),
		f(logL2),
		f(logL3),
		f(logL4),
		f(logL5),
		f(logL6),
		f(logL7),
		f(logLn2Lo),
		f(logLn2Hi),
		1<<63 - 1, // |x| mask
		1 << 63,   // sign bit
		mixAdd,
		(streamOff + mixAdd) & (1<<64 - 1), // the first mix's addition folded in, mod 2^64
		mixMul1,
		mixMul1 >> 32,
		mixMul2,
		mixMul2 >> 32,
		0x4530000000000000, // bits of 2^84
		f(1<<84 + 1<<52),
		f(1.0 / (1 << 53)),
		4,
		0, // lane index, set below
	}
	for i, v := range rows {
		for l := range t[i] {
			t[i][l] = v
		}
	}
	for l := range t[len(rows)-1] {
		t[len(rows)-1][l] = uint64(l)
	}
	return t
}()

// gumbelUniforms sets dst[i] = uniformKeyed(key, t_i) for i < n, a positive multiple
// of 4, with t_i = uint64(ids[i]), or first+i when ids is nil.
//
//go:noescape
func gumbelUniforms(dst *float64, n int, ids *int32, first, key uint64, c *[28][4]uint64)

// gumbelLogs sets dst[i] = gumbelOf(dst[i]) for i < n, a positive multiple of 4.
//
//go:noescape
func gumbelLogs(dst *float64, n int, c *[28][4]uint64)

// gumbelsVec fills the longest prefix of dst whose length is a multiple of 4 as
// gumbelRange (ids nil) or gumbelIDs would, and returns that length: 0 without AVX2.
// A non-nil ids is as long as dst. The hashes and the logarithms run as two passes:
// each loop is short enough for the processor to overlap several iterations.
func gumbelsVec(dst []float64, ids []int32, first, key uint64) int {
	n := len(dst) &^ 3
	if !gumbelAVX2 || n == 0 {
		return 0
	}
	var p *int32
	if ids != nil {
		p = &ids[:n][0]
	}
	gumbelUniforms(&dst[0], n, p, first, key, &gumbelTab)
	gumbelLogs(&dst[0], n, &gumbelTab)
	return n
}
