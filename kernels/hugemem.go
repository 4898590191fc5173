package kernels

import (
	"runtime"
	"sync"
)

// hugeMem is memory for large, long-lived weight copies, backed where the OS allows by
// transparent huge pages (see hugeAlloc): streaming 27 MB of packed weights through 4 KB
// pages misses the TLB on every page, which under a virtual machine's nested paging
// costs a long page walk each time. Copies smaller than a chunk share chunks, one after
// the other: given a 2 MB mapping each, the target's 57 half-megabyte matrices held
// 114 MB of huge pages for 27 MB of weights. A chunk's memory is returned to the OS
// when no hugeMem in it is reachable; slices of b must not outlive their hugeMem.
type hugeMem struct {
	b     []byte
	chunk *hugeChunk // keeps the mapping alive
}

type hugeChunk struct{ b []byte }

// hugeChunkBytes is the size of a shared chunk; a copy this large or larger gets a
// mapping of its own.
const hugeChunkBytes = 8 << 20

// hugeArena is the chunk that small copies are carved from, and its first free byte.
var hugeArena struct {
	sync.Mutex
	chunk *hugeChunk
	off   int
}

func newHugeChunk(n int) *hugeChunk {
	b, release := hugeAlloc(n)
	c := &hugeChunk{b: b}
	if release != nil {
		runtime.AddCleanup(c, func(f func()) { f() }, release)
	}
	return c
}

// newHugeMem returns n zeroed bytes, 64-byte aligned.
func newHugeMem(n int) *hugeMem {
	if n >= hugeChunkBytes {
		c := newHugeChunk(n)
		return &hugeMem{b: c.b, chunk: c}
	}
	a := &hugeArena
	a.Lock()
	defer a.Unlock()
	if a.chunk == nil || a.off+n > len(a.chunk.b) {
		a.chunk, a.off = newHugeChunk(hugeChunkBytes), 0
	}
	b := a.chunk.b[a.off : a.off+n : a.off+n]
	a.off = (a.off + n + 63) &^ 63
	return &hugeMem{b: b, chunk: a.chunk}
}
