package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/specd-dev/specd/ggml"
)

// TensorData is a tensor to write: its description (Dims ne0 first, as in TensorInfo) and
// its encoded bytes, which must be exactly the size Dims and Type imply.
type TensorData struct {
	Name string
	Dims []uint64
	Type ggml.Type
	Data []byte
}

// Write encodes a GGUF v3 file: the metadata in kv order, then the tensor infos and data in
// tensors order, each tensor's data starting at a multiple of alignment and padded with
// zeros.
//
// alignment 0 means the value of general.alignment in kv, or DefaultAlignment when kv has
// none. A nonzero alignment must be a power of two; when it is not DefaultAlignment and kv
// has no general.alignment, Write appends general.alignment (uint32) to the metadata so
// that readers find the data, and when kv has one it must equal alignment.
//
// Write checks its input before writing anything and returns ErrMalformed for what would
// make a malformed file (a duplicate key or tensor name, an unknown value type, a bad
// alignment, dims that do not match the data) and ErrUnsupportedType for a tensor type
// kernels does not support; otherwise it returns the writer's error.
func Write(w io.Writer, kv []KV, tensors []TensorData, alignment uint64) error {
	kv, alignment, err := checkWrite(kv, tensors, alignment)
	if err != nil {
		return err
	}
	e := &encoder{w: bufio.NewWriterSize(w, 1<<16)}
	e.bytes([]byte(Magic))
	e.u32(3)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kv)))
	for _, x := range kv {
		e.str(x.Key)
		e.u32(uint32(x.Value.Type))
		e.value(x.Value)
	}
	var offset uint64
	for _, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(offset)
		offset, _ = alignUp(offset+uint64(len(t.Data)), alignment)
	}
	e.pad(alignment)
	e.n = 0 // tensor offsets count from the start of the data section, itself aligned
	for _, t := range tensors {
		e.bytes(t.Data)
		e.pad(alignment)
	}
	if e.err != nil {
		return fmt.Errorf("gguf: write: %w", e.err)
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("gguf: write: %w", err)
	}
	return nil
}

// checkWrite validates the input of Write and returns the metadata to write and the
// alignment to use.
func checkWrite(kv []KV, tensors []TensorData, alignment uint64) ([]KV, uint64, error) {
	bad := func(where, detail string, sentinel error) error {
		return fmt.Errorf("gguf: write: %s: %w: %s", where, sentinel, detail)
	}
	keys := make(map[string]bool, len(kv))
	fromKV := uint64(0)
	for _, x := range kv {
		where := fmt.Sprintf("key %q", x.Key)
		if keys[x.Key] {
			return nil, 0, bad(where, "duplicate key", ErrMalformed)
		}
		keys[x.Key] = true
		if err := checkValue(x.Value, 0); err != "" {
			return nil, 0, bad(where, err, ErrMalformed)
		}
		if x.Key == AlignmentKey {
			a, ok := x.Value.Uint()
			if !ok || a == 0 || a&(a-1) != 0 {
				return nil, 0, bad(where, fmt.Sprintf("alignment %v %v is not a nonzero power of two", x.Value.Type, x.Value), ErrMalformed)
			}
			fromKV = a
		}
	}
	switch {
	case alignment == 0 && fromKV != 0:
		alignment = fromKV
	case alignment == 0:
		alignment = DefaultAlignment
	case alignment&(alignment-1) != 0:
		return nil, 0, bad("alignment", fmt.Sprintf("%d is not a power of two", alignment), ErrMalformed)
	case fromKV != 0 && fromKV != alignment:
		return nil, 0, bad("alignment", fmt.Sprintf("%d, but %s is %d", alignment, AlignmentKey, fromKV), ErrMalformed)
	case fromKV == 0 && alignment != DefaultAlignment:
		if alignment > 1<<31 {
			return nil, 0, bad("alignment", fmt.Sprintf("%d does not fit the uint32 of %s", alignment, AlignmentKey), ErrMalformed)
		}
		kv = append(kv[:len(kv):len(kv)], KV{Key: AlignmentKey, Value: NewUint32(uint32(alignment))})
	}
	names := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		where := fmt.Sprintf("tensor %q", t.Name)
		if names[t.Name] {
			return nil, 0, bad(where, "duplicate tensor name", ErrMalformed)
		}
		names[t.Name] = true
		if !t.Type.Supported() {
			return nil, 0, bad(where, fmt.Sprintf("type %d", uint32(t.Type)), ErrUnsupportedType)
		}
		if len(t.Dims) == 0 || len(t.Dims) > maxDims {
			return nil, 0, bad(where, fmt.Sprintf("%d dimensions (want 1 to %d)", len(t.Dims), maxDims), ErrMalformed)
		}
		size, detail := tensorSize(t.Dims, t.Type)
		if detail != "" {
			return nil, 0, bad(where, detail, ErrMalformed)
		}
		if size != uint64(len(t.Data)) {
			return nil, 0, bad(where, fmt.Sprintf("%d bytes of data, dims %v of %v need %d", len(t.Data), t.Dims, t.Type, size), ErrMalformed)
		}
	}
	return kv, alignment, nil
}

// checkValue returns what is wrong with v, or "".
func checkValue(v Value, depth int) string {
	if !v.Type.valid() {
		return fmt.Sprintf("unknown value type %d", uint32(v.Type))
	}
	if v.Type != TypeArray {
		return ""
	}
	if v.arr == nil {
		return "array value not built by this package (use NewArray)"
	}
	if depth >= maxNesting {
		return fmt.Sprintf("arrays nested more than %d deep", maxNesting)
	}
	if !v.arr.elem.valid() {
		return fmt.Sprintf("array of unknown value type %d", uint32(v.arr.elem))
	}
	for i, e := range v.arr.vals {
		if msg := checkValue(e, depth+1); msg != "" {
			return fmt.Sprintf("array element %d: %s", i, msg)
		}
	}
	return ""
}

// encoder writes little-endian fields, keeping the first error and counting bytes for
// padding.
type encoder struct {
	w   *bufio.Writer
	n   uint64
	err error
	buf [8]byte
}

func (e *encoder) bytes(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
	e.n += uint64(len(b))
}

func (e *encoder) u32(x uint32) {
	binary.LittleEndian.PutUint32(e.buf[:4], x)
	e.bytes(e.buf[:4])
}

func (e *encoder) u64(x uint64) {
	binary.LittleEndian.PutUint64(e.buf[:8], x)
	e.bytes(e.buf[:8])
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
		e.n += uint64(len(s))
	}
}

func (e *encoder) pad(alignment uint64) {
	end, _ := alignUp(e.n, alignment)
	var zeros [64]byte
	for e.n < end {
		e.bytes(zeros[:min(end-e.n, uint64(len(zeros)))])
	}
}

// value writes the payload of v (its type is written by the caller).
func (e *encoder) value(v Value) {
	switch v.Type {
	case TypeString:
		e.str(v.str)
		return
	case TypeArray:
		a := v.arr
		e.u32(uint32(a.elem))
		e.u64(uint64(a.n))
		switch a.elem {
		case TypeString:
			for _, s := range a.strs {
				e.str(s)
			}
		case TypeArray:
			for _, x := range a.vals {
				e.value(x)
			}
		default:
			e.bytes(a.raw)
		}
		return
	}
	var b [8]byte
	e.bytes(appendScalar(b[:0], v))
}
