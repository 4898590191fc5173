//go:build !linux

package kernels

// hugeAlloc returns n zeroed bytes from the Go heap: huge pages are only asked for on
// Linux.
func hugeAlloc(n int) ([]byte, func()) { return make([]byte, n), nil }

// pageAlloc returns n zeroed bytes from the Go heap.
func pageAlloc(n int) ([]byte, func()) { return make([]byte, n), nil }
