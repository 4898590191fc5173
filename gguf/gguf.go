// Package gguf reads and writes GGUF files, the model format of llama.cpp: a header of
// typed key–value metadata, a table of tensor descriptions, and the tensor data, which Open
// memory-maps read-only so that loading a model copies no weights.
//
// The reader treats every file as untrusted. Each count, length, offset and dimension is
// checked against the bytes that remain before it is used, so a truncated or lying file
// gets an error naming the key or tensor and the byte offset; never a panic, a read outside
// the file, or memory out of proportion to the file's size (a count is checked against the
// bytes left before anything is allocated for it).
//
// The package knows the container, not the models in it: it does not interpret
// general.architecture or any llama.* key, and it depends only on kernels (for the tensor
// element types) and the standard library. It assumes nothing about the host byte order:
// metadata is decoded explicitly as little-endian, and tensor data is handed out as bytes.
//
// Specification: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md. Versions 2 and
// 3 are read (they differ only in that v3 may be big-endian, which is rejected); version 1,
// which used 32-bit counts, is rejected. Write produces version 3.
package gguf

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"slices"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/mmap"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the alignment of tensor data when general.alignment is absent.
const DefaultAlignment = 32

// AlignmentKey is the metadata key that sets the alignment of tensor data.
const AlignmentKey = "general.alignment"

// maxDims is the largest number of dimensions a tensor may have (GGML_MAX_DIMS).
const maxDims = 4

// maxNesting bounds how deeply arrays may nest inside arrays. The specification sets no
// limit; no real file nests more than once, and the bound keeps a hostile file from
// driving deep recursion.
const maxNesting = 16

// maxPrealloc is the most entries a count read from a file reserves room for before
// they are read. A count is checked against the bytes left, but only against each
// entry's smallest encoding, and an entry in memory is several times that: reserving a
// lying count in full would ask for many times the file's size before the first entry
// turns out bad. Past this many, slices and maps grow as the entries are read.
const maxPrealloc = 1 << 10

// Sentinel errors. Parse and Open wrap the format errors in a *FormatError that names the
// key or tensor and the byte offset; test for them with errors.Is.
var (
	// ErrNotGGUF means the file does not start with the GGUF magic.
	ErrNotGGUF = errors.New("not a GGUF file")
	// ErrVersion means the GGUF version is not 2 or 3, or the file is big-endian.
	ErrVersion = errors.New("unsupported GGUF version")
	// ErrTruncated means the file ends before something it declares: a header field, a
	// string or array longer than the bytes left, tensor data past the end of the file.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed means the file is long enough but inconsistent: an unknown value type,
	// a duplicate key or tensor name, a bad alignment, misaligned or overlapping tensor
	// data, impossible dimensions.
	ErrMalformed = errors.New("malformed")
	// ErrUnsupportedType means a tensor's element type is not one ggml.Type supports.
	ErrUnsupportedType = errors.New("unsupported tensor type")
	// ErrNotFound means no key or tensor of that name is in the file.
	ErrNotFound = errors.New("not found")
	// ErrWrongType means a key holds a value of another type than the one asked for.
	ErrWrongType = errors.New("wrong value type")
	// ErrClosed means the File was closed and its tensor data is no longer mapped.
	ErrClosed = errors.New("file closed")
)

// FormatError describes what is wrong with a GGUF file and where. Err is one of the
// sentinel errors, so errors.Is(err, ErrTruncated) works through a *FormatError.
type FormatError struct {
	Where  string // what was being read: "header", `key "general.name"`, `tensor "output.weight"`
	Offset int64  // byte offset in the file of the field at fault
	Err    error  // the sentinel: ErrTruncated, ErrMalformed, ...
	Detail string // what exactly is wrong
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("gguf: %s at byte %d: %v: %s", e.Where, e.Offset, e.Err, e.Detail)
}

func (e *FormatError) Unwrap() error { return e.Err }

// File is a parsed GGUF file. Its metadata (KV, Tensors) are copies that stay valid after
// Close; the tensor data returned by Tensor is a view of the file that does not.
//
// A File is safe for concurrent readers; Close must not run concurrently with Tensor.
type File struct {
	Version   uint32
	Alignment uint64       // alignment of the data section and of every tensor offset
	KV        []KV         // in file order
	Tensors   []TensorInfo // in file order

	data      []byte // the whole file; nil after Close
	dataStart uint64 // byte offset of the data section (aligned)
	keys      map[string]int
	tensors   map[string]int
	mapping   []byte // the mmap that Close releases; nil for a File made by Parse
	closed    bool
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor. Dims lists ne0 first: Dims[0] is the length of a row
// (the contiguous dimension), so a [rows][cols] matrix has Dims {cols, rows}.
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   ggml.Type
	Offset uint64 // of the first byte, relative to the start of the data section
	Size   uint64 // in bytes
}

// Elements returns the number of elements of the tensor, the product of its dims.
func (t TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Open memory-maps the file at path read-only and parses it. The tensor data slices that
// Tensor returns are views of the mapping, valid until Close; the file must not be
// truncated while it is mapped.
//
// Open returns the errors of Parse (wrapped with the path), and those of opening or
// mapping the file.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	size := st.Size()
	if size <= 0 {
		_, err := Parse(nil)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if uint64(size) > math.MaxInt {
		return nil, fmt.Errorf("gguf: %s: %d bytes is too large to map", path, size)
	}
	data, err := mmap.File(fh, int(size))
	if err != nil {
		return nil, fmt.Errorf("gguf: map %s: %w", path, err)
	}
	f, err := Parse(data)
	if err != nil {
		_ = mmap.Unmap(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.mapping = data
	return f, nil
}

// Release says that the process will not read b, a tensor's data that Tensor returned,
// for a while (the model has copied it into another layout): its pages leave the
// process's resident set but stay in the page cache, and reading b again maps them back
// with the same bytes. It does nothing for a File made by Parse, after Close, or for a b
// outside the mapping.
func (f *File) Release(b []byte) error {
	if f.mapping == nil {
		return nil
	}
	if err := mmap.Release(f.mapping, b); err != nil {
		return fmt.Errorf("gguf: release pages: %w", err)
	}
	return nil
}

// Close releases the mapping made by Open. After Close, Tensor returns ErrClosed and the
// data slices it returned before must not be used. Metadata stays readable. Close is
// idempotent.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if f.mapping != nil {
		m := f.mapping
		f.mapping = nil
		if err := mmap.Unmap(m); err != nil {
			return fmt.Errorf("gguf: unmap: %w", err)
		}
	}
	return nil
}

// Tensor returns the description and the data of the named tensor. The data is a view of
// the file (the mapping made by Open, or the slice given to Parse) with its capacity
// limited to its length; it must not be modified.
//
// Tensor returns ErrNotFound when no tensor has that name and ErrClosed after Close.
func (f *File) Tensor(name string) (TensorInfo, []byte, error) {
	i, ok := f.tensors[name]
	if !ok {
		return TensorInfo{}, nil, fmt.Errorf("gguf: tensor %q: %w", name, ErrNotFound)
	}
	if f.closed {
		return TensorInfo{}, nil, fmt.Errorf("gguf: tensor %q: %w", name, ErrClosed)
	}
	t := f.Tensors[i]
	if t.Size == 0 {
		return t, []byte{}, nil // the data section may even be absent
	}
	start := f.dataStart + t.Offset // Parse checked that this range lies inside data
	end := start + t.Size
	return t, f.data[start:end:end], nil
}

// DataOffset returns the byte offset in the file of the data section, to which the
// Offset of every tensor is relative.
func (f *File) DataOffset() uint64 { return f.dataStart }

// Lookup returns the value of a metadata key.
func (f *File) Lookup(key string) (Value, bool) {
	i, ok := f.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

func (f *File) lookup(key string) (Value, error) {
	v, ok := f.Lookup(key)
	if !ok {
		return Value{}, fmt.Errorf("gguf: key %q: %w", key, ErrNotFound)
	}
	return v, nil
}

func wrongType(key string, v Value, want string) error {
	return fmt.Errorf("gguf: key %q is %v %v, want %s: %w", key, v.Type, v, want, ErrWrongType)
}

// String returns the value of a string key. It returns ErrNotFound when the key is absent
// and ErrWrongType when its value is not a string.
func (f *File) String(key string) (string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return "", err
	}
	s, ok := v.Str()
	if !ok {
		return "", wrongType(key, v, "a string")
	}
	return s, nil
}

// Uint returns the value of an integer key of any width: unsigned, or signed and not
// negative. It returns ErrNotFound when the key is absent and ErrWrongType for any other
// type or a negative value.
func (f *File) Uint(key string) (uint64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	x, ok := v.Uint()
	if !ok {
		return 0, wrongType(key, v, "a non-negative integer")
	}
	return x, nil
}

// Float returns the value of a float32 or float64 key. It returns ErrNotFound when the key
// is absent and ErrWrongType for any other type.
func (f *File) Float(key string) (float64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	x, ok := v.Float()
	if !ok {
		return 0, wrongType(key, v, "a float")
	}
	return x, nil
}

// Bool returns the value of a bool key. It returns ErrNotFound when the key is absent and
// ErrWrongType for any other type.
func (f *File) Bool(key string) (bool, error) {
	v, err := f.lookup(key)
	if err != nil {
		return false, err
	}
	x, ok := v.Bool()
	if !ok {
		return false, wrongType(key, v, "a bool")
	}
	return x, nil
}

// Strings returns the value of a key holding an array of strings, as a new slice. It
// returns ErrNotFound when the key is absent and ErrWrongType for any other type.
func (f *File) Strings(key string) ([]string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	x, ok := v.Strings()
	if !ok {
		return nil, wrongType(key, v, "an array of strings")
	}
	return x, nil
}

// Float32s returns the value of a key holding an array of float32, as a new slice. It
// returns ErrNotFound when the key is absent and ErrWrongType for any other type.
func (f *File) Float32s(key string) ([]float32, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	x, ok := v.Float32s()
	if !ok {
		return nil, wrongType(key, v, "an array of float32")
	}
	return x, nil
}

// Int32s returns the value of a key holding an array of integers of any width whose
// elements fit in an int32, as a new slice. It returns ErrNotFound when the key is absent
// and ErrWrongType for any other type or an element out of range.
func (f *File) Int32s(key string) ([]int32, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	x, ok := v.Int32s()
	if !ok {
		return nil, wrongType(key, v, "an array of integers that fit in int32")
	}
	return x, nil
}

// Parse parses a GGUF file held in data. The File refers to data for tensor contents (and
// copies everything else); data must not be modified while the File is in use.
//
// Parse returns a *FormatError wrapping ErrNotGGUF, ErrVersion, ErrTruncated, ErrMalformed
// or ErrUnsupportedType.
func Parse(data []byte) (*File, error) {
	d := &decoder{buf: data, where: "header"}
	if err := d.magic(); err != nil {
		return nil, err
	}
	f := &File{Alignment: DefaultAlignment, data: data}
	verOff := d.off
	ver, err := d.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case ver == 2 || ver == 3:
	case ver == 1:
		return nil, d.errAt(verOff, ErrVersion, "version 1 (32-bit counts) is obsolete; convert the model again")
	case bits.ReverseBytes32(ver) == 2 || bits.ReverseBytes32(ver) == 3:
		return nil, d.errAt(verOff, ErrVersion, "the file is big-endian")
	default:
		return nil, d.errAt(verOff, ErrVersion, fmt.Sprintf("version %d (want 2 or 3)", ver))
	}
	f.Version = ver
	nTensorsOff := d.off
	nTensors, err := d.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKVOff := d.off
	nKV, err := d.u64("metadata count")
	if err != nil {
		return nil, err
	}
	alignOff, err := f.readKV(d, nKV, nKVOff)
	if err != nil {
		return nil, err
	}
	if err := f.readAlignment(d, alignOff); err != nil {
		return nil, err
	}
	d.where = "header"
	// A tensor info is at least a name length, one dimension, a type and an offset.
	const minTensorInfo = 8 + 4 + 8 + 4 + 8
	if nTensors > uint64(d.left())/minTensorInfo {
		return nil, d.errAt(nTensorsOff, ErrTruncated, fmt.Sprintf(
			"%d tensors cannot fit in the %d bytes left after the metadata", nTensors, d.left()))
	}
	infoOffs, err := f.readTensorInfos(d, int(nTensors))
	if err != nil {
		return nil, err
	}
	start, ok := alignUp(uint64(d.off), f.Alignment)
	if !ok {
		return nil, d.errAt(d.off, ErrMalformed, "data section start overflows")
	}
	f.dataStart = start
	if err := f.checkData(d, infoOffs); err != nil {
		return nil, err
	}
	return f, nil
}

// readKV reads n metadata entries and returns the offset of the value of
// general.alignment, if there is one.
func (f *File) readKV(d *decoder, n uint64, countOff int) (alignOff int, err error) {
	// A KV is at least a key length, a value type and a one-byte value.
	const minKV = 8 + 4 + 1
	if n > uint64(d.left())/minKV {
		return 0, d.errAt(countOff, ErrTruncated, fmt.Sprintf("%d metadata entries cannot fit in the %d bytes left", n, d.left()))
	}
	f.KV = make([]KV, 0, min(n, maxPrealloc))
	f.keys = make(map[string]int, min(n, maxPrealloc))
	for i := range int(n) {
		d.where = fmt.Sprintf("metadata entry %d", i)
		keyOff := d.off
		key, err := d.str("key")
		if err != nil {
			return 0, err
		}
		d.where = fmt.Sprintf("key %q", key)
		if _, dup := f.keys[key]; dup {
			return 0, d.errAt(keyOff, ErrMalformed, "duplicate key")
		}
		t, err := d.valueType("value type")
		if err != nil {
			return 0, err
		}
		if key == AlignmentKey {
			alignOff = d.off
		}
		v, err := d.value(t, 0)
		if err != nil {
			return 0, err
		}
		f.keys[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	return alignOff, nil
}

func (f *File) readAlignment(d *decoder, off int) error {
	v, ok := f.Lookup(AlignmentKey)
	if !ok {
		return nil
	}
	a, ok := v.Uint()
	if !ok || a == 0 || a&(a-1) != 0 {
		d.where = fmt.Sprintf("key %q", AlignmentKey)
		return d.errAt(off, ErrMalformed, fmt.Sprintf("alignment %v %v is not a nonzero power of two", v.Type, v))
	}
	f.Alignment = a
	return nil
}

func (f *File) readTensorInfos(d *decoder, n int) ([]int, error) {
	f.Tensors = make([]TensorInfo, 0, min(n, maxPrealloc))
	f.tensors = make(map[string]int, min(n, maxPrealloc))
	offs := make([]int, 0, min(n, maxPrealloc))
	for i := range n {
		d.where = fmt.Sprintf("tensor info %d", i)
		infoOff := d.off
		name, err := d.str("name")
		if err != nil {
			return nil, err
		}
		d.where = fmt.Sprintf("tensor %q", name)
		if _, dup := f.tensors[name]; dup {
			return nil, d.errAt(infoOff, ErrMalformed, "duplicate tensor name")
		}
		nDimsOff := d.off
		nDims, err := d.u32("dimension count")
		if err != nil {
			return nil, err
		}
		if nDims == 0 || nDims > maxDims {
			return nil, d.errAt(nDimsOff, ErrMalformed, fmt.Sprintf("%d dimensions (want 1 to %d)", nDims, maxDims))
		}
		dimsOff := d.off
		dims := make([]uint64, nDims)
		for j := range dims {
			if dims[j], err = d.u64("dimension"); err != nil {
				return nil, err
			}
		}
		typeOff := d.off
		typ, err := d.u32("type")
		if err != nil {
			return nil, err
		}
		offset, err := d.u64("offset")
		if err != nil {
			return nil, err
		}
		t := ggml.Type(typ)
		if !t.Supported() {
			detail := fmt.Sprintf("type %d", typ)
			if name := t.String(); name != fmt.Sprintf("type(%d)", typ) {
				detail += " (" + name + ")"
			}
			return nil, d.errAt(typeOff, ErrUnsupportedType, detail)
		}
		size, detail := tensorSize(dims, t)
		if detail != "" {
			return nil, d.errAt(dimsOff, ErrMalformed, detail)
		}
		f.tensors[name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, TensorInfo{Name: name, Dims: dims, Type: t, Offset: offset, Size: size})
		offs = append(offs, infoOff)
	}
	return offs, nil
}

// tensorSize returns the size in bytes of a tensor, or a description of what is wrong
// with its dimensions.
func tensorSize(dims []uint64, t ggml.Type) (uint64, string) {
	n := uint64(1)
	for _, x := range dims {
		hi, lo := bits.Mul64(n, x)
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Sprintf("dims %v: element count overflows", dims)
		}
		n = lo
	}
	bs, bb := uint64(t.BlockSize()), uint64(t.BlockBytes())
	if dims[0]%bs != 0 {
		return 0, fmt.Sprintf("dims %v: row length %d is not a multiple of the %v block size %d", dims, dims[0], t, bs)
	}
	hi, size := bits.Mul64(n/bs, bb)
	if hi != 0 || size > math.MaxInt64 {
		return 0, fmt.Sprintf("dims %v: size in bytes overflows", dims)
	}
	return size, ""
}

// checkData checks that every tensor's data is aligned, inside the file, and overlaps no
// other tensor's.
func (f *File) checkData(d *decoder, infoOffs []int) error {
	avail := uint64(0)
	if f.dataStart <= uint64(len(f.data)) {
		avail = uint64(len(f.data)) - f.dataStart
	}
	for i, t := range f.Tensors {
		d.where = fmt.Sprintf("tensor %q", t.Name)
		if t.Offset%f.Alignment != 0 {
			return d.errAt(infoOffs[i], ErrMalformed, fmt.Sprintf(
				"data offset %d is not a multiple of the alignment %d", t.Offset, f.Alignment))
		}
		if t.Offset > avail || t.Size > avail-t.Offset {
			return d.errAt(infoOffs[i], ErrTruncated, fmt.Sprintf(
				"data at offset %d, %d bytes, ends past the %d bytes of the data section (file %d bytes, data from byte %d)",
				t.Offset, t.Size, avail, len(f.data), f.dataStart))
		}
	}
	order := make([]int, 0, len(f.Tensors))
	for i, t := range f.Tensors {
		if t.Size > 0 {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		oa, ob := f.Tensors[a].Offset, f.Tensors[b].Offset
		switch {
		case oa < ob:
			return -1
		case oa > ob:
			return 1
		}
		return a - b
	})
	for k := 1; k < len(order); k++ {
		prev, cur := f.Tensors[order[k-1]], f.Tensors[order[k]]
		if prev.Offset+prev.Size > cur.Offset {
			d.where = fmt.Sprintf("tensor %q", cur.Name)
			return d.errAt(infoOffs[order[k]], ErrMalformed, fmt.Sprintf(
				"data [%d, %d) overlaps tensor %q at [%d, %d)",
				cur.Offset, cur.Offset+cur.Size, prev.Name, prev.Offset, prev.Offset+prev.Size))
		}
	}
	return nil
}

// alignUp rounds x up to a multiple of a, a power of two; ok is false on overflow.
func alignUp(x, a uint64) (uint64, bool) {
	r := (x + a - 1) &^ (a - 1)
	return r, r >= x
}
