//go:build !amd64

package kernels

// Softmax replaces x by the softmax of scale·x (see softmaxGeneric).
func Softmax(x []float32, scale float32) { softmaxGeneric(x, scale) }

// SwiGLU sets g[i] = g[i] / (1 + exp(-g[i])) · u[i] for i < len(g); len(u) >= len(g).
func SwiGLU(g, u []float32) { swigluGeneric(g, u) }
