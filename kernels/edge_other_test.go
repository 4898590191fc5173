//go:build !linux

package kernels

import "testing"

// pageEdge returns n floats; off Linux nothing guards the memory after them.
func pageEdge(t *testing.T, n int) []float32 { return make([]float32, n) }
