package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randHalves returns n fp16 values of random floats in (-2, 2).
func randHalves(rng *rand.Rand, n int) []uint16 {
	h := make([]uint16, n)
	for i := range h {
		h[i] = FP32ToFP16(rng.Float32()*4 - 2)
	}
	return h
}

// converted is the float32 copy of rows stored as fp16: what attention read before the
// F16 kernels, and their reference.
func converted(h []uint16) []float32 {
	f := make([]float32, len(h))
	HalfRows(f, len(h), h, len(h), 1, len(h))
	return f
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v, want %v (float32 kernel on converted rows)", what, i, got[i], want[i])
		}
	}
}

// TestHalfKernelsMatchConverted checks that every F16 attention kernel gives bitwise the
// results of converting the rows and calling its float32 counterpart, across odd head
// dimensions and row counts (the eight-row groups and the tails).
func TestHalfKernelsMatchConverted(t *testing.T) {
	halfPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(21, 22))
		for _, hd := range []int{8, 16, 24, 32, 40, 48, 56, 64, 72, 96, 128, 200, 272, 300} {
			for _, n := range []int{1, 3, 7, 8, 9, 17, 64} {
				stride := hd + 24
				kh := randHalves(rng, n*stride)
				kf := converted(kh)
				q := [4][]float32{randSlice(rng, hd), randSlice(rng, hd), randSlice(rng, hd), randSlice(rng, hd)}
				w := [4][]float32{randSlice(rng, n), randSlice(rng, n), randSlice(rng, n), randSlice(rng, n)}
				name := fmt.Sprintf("hd=%d n=%d", hd, n)

				got, want := make([]float32, n), make([]float32, n)
				ScoresHalf(got, q[0], kh, stride)
				Scores(want, q[0], kf, stride)
				sameBits(t, name+": ScoresHalf", got, want)

				got2, want2 := make([]float32, n), make([]float32, n)
				Scores2Half(got, got2, q[0], q[1], kh, stride)
				Scores2(want, want2, q[0], q[1], kf, stride)
				sameBits(t, name+": Scores2Half out1", got, want)
				sameBits(t, name+": Scores2Half out2", got2, want2)

				var og, ow [4][]float32
				for i := range og {
					og[i] = randSlice(rng, hd)
					ow[i] = append([]float32(nil), og[i]...)
				}
				AccumHalf(og[0], kh, stride, w[0])
				Accum(ow[0], kf, stride, w[0])
				sameBits(t, name+": AccumHalf", og[0], ow[0])
				Accum2Half(og[0], og[1], kh, stride, w[1], w[2])
				Accum2(ow[0], ow[1], kf, stride, w[1], w[2])
				sameBits(t, name+": Accum2Half out1", og[0], ow[0])
				sameBits(t, name+": Accum2Half out2", og[1], ow[1])
				Accum4Half(og[0], og[1], og[2], og[3], kh, stride, w[0], w[1], w[2], w[3])
				Accum4(ow[0], ow[1], ow[2], ow[3], kf, stride, w[0], w[1], w[2], w[3])
				for i := range og {
					sameBits(t, fmt.Sprintf("%s: Accum4Half out%d", name, i+1), og[i], ow[i])
				}
			}
		}
	})
}

// TestToHalves checks the vector conversion against FP32ToFP16 over a spread of float32
// bit patterns (every sign, exponent and rounding case: ties, subnormals, overflow,
// NaN payloads), at lengths that leave a tail for Go.
func TestToHalves(t *testing.T) {
	var src []float32
	for b := uint64(0); b < 1<<32; b += 65521 {
		src = append(src, math.Float32frombits(uint32(b)))
	}
	for _, b := range []uint32{0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0x477fefff, 0x477ff000, 0x38800000, 0x33000000, 0x33000001, 0x387fe000, 0x80000001, 0x3f801000, 0x3f803000} {
		src = append(src, math.Float32frombits(b))
	}
	for _, n := range []int{len(src), len(src) - 3, 7, 1} {
		got := make([]uint16, n)
		ToHalves(got, src[:n])
		for i, f := range src[:n] {
			if want := FP32ToFP16(f); got[i] != want {
				t.Fatalf("ToHalves(%#08x) = %#04x, want %#04x", math.Float32bits(f), got[i], want)
			}
		}
	}
}
