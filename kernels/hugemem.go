package kernels

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
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

func newHugeChunk(n int) *hugeChunk { return chunkOf(hugeAlloc(n)) }

// chunkOf returns the chunk of b, whose release (nil: none, b is Go memory) runs once
// the chunk is unreachable.
func chunkOf(b []byte, release func()) *hugeChunk {
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

// Mem is memory outside the Go heap, from NewHugeMem or NewPagedMem: large, long-lived,
// pointer-free buffers (KV caches, scratch) there do not count towards the garbage
// collector's heap goal, which would otherwise let that much garbage build up before a
// collection. The mapping is returned to the OS once the Mem is unreachable, so slices
// of it must not outlive it.
type Mem struct{ m *hugeMem }

// NewHugeMem returns n zeroed bytes, 64-byte aligned, backed where the OS allows by
// transparent huge pages. Pages are only resident once written, 2 MB at a time. A
// mapping of hugeChunkBytes or more that the OS refuses (on Linux: more than the
// system may commit, or than the address space holds) is an error, not a fallback to
// the Go heap as for weights: a KV budget of a few TiB would end the process there.
func NewHugeMem(n int) (*Mem, error) {
	if n < hugeChunkBytes {
		return &Mem{m: newHugeMem(n)}, nil
	}
	b, release, err := hugeMap(n)
	if err != nil {
		return nil, fmt.Errorf("mapping %d bytes: %w", n, err)
	}
	return &Mem{m: &hugeMem{b: b, chunk: chunkOf(b, release)}}, nil
}

// NewPagedMem returns n zeroed bytes, page-aligned, on small pages: for buffers of which
// only a part may ever be written (a pass's scratch sized for its longest case), as a
// page is resident only once written.
func NewPagedMem(n int) *Mem {
	b, release := pageAlloc(n)
	return &Mem{m: &hugeMem{b: b, chunk: chunkOf(b, release)}}
}

// Len is the memory's size in bytes.
func (h *Mem) Len() int { return len(h.m.b) }

// Floats returns n float32s of the memory from byte offset off, which must be a
// multiple of 4.
func (h *Mem) Floats(off, n int) []float32 {
	b := h.m.b[off : off+4*n]
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}

// Halves returns n uint16s of the memory from byte offset off, which must be even.
func (h *Mem) Halves(off, n int) []uint16 {
	b := h.m.b[off : off+2*n]
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), n)
}
