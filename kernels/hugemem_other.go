//go:build !linux

package kernels

// hugeAlloc returns n zeroed bytes from the Go heap: huge pages are only asked for on
// Linux.
func hugeAlloc(n int) ([]byte, func()) { return make([]byte, n), nil }

// hugeMap returns n zeroed bytes from the Go heap, which cannot report a size beyond
// memory as an error.
func hugeMap(n int) ([]byte, func(), error) { return make([]byte, n), nil, nil }

// pageAlloc returns n zeroed bytes from the Go heap.
func pageAlloc(n int) ([]byte, func()) { return make([]byte, n), nil }
