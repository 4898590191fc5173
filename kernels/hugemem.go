package kernels

import "runtime"

// hugeMem is memory for large, long-lived weight copies, backed where the OS allows by
// transparent huge pages (see hugeAlloc): streaming 27 MB of packed weights through 4 KB
// pages misses the TLB on every page, which under a virtual machine's nested paging
// costs a long page walk each time. The memory is returned to the OS when the hugeMem
// becomes unreachable; slices of b must not outlive it.
type hugeMem struct {
	b []byte
}

// newHugeMem returns n zeroed bytes.
func newHugeMem(n int) *hugeMem {
	b, release := hugeAlloc(n)
	h := &hugeMem{b: b}
	if release != nil {
		runtime.AddCleanup(h, func(f func()) { f() }, release)
	}
	return h
}
