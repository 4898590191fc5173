package kernels

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/specd-dev/specd/ggml"
)

// testTensor is one tensor found by readTestGGUF. Dims are in GGUF order: Dims[0] is the
// number of columns (the contiguous dimension).
type testTensor struct {
	Name string
	Dims []int
	Type ggml.Type
	Data []byte
}

// readTestGGUF is a minimal GGUF v2/v3 tensor locator for the llama.cpp cross-check, so
// that these tests do not depend on the gguf package. It trusts its input (the shared
// model files) only as far as bounds checks go.
func readTestGGUF(tb testing.TB, path string) map[string]testTensor {
	tb.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	r := &ggufReader{b: buf}
	defer func() {
		if e := recover(); e != nil {
			tb.Fatalf("%s: %v", path, e)
		}
	}()
	if string(r.next(4)) != "GGUF" {
		tb.Fatalf("%s: not a GGUF file", path)
	}
	if v := r.u32(); v < 2 {
		tb.Fatalf("%s: GGUF version %d", path, v)
	}
	nt, nkv := int(r.u64()), int(r.u64())
	align := 32
	for range nkv {
		key := r.str()
		typ := r.u32()
		if key == "general.alignment" && typ == 4 {
			align = int(r.u32())
			continue
		}
		r.skipValue(typ)
	}
	type info struct {
		name string
		dims []int
		typ  ggml.Type
		off  int
	}
	infos := make([]info, nt)
	for i := range infos {
		in := &infos[i]
		in.name = r.str()
		in.dims = make([]int, r.u32())
		for d := range in.dims {
			in.dims[d] = int(r.u64())
		}
		in.typ = ggml.Type(r.u32())
		in.off = int(r.u64())
	}
	base := (r.off + align - 1) / align * align
	out := make(map[string]testTensor, nt)
	for _, in := range infos {
		n := 1
		for _, d := range in.dims {
			n *= d
		}
		size, err := in.typ.RowBytes(n)
		if err != nil {
			tb.Fatalf("%s: tensor %s: %v", path, in.name, err)
		}
		out[in.name] = testTensor{Name: in.name, Dims: in.dims, Type: in.typ, Data: buf[base+in.off : base+in.off+size]}
	}
	return out
}

type ggufReader struct {
	b   []byte
	off int
}

func (r *ggufReader) next(n int) []byte {
	if n < 0 || r.off+n > len(r.b) {
		panic(fmt.Sprintf("truncated at offset %d", r.off))
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *ggufReader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *ggufReader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }
func (r *ggufReader) str() string { return string(r.next(int(r.u64()))) }

// skipValue skips a metadata value of GGUF value type typ.
func (r *ggufReader) skipValue(typ uint32) {
	sizes := map[uint32]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
	switch typ {
	case 8:
		r.str()
	case 9:
		et, n := r.u32(), int(r.u64())
		for range n {
			r.skipValue(et)
		}
	default:
		sz, ok := sizes[typ]
		if !ok {
			panic(fmt.Sprintf("unknown metadata type %d", typ))
		}
		r.next(sz)
	}
}
