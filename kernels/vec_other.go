//go:build !amd64

package kernels

// Dot returns the dot product of a and b[:len(a)], reduced in a fixed order.
func Dot(a, b []float32) float32 { return dotGeneric(a, b[:len(a)]) }

// Axpy adds a·x[:len(y)] to y.
func Axpy(y []float32, a float32, x []float32) { axpyGeneric(y, a, x[:len(y)]) }
