package gguf_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/gguf"
)

// kv makes a metadata entry.
func kv(key string, v gguf.Value) gguf.KV { return gguf.KV{Key: key, Value: v} }

// mustArray builds an array value or fails the test.
func mustArray(t testing.TB, elem gguf.ValueType, elems ...gguf.Value) gguf.Value {
	t.Helper()
	v, err := gguf.NewArray(elem, elems)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// pattern returns n bytes that differ from tensor to tensor, so that a mix-up shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// f32bytes encodes xs as little-endian float32.
func f32bytes(xs ...float32) []byte {
	var b []byte
	for _, x := range xs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// allTypesKV returns metadata with one value of every type, including arrays of every
// element type and nested arrays.
func allTypesKV(t testing.TB) []gguf.KV {
	nested := mustArray(t, gguf.TypeArray,
		gguf.NewInt32s([]int32{1, -2, 3}),
		gguf.NewStrings([]string{"a", "", "ü"}),
		mustArray(t, gguf.TypeArray, gguf.NewFloat32s([]float32{0.5})),
		gguf.NewInt32s(nil),
	)
	return []gguf.KV{
		kv("general.architecture", gguf.NewString("llama")),
		kv("t.u8", gguf.NewUint8(200)),
		kv("t.i8", gguf.NewInt8(-100)),
		kv("t.u16", gguf.NewUint16(60000)),
		kv("t.i16", gguf.NewInt16(-30000)),
		kv("t.u32", gguf.NewUint32(4000000000)),
		kv("t.i32", gguf.NewInt32(-2000000000)),
		kv("t.f32", gguf.NewFloat32(1e-5)),
		kv("t.bool", gguf.NewBool(true)),
		kv("t.str", gguf.NewString("héllo\x00world")),
		kv("t.u64", gguf.NewUint64(math.MaxUint64)),
		kv("t.i64", gguf.NewInt64(math.MinInt64)),
		kv("t.f64", gguf.NewFloat64(math.Pi)),
		kv("t.arr.u8", mustArray(t, gguf.TypeUint8, gguf.NewUint8(1), gguf.NewUint8(255))),
		kv("t.arr.i8", mustArray(t, gguf.TypeInt8, gguf.NewInt8(-1))),
		kv("t.arr.u16", mustArray(t, gguf.TypeUint16, gguf.NewUint16(7))),
		kv("t.arr.i16", mustArray(t, gguf.TypeInt16, gguf.NewInt16(-7))),
		kv("t.arr.u32", mustArray(t, gguf.TypeUint32, gguf.NewUint32(1), gguf.NewUint32(2))),
		kv("t.arr.i32", gguf.NewInt32s([]int32{-1, 0, 1})),
		kv("t.arr.f32", gguf.NewFloat32s([]float32{-0.25, 0, float32(math.Inf(1))})),
		kv("t.arr.bool", mustArray(t, gguf.TypeBool, gguf.NewBool(false), gguf.NewBool(true))),
		kv("t.arr.str", gguf.NewStrings([]string{"<unk>", "<s>", "</s>", "\u2581the"})),
		kv("t.arr.u64", mustArray(t, gguf.TypeUint64, gguf.NewUint64(1<<40))),
		kv("t.arr.i64", mustArray(t, gguf.TypeInt64, gguf.NewInt64(-1<<40))),
		kv("t.arr.f64", mustArray(t, gguf.TypeFloat64, gguf.NewFloat64(-2.5))),
		kv("t.arr.empty", gguf.NewStrings(nil)),
		kv("t.arr.nested", nested),
	}
}

// smallTensors returns one tensor of each supported type.
func smallTensors() []gguf.TensorData {
	return []gguf.TensorData{
		{Name: "a.f32", Dims: []uint64{3, 2}, Type: ggml.F32, Data: f32bytes(1, 2, 3, 4, 5, 6)},
		{Name: "b.f16", Dims: []uint64{5}, Type: ggml.F16, Data: pattern(10, 1)},
		{Name: "c.q8_0", Dims: []uint64{32, 2}, Type: ggml.Q8_0, Data: pattern(2*34, 2)},
		{Name: "d.q4_0", Dims: []uint64{64, 1, 1}, Type: ggml.Q4_0, Data: pattern(2*18, 3)},
		{Name: "e.empty", Dims: []uint64{4, 0}, Type: ggml.F32, Data: nil},
	}
}

// encode writes a GGUF file with Write or fails the test.
func encode(t testing.TB, kv []gguf.KV, tensors []gguf.TensorData, alignment uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := gguf.Write(&buf, kv, tensors, alignment); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// seeds returns the committed fuzz seed files by name: small files that together reach
// every branch of the parser when mutated.
func seeds(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"all-types":   encode(t, allTypesKV(t), smallTensors(), 32),
		"align-64":    encode(t, []gguf.KV{kv("general.name", gguf.NewString("x"))}, smallTensors()[:3], 64),
		"empty":       encode(t, nil, nil, 0),
		"one-tensor":  encode(t, nil, smallTensors()[:1], 0),
		"vocab-like":  encode(t, vocabKV(), smallTensors()[2:3], 0),
		"nested-only": encode(t, allTypesKV(t)[len(allTypesKV(t))-1:], nil, 0),
	}
}

// vocabKV is metadata shaped like a llama model's, small.
func vocabKV() []gguf.KV {
	return []gguf.KV{
		kv("general.architecture", gguf.NewString("llama")),
		kv("llama.embedding_length", gguf.NewUint32(32)),
		kv("llama.attention.layer_norm_rms_epsilon", gguf.NewFloat32(1e-5)),
		kv("tokenizer.ggml.tokens", gguf.NewStrings([]string{"<unk>", "<s>", "</s>", "<0x0A>", "\u2581a"})),
		kv("tokenizer.ggml.scores", gguf.NewFloat32s([]float32{0, 0, 0, 0, -1})),
		kv("tokenizer.ggml.token_type", gguf.NewInt32s([]int32{2, 3, 3, 6, 1})),
		kv("tokenizer.ggml.add_bos_token", gguf.NewBool(true)),
	}
}

// raw builds GGUF bytes field by field, for files Write refuses to make.
type raw struct{ b []byte }

func (r *raw) u32(x uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, x); return r }
func (r *raw) u64(x uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, x); return r }
func (r *raw) bytes(b ...byte) *raw {
	r.b = append(r.b, b...)
	return r
}
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }

// header starts a v3 file with the given counts.
func header(nTensors, nKV uint64) *raw {
	r := &raw{}
	r.bytes('G', 'G', 'U', 'F').u32(3).u64(nTensors).u64(nKV)
	return r
}

// kvU32 appends a uint32 metadata entry.
func (r *raw) kvU32(key string, x uint32) *raw {
	return r.str(key).u32(uint32(gguf.TypeUint32)).u32(x)
}

// tensor appends a tensor info.
func (r *raw) tensor(name string, typ ggml.Type, offset uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(offset)
}

// padTo appends zeros up to a multiple of a, then n more bytes of data.
func (r *raw) padTo(a int, n int) *raw {
	for len(r.b)%a != 0 {
		r.b = append(r.b, 0)
	}
	r.b = append(r.b, make([]byte, n)...)
	return r
}
