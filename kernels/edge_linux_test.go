package kernels

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pageEdge returns n floats that end where an unreadable page begins, so a kernel that
// reads or writes one element past them faults. The memory is unmapped at cleanup.
func pageEdge(t *testing.T, n int) []float32 {
	t.Helper()
	page := unix.Getpagesize()
	size := (4*n + page - 1) / page * page
	m, err := unix.Mmap(-1, 0, size+page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { _ = unix.Munmap(m) })
	if err := unix.Mprotect(m[size:], unix.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	all := unsafe.Slice((*float32)(unsafe.Pointer(&m[0])), size/4)
	return all[size/4-n:]
}
