package kernels

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeAlloc maps n zeroed bytes aligned to 2 MB and asks for transparent huge pages
// (MADV_HUGEPAGE, which the "madvise" THP setting requires). It falls back to the Go
// heap, with a nil release, if the mapping fails.
func hugeAlloc(n int) ([]byte, func()) {
	b, release, err := hugeMap(n)
	if err != nil {
		return make([]byte, n), nil
	}
	return b, release
}

// hugeMap is hugeAlloc without the fallback: it returns the error of a mapping the OS
// refuses (ENOMEM for more than the system may commit).
func hugeMap(n int) ([]byte, func(), error) {
	const huge = 2 << 20
	if n <= 0 {
		return nil, nil, nil
	}
	size := (n + huge - 1) / huge * huge
	m, err := unix.Mmap(-1, 0, size+huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, err
	}
	off := 0
	if a := int(uintptr(unsafe.Pointer(&m[0])) % huge); a != 0 {
		off = huge - a
	}
	b := m[off : off+size]
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // advice only: without it the pages are small
	return b[:n], func() { _ = unix.Munmap(m) }, nil
}

// pageAlloc maps n zeroed bytes on small pages (MADV_NOHUGEPAGE, for the "always" THP
// setting). It falls back to the Go heap, with a nil release, if the mapping fails.
func pageAlloc(n int) ([]byte, func()) {
	if n <= 0 {
		return nil, nil
	}
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, n), nil
	}
	_ = unix.Madvise(m, unix.MADV_NOHUGEPAGE) // advice only
	return m, func() { _ = unix.Munmap(m) }
}
