package kernels

import "golang.org/x/sys/cpu"

//go:noescape
func vdotF32(a, b *float32, n int) float32

//go:noescape
func vaxpyF32(y *float32, a float32, x *float32, n int)

var vecAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// Dot returns the dot product of a and b[:len(a)], reduced in a fixed order (the same
// for every call, so results do not depend on how a computation was batched).
func Dot(a, b []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	b = b[:len(a)]
	if vecAVX2 {
		return vdotF32(&a[0], &b[0], len(a))
	}
	return dotGeneric(a, b)
}

// Axpy adds a·x[:len(y)] to y.
func Axpy(y []float32, a float32, x []float32) {
	if len(y) == 0 {
		return
	}
	x = x[:len(y)]
	if vecAVX2 {
		vaxpyF32(&y[0], a, &x[0], len(y))
		return
	}
	axpyGeneric(y, a, x)
}
