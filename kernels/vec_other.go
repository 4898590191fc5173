//go:build !amd64

package kernels

// Dot returns the dot product of a and b[:len(a)], reduced in a fixed order.
func Dot(a, b []float32) float32 { return dotGeneric(a, b[:len(a)]) }

// Axpy adds a·x[:len(y)] to y.
func Axpy(y []float32, a float32, x []float32) { axpyGeneric(y, a, x[:len(y)]) }

// Scores sets out[j] = dot(q, k[j*stride:][:len(q)]) for j < len(out).
func Scores(out, q, k []float32, stride int) { scoresGeneric(out, q, k, stride) }

// Accum adds w[j] * v[j*stride:][:len(out)] to out for j < len(w), in order of j.
func Accum(out, v []float32, stride int, w []float32) { accumGeneric(out, v, stride, w) }
