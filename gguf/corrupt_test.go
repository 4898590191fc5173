package gguf_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/gguf"
)

// TestTruncatedEverywhere cuts a file with every kind of value and tensor at every length.
// Every cut before the end of the last tensor's data is ErrTruncated; a cut in the padding
// after it leaves a valid file.
func TestTruncatedEverywhere(t *testing.T) {
	data := encode(t, allTypesKV(t), smallTensors(), 32)
	full, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	dataEnd := full.DataOffset()
	for _, ti := range full.Tensors {
		dataEnd = max(dataEnd, full.DataOffset()+ti.Offset+ti.Size)
	}
	for n := range len(data) {
		_, err := gguf.Parse(data[:n])
		switch {
		case uint64(n) < dataEnd && !errors.Is(err, gguf.ErrTruncated):
			t.Fatalf("Parse(first %d of %d bytes) error = %v, want ErrTruncated", n, len(data), err)
		case uint64(n) >= dataEnd && err != nil:
			t.Fatalf("Parse(first %d of %d bytes; tensor data ends at %d) error = %v, want nil", n, len(data), dataEnd, err)
		}
	}
}

func TestCorrupt(t *testing.T) {
	const key = "general.name"
	for _, tc := range []struct {
		name    string
		data    []byte
		want    error
		mention string // the error message must contain this
		offset  int64  // the byte offset the *FormatError reports, -1 to skip
	}{
		{"empty", nil, gguf.ErrTruncated, "magic", 0},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), gguf.ErrNotGGUF, `"GGML"`, 0},
		{"no version", header(0, 0).b[:4:4], gguf.ErrTruncated, "version", 4},
		{"v1", (&raw{}).bytes('G', 'G', 'U', 'F').u32(1).u32(0).u32(0).b, gguf.ErrVersion, "version 1", 4},
		{"v4", (&raw{}).bytes('G', 'G', 'U', 'F').u32(4).u64(0).u64(0).b, gguf.ErrVersion, "version 4", 4},
		{"big-endian", (&raw{}).bytes('G', 'G', 'U', 'F', 0, 0, 0, 3).u64(0).u64(0).b, gguf.ErrVersion, "big-endian", 4},
		{"kv count lies", header(0, 1<<60).b, gguf.ErrTruncated, "metadata entries", 16},
		{"tensor count lies", header(1<<60, 0).b, gguf.ErrTruncated, "tensors cannot fit", 8},
		{"tensor count one too many", header(2, 0).tensor("x", ggml.F32, 0, 1).padTo(32, 4).b, gguf.ErrTruncated, "2 tensors cannot fit", 8},
		{"key length lies", header(0, 1).u64(1 << 40).bytes(make([]byte, 16)...).b, gguf.ErrTruncated, "key length 1099511627776", 24},
		{"string length lies", header(0, 1).str(key).u32(uint32(gguf.TypeString)).u64(1 << 50).b, gguf.ErrTruncated, `key "general.name"`, 48},
		{"array count lies", header(0, 1).str(key).u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeUint32)).u64(1 << 62).u32(0).b,
			gguf.ErrTruncated, "array of 4611686018427387904 uint32", 52},
		{"string array count lies", header(0, 1).str(key).u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(3).str("a").str("b").b,
			gguf.ErrTruncated, "array of 3 string", -1},
		{"string in array lies", header(0, 1).str(key).u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(2).str("a").u64(99).bytes(make([]byte, 8)...).b,
			gguf.ErrTruncated, "array element 1: string length 99", -1},
		{"unknown value type", header(0, 1).str(key).u32(13).u32(0).b, gguf.ErrMalformed, `key "general.name" at byte 44: malformed: unknown value type 13`, 44},
		{"unknown array element type", header(0, 1).str(key).u32(uint32(gguf.TypeArray)).u32(200).u64(0).b, gguf.ErrMalformed, "unknown array element type 200", 48},
		{"bool 2", header(0, 1).str(key).u32(uint32(gguf.TypeBool)).bytes(2).b, gguf.ErrMalformed, "bool byte 2", 48},
		{"bool array 7", header(0, 1).str(key).u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeBool)).u64(2).bytes(1, 7).b, gguf.ErrMalformed, "bool 1 of the array", 61},
		{"duplicate key", header(0, 2).kvU32(key, 1).kvU32(key, 2).b, gguf.ErrMalformed, `key "general.name" at byte 52: malformed: duplicate key`, 52},
		{"nested too deep", deepArrays(17), gguf.ErrMalformed, "nested more than 16", -1},
		{"alignment 0", header(0, 1).kvU32(gguf.AlignmentKey, 0).b, gguf.ErrMalformed, "general.alignment", 53},
		{"alignment 48", header(0, 1).kvU32(gguf.AlignmentKey, 48).b, gguf.ErrMalformed, "uint32 48 is not a nonzero power of two", 53},
		{"alignment float", header(0, 1).str(gguf.AlignmentKey).u32(uint32(gguf.TypeFloat32)).u32(0x42000000).b, gguf.ErrMalformed, "float32 32", -1},
		{"alignment negative", header(0, 1).str(gguf.AlignmentKey).u32(uint32(gguf.TypeInt32)).u32(0xffffffe0).b, gguf.ErrMalformed, "int32 -32", -1},
		{"zero dims", header(1, 0).tensor("w", ggml.F32, 0).padTo(32, 4).b, gguf.ErrMalformed, `tensor "w" at byte 33: malformed: 0 dimensions`, 33},
		{"five dims", header(1, 0).tensor("w", ggml.F32, 0, 1, 1, 1, 1, 1).padTo(32, 4).b, gguf.ErrMalformed, "5 dimensions", 33},
		{"dims overflow", header(1, 0).tensor("w", ggml.F32, 0, 1<<32, 1<<32).padTo(32, 4).b, gguf.ErrMalformed, "element count overflows", 37},
		{"bytes overflow", header(1, 0).tensor("w", ggml.F32, 0, 1<<62).padTo(32, 4).b, gguf.ErrMalformed, "size in bytes overflows", 37},
		{"partial block", header(1, 0).tensor("w", ggml.Q8_0, 0, 33).padTo(32, 34*2).b, gguf.ErrMalformed, "row length 33 is not a multiple of the q8_0 block size 32", 37},
		{"unknown tensor type", header(1, 0).tensor("blk.0.attn_q.weight", 99, 0, 32).padTo(32, 128).b, gguf.ErrUnsupportedType,
			`tensor "blk.0.attn_q.weight" at byte 63: unsupported tensor type: type 99`, 63},
		{"i-quant", header(1, 0).tensor("w", 16, 0, 256).padTo(32, 66).b, gguf.ErrUnsupportedType, "type 16 (iq2_xxs)", -1},
		// IQ4_XS and Q4_1 files are common downloads: the error names the type, not its number alone.
		{"iq4_xs", header(1, 0).tensor("w", 23, 0, 256).padTo(32, 136).b, gguf.ErrUnsupportedType, "type 23 (iq4_xs)", -1},
		{"q4_1", header(1, 0).tensor("w", 3, 0, 32).padTo(32, 20).b, gguf.ErrUnsupportedType, "type 3 (q4_1)", -1},
		{"k-quant partial super-block", header(1, 0).tensor("w", ggml.Q4_K, 0, 128).padTo(32, 144).b, gguf.ErrMalformed, "row length 128 is not a multiple of the q4_k block size 256", -1},
		{"misaligned offset", header(1, 0).tensor("w", ggml.F32, 4, 1).padTo(32, 8).b, gguf.ErrMalformed, "data offset 4 is not a multiple of the alignment 32", 24},
		{"data past end", header(1, 0).tensor("w", ggml.F32, 0, 16).padTo(32, 60).b, gguf.ErrTruncated, `tensor "w" at byte 24: truncated: data at offset 0, 64 bytes, ends past the 60 bytes`, 24},
		{"offset past end", header(1, 0).tensor("w", ggml.F32, 1<<63, 16).padTo(32, 64).b, gguf.ErrTruncated, "ends past", 24},
		{"data section past end", header(1, 0).tensor("w", ggml.F32, 0, 1).b, gguf.ErrTruncated, "data section", 24},
		{"overlap", header(2, 0).tensor("a", ggml.F32, 0, 16).tensor("b", ggml.F32, 32, 16).padTo(32, 96).b,
			gguf.ErrMalformed, `data [32, 96) overlaps tensor "a" at [0, 64)`, 57},
		{"same offset", header(2, 0).tensor("a", ggml.F32, 0, 8).tensor("b", ggml.F32, 0, 8).padTo(32, 32).b,
			gguf.ErrMalformed, `tensor "b"`, 57},
		{"duplicate tensor", header(2, 0).tensor("a", ggml.F32, 0, 8).tensor("a", ggml.F32, 32, 8).padTo(32, 64).b,
			gguf.ErrMalformed, `tensor "a" at byte 57: malformed: duplicate tensor name`, 57},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := gguf.Parse(tc.data)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			if f != nil {
				t.Errorf("Parse returned a File with error %v", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Parse error = %q, want it to mention %q", err, tc.mention)
			}
			var fe *gguf.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse error %v is not a *FormatError", err)
			}
			if tc.offset >= 0 && fe.Offset != tc.offset {
				t.Errorf("FormatError.Offset = %d, want %d (%v)", fe.Offset, tc.offset, err)
			}
		})
	}
}

// deepArrays returns a file whose only value is n arrays nested in one another.
func deepArrays(n int) []byte {
	r := header(0, 1).str("deep").u32(uint32(gguf.TypeArray))
	for range n - 1 {
		r.u32(uint32(gguf.TypeArray)).u64(1)
	}
	return r.u32(uint32(gguf.TypeUint8)).u64(0).b
}

// TestValidEdgeCases checks files that are unusual but valid.
func TestValidEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"v2", (&raw{}).bytes('G', 'G', 'U', 'F').u32(2).u64(0).u64(0).b},
		{"no tensors, no padding", header(0, 1).kvU32("a", 1).b},
		{"nested 16 deep", deepArrays(16)},
		{"zero-size tensors share an offset", header(2, 0).tensor("a", ggml.F32, 0, 0).tensor("b", ggml.Q8_0, 0, 32, 0).b},
		{"gap between tensors", header(2, 0).tensor("a", ggml.F32, 64, 8).tensor("b", ggml.F32, 0, 8).padTo(32, 96).b},
		{"k-quants", header(2, 0).tensor("a", ggml.Q4_K, 0, 256).tensor("b", ggml.Q6_K, 160, 256, 2).padTo(32, 160+420).b},
		{"alignment as uint64", header(1, 1).str(gguf.AlignmentKey).u32(uint32(gguf.TypeUint64)).u64(8).tensor("a", ggml.F32, 8, 1).padTo(8, 12).b},
		{"trailing bytes", header(1, 0).tensor("a", ggml.F32, 0, 1).padTo(32, 100).b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := gguf.Parse(tc.data); err != nil {
				t.Errorf("Parse error = %v, want nil", err)
			}
		})
	}
}

// TestCountsDoNotDriveAllocation parses files whose counts claim far more than they hold
// and checks that Parse allocates next to nothing before rejecting them.
func TestCountsDoNotDriveAllocation(t *testing.T) {
	for _, data := range [][]byte{
		header(0, 1<<60).b,
		header(1<<59, 0).bytes(make([]byte, 64)...).b,
		header(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeUint8)).u64(1 << 40).bytes(make([]byte, 64)...).b,
		header(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(1 << 40).bytes(make([]byte, 64)...).b,
		header(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeArray)).u64(1 << 40).bytes(make([]byte, 64)...).b,
		header(0, 1).str("k").u32(uint32(gguf.TypeString)).u64(1 << 40).bytes(make([]byte, 64)...).b,
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := gguf.Parse(data)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, gguf.ErrTruncated) {
			t.Errorf("Parse error = %v, want ErrTruncated", err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<16 {
			t.Errorf("Parse allocated %d bytes for a %d-byte file (%v)", n, len(data), err)
		}
	}
}

// TestCountsWithinTheFileDoNotDriveAllocation parses files whose counts fit the bytes
// left (each entry's smallest encoding) but whose first entry is already bad: Parse must
// find that out before it has allocated for the count, not allocate several times the
// file's size first. For a mapped 40 GB model, one corrupted count would otherwise ask
// for 100 GB or more before the error.
func TestCountsWithinTheFileDoNotDriveAllocation(t *testing.T) {
	junk := make([]byte, 4<<20)
	for i := range junk {
		junk[i] = 0xff // every length and type read from it is out of range
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"metadata count", header(0, uint64(len(junk))/13).bytes(junk...).b},
		{"tensor count", header(uint64(len(junk))/32, 0).bytes(junk...).b},
		{"string array count", header(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(uint64(len(junk)) / 8).bytes(junk...).b},
		{"array of arrays count", header(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeArray)).u64(uint64(len(junk)) / 12).bytes(junk...).b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := gguf.Parse(tc.data)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > uint64(len(tc.data))/4 {
				t.Errorf("Parse allocated %d bytes for a %d-byte file before %v", n, len(tc.data), err)
			}
		})
	}
}
