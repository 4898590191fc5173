package mmap

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Release tells the kernel that b, a part of mapping (a mapping made by File), will not
// be read soon: the whole pages inside b leave the process's resident set. They stay in
// the page cache, and a later read maps them back, with the same bytes. A b that does
// not lie inside mapping is left alone, so a copy on the heap is never touched.
func Release(mapping, b []byte) error {
	if len(b) == 0 || len(mapping) == 0 {
		return nil
	}
	lo, hi := uintptr(unsafe.Pointer(&mapping[0])), uintptr(unsafe.Pointer(&mapping[0]))+uintptr(len(mapping))
	start := uintptr(unsafe.Pointer(&b[0]))
	if start < lo || start+uintptr(len(b)) > hi {
		return nil
	}
	page := uintptr(os.Getpagesize())
	first := (start + page - 1) &^ (page - 1)
	last := (start + uintptr(len(b))) &^ (page - 1)
	if first >= last {
		return nil
	}
	return unix.Madvise(mapping[first-lo:last-lo], unix.MADV_DONTNEED)
}
