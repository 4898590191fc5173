package kernels

import (
	"runtime"
	"testing"
	"unsafe"
)

// TestMemViews checks that both kinds of Mem are zeroed, aligned, as long as asked,
// and that Floats and Halves are views of the same bytes at their offsets.
func TestMemViews(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alloc func(int) *Mem
		align uintptr
	}{
		{"huge small", mustHuge, 64},
		{"huge own mapping", mustHuge, 64},
		{"paged", NewPagedMem, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 3<<20 + 100
			if tc.name == "huge own mapping" {
				n = hugeChunkBytes + 4096
			}
			m := tc.alloc(n)
			if m.Len() != n {
				t.Fatalf("Len %d, want %d", m.Len(), n)
			}
			f := m.Floats(64, 1000)
			if len(f) != 1000 || uintptr(unsafe.Pointer(&f[0]))%tc.align != 64%tc.align {
				t.Fatalf("Floats(64, 1000): len %d at %p", len(f), &f[0])
			}
			for i, v := range f {
				if v != 0 {
					t.Fatalf("float %d is %v, want 0", i, v)
				}
				f[i] = float32(i)
			}
			h := m.Halves(64, 2000)
			if got := *(*float32)(unsafe.Pointer(&h[2*999])); got != 999 {
				t.Fatalf("Halves does not view the bytes Floats wrote: %v", got)
			}
			if m.Floats(n-4, 1) == nil || m.Floats(8, 0) != nil {
				t.Fatal("the last float, or an empty view, came out wrong")
			}
			runtime.KeepAlive(m)
		})
	}
}

func mustHuge(n int) *Mem {
	m, err := NewHugeMem(n)
	if err != nil {
		panic(err)
	}
	return m
}

// TestMemPastEnd checks that a view past the end panics, as a slice would.
func TestMemPastEnd(t *testing.T) {
	m := NewPagedMem(4096)
	defer func() {
		if recover() == nil {
			t.Fatal("Floats past the end did not panic")
		}
	}()
	m.Floats(4096-8, 3)
}
