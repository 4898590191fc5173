package gguf_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/gguf"
)

func TestWriteParseRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		kv        []gguf.KV
		tensors   []gguf.TensorData
		alignment uint64
		wantAlign uint64
		wantKV    int // number of KVs after Write (it may add general.alignment)
	}{
		{"all types", allTypesKV(t), smallTensors(), 32, 32, len(allTypesKV(t))},
		{"default alignment", vocabKV(), smallTensors(), 0, 32, len(vocabKV())},
		{"alignment 64 added", vocabKV(), smallTensors(), 64, 64, len(vocabKV()) + 1},
		{"alignment 1", nil, smallTensors(), 1, 1, 1},
		{"alignment from kv", []gguf.KV{kv(gguf.AlignmentKey, gguf.NewUint64(128))}, smallTensors(), 0, 128, 1},
		{"alignment in kv and argument", []gguf.KV{kv(gguf.AlignmentKey, gguf.NewUint32(16))}, smallTensors(), 16, 16, 1},
		{"empty", nil, nil, 0, 32, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := encode(t, tc.kv, tc.tensors, tc.alignment)
			f, err := gguf.Parse(data)
			if err != nil {
				t.Fatalf("Parse(Write(...)) error: %v", err)
			}
			if f.Version != 3 || f.Alignment != tc.wantAlign {
				t.Errorf("Version, Alignment = %d, %d, want 3, %d", f.Version, f.Alignment, tc.wantAlign)
			}
			if len(f.KV) != tc.wantKV {
				t.Fatalf("len(KV) = %d, want %d", len(f.KV), tc.wantKV)
			}
			for i, want := range tc.kv {
				got := f.KV[i]
				if got.Key != want.Key || !got.Value.Equal(want.Value) {
					t.Errorf("KV[%d] = %s: %v, want %s: %v", i, got.Key, got.Value, want.Key, want.Value)
				}
			}
			if len(f.Tensors) != len(tc.tensors) {
				t.Fatalf("len(Tensors) = %d, want %d", len(f.Tensors), len(tc.tensors))
			}
			for i, want := range tc.tensors {
				info, got, err := f.Tensor(want.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(info, f.Tensors[i]) {
					t.Errorf("Tensor(%q) info %+v, want Tensors[%d] %+v", want.Name, info, i, f.Tensors[i])
				}
				if !reflect.DeepEqual(info.Dims, want.Dims) || info.Type != want.Type || info.Size != uint64(len(want.Data)) {
					t.Errorf("Tensor(%q) = %+v, want dims %v type %v size %d", want.Name, info, want.Dims, want.Type, len(want.Data))
				}
				if info.Offset%tc.wantAlign != 0 {
					t.Errorf("Tensor(%q) offset %d, not a multiple of %d", want.Name, info.Offset, tc.wantAlign)
				}
				if !bytes.Equal(got, want.Data) {
					t.Errorf("Tensor(%q) data = %x, want %x", want.Name, got, want.Data)
				}
			}
			// Writing what was read gives the same bytes.
			var tensors []gguf.TensorData
			for _, ti := range f.Tensors {
				_, d, _ := f.Tensor(ti.Name)
				tensors = append(tensors, gguf.TensorData{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: d})
			}
			if again := encode(t, f.KV, tensors, f.Alignment); !bytes.Equal(again, data) {
				t.Errorf("Write(Parse(Write(x))) differs from Write(x) at byte %d", firstDiff(again, data))
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	f, err := gguf.Parse(encode(t, allTypesKV(t), nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	uints := map[string]uint64{"t.u8": 200, "t.u16": 60000, "t.u32": 4000000000, "t.u64": math.MaxUint64}
	for key, want := range uints {
		if got, err := f.Uint(key); err != nil || got != want {
			t.Errorf("Uint(%q) = %d, %v, want %d, nil", key, got, err, want)
		}
	}
	for _, key := range []string{"t.i8", "t.i16", "t.i32", "t.i64", "t.f32", "t.str", "t.bool", "t.arr.u8"} {
		if _, err := f.Uint(key); !errors.Is(err, gguf.ErrWrongType) {
			t.Errorf("Uint(%q) error = %v, want ErrWrongType", key, err)
		}
	}
	if _, err := f.Uint("no.such.key"); !errors.Is(err, gguf.ErrNotFound) {
		t.Errorf("Uint(no.such.key) error = %v, want ErrNotFound", err)
	}
	if x, err := f.Float("t.f64"); err != nil || x != math.Pi {
		t.Errorf("Float(t.f64) = %v, %v, want pi", x, err)
	}
	if x, err := f.Float("t.f32"); err != nil || float32(x) != 1e-5 {
		t.Errorf("Float(t.f32) = %v, %v, want 1e-5", x, err)
	}
	if _, err := f.Float("t.u32"); !errors.Is(err, gguf.ErrWrongType) {
		t.Errorf("Float(t.u32) error = %v, want ErrWrongType", err)
	}
	if x, err := f.String("t.str"); err != nil || x != "héllo\x00world" {
		t.Errorf("String(t.str) = %q, %v", x, err)
	}
	if x, err := f.Bool("t.bool"); err != nil || !x {
		t.Errorf("Bool(t.bool) = %v, %v, want true", x, err)
	}
	if x, err := f.Strings("t.arr.str"); err != nil || !reflect.DeepEqual(x, []string{"<unk>", "<s>", "</s>", "\u2581the"}) {
		t.Errorf("Strings(t.arr.str) = %q, %v", x, err)
	}
	if x, err := f.Strings("t.arr.empty"); err != nil || len(x) != 0 {
		t.Errorf("Strings(t.arr.empty) = %q, %v, want empty", x, err)
	}
	if x, err := f.Float32s("t.arr.f32"); err != nil || !reflect.DeepEqual(x, []float32{-0.25, 0, float32(math.Inf(1))}) {
		t.Errorf("Float32s(t.arr.f32) = %v, %v", x, err)
	}
	if _, err := f.Float32s("t.arr.f64"); !errors.Is(err, gguf.ErrWrongType) {
		t.Errorf("Float32s(t.arr.f64) error = %v, want ErrWrongType", err)
	}
	for key, want := range map[string][]int32{
		"t.arr.i32": {-1, 0, 1}, "t.arr.u8": {1, 255}, "t.arr.i8": {-1}, "t.arr.i16": {-7}, "t.arr.u32": {1, 2},
	} {
		if x, err := f.Int32s(key); err != nil || !reflect.DeepEqual(x, want) {
			t.Errorf("Int32s(%q) = %v, %v, want %v", key, x, err, want)
		}
	}
	for _, key := range []string{"t.arr.u64", "t.arr.i64", "t.arr.f32", "t.i32"} { // out of int32 range, or not integer arrays
		if _, err := f.Int32s(key); !errors.Is(err, gguf.ErrWrongType) {
			t.Errorf("Int32s(%q) error = %v, want ErrWrongType", key, err)
		}
	}

	nested, _ := f.Lookup("t.arr.nested")
	if nested.Len() != 4 || nested.Elem() != gguf.TypeArray {
		t.Fatalf("nested = %v, want [4]array", nested)
	}
	if s, ok := nested.Index(1).Strings(); !ok || !reflect.DeepEqual(s, []string{"a", "", "ü"}) {
		t.Errorf("nested[1].Strings() = %q, %v", s, ok)
	}
	if x, ok := nested.Index(2).Index(0).Float32s(); !ok || !reflect.DeepEqual(x, []float32{0.5}) {
		t.Errorf("nested[2][0].Float32s() = %v, %v", x, ok)
	}
	if n := nested.Index(3).Len(); n != 0 {
		t.Errorf("nested[3].Len() = %d, want 0", n)
	}
}

func TestValueScalars(t *testing.T) {
	for _, tc := range []struct {
		v      gguf.Value
		str    string
		u      uint64
		uok    bool
		i      int64
		iok    bool
		typeOK gguf.ValueType
	}{
		{gguf.NewInt8(-1), "-1", 0, false, -1, true, gguf.TypeInt8},
		{gguf.NewInt16(300), "300", 300, true, 300, true, gguf.TypeInt16},
		{gguf.NewInt64(math.MinInt64), "-9223372036854775808", 0, false, math.MinInt64, true, gguf.TypeInt64},
		{gguf.NewUint64(math.MaxUint64), "18446744073709551615", math.MaxUint64, true, 0, false, gguf.TypeUint64},
		{gguf.NewUint8(7), "7", 7, true, 7, true, gguf.TypeUint8},
		{gguf.NewFloat32(0.5), "0.5", 0, false, 0, false, gguf.TypeFloat32},
		{gguf.NewBool(false), "false", 0, false, 0, false, gguf.TypeBool},
		{gguf.NewString("x"), `"x"`, 0, false, 0, false, gguf.TypeString},
		{gguf.NewInt32s([]int32{1}), "[1]int32", 0, false, 0, false, gguf.TypeArray},
	} {
		if tc.v.Type != tc.typeOK {
			t.Errorf("%v: Type = %v, want %v", tc.v, tc.v.Type, tc.typeOK)
		}
		if s := tc.v.String(); s != tc.str {
			t.Errorf("String() = %q, want %q", s, tc.str)
		}
		if u, ok := tc.v.Uint(); u != tc.u || ok != tc.uok {
			t.Errorf("%v.Uint() = %d, %v, want %d, %v", tc.v, u, ok, tc.u, tc.uok)
		}
		if i, ok := tc.v.Int(); i != tc.i || ok != tc.iok {
			t.Errorf("%v.Int() = %d, %v, want %d, %v", tc.v, i, ok, tc.i, tc.iok)
		}
	}
	if gguf.NewFloat32(float32(math.NaN())).Equal(gguf.NewFloat64(math.NaN())) {
		t.Error("a float32 NaN Equal a float64 NaN")
	}
	nan := gguf.NewFloat32(float32(math.NaN()))
	if !nan.Equal(nan) {
		t.Error("NaN does not Equal itself (Equal compares bits)")
	}
	if _, err := gguf.NewArray(gguf.TypeUint8, []gguf.Value{gguf.NewUint16(1)}); err == nil {
		t.Error("NewArray(uint8, [uint16]) succeeded, want an error")
	}
	if _, err := gguf.NewArray(gguf.ValueType(13), nil); err == nil {
		t.Error("NewArray(value_type(13)) succeeded, want an error")
	}
	if s := gguf.ValueType(99).String(); s != "value_type(99)" {
		t.Errorf("ValueType(99).String() = %q", s)
	}
}

func TestWriteErrors(t *testing.T) {
	good := smallTensors()[0]
	for _, tc := range []struct {
		name      string
		kv        []gguf.KV
		tensors   []gguf.TensorData
		alignment uint64
		want      error
	}{
		{"duplicate key", []gguf.KV{kv("a", gguf.NewUint8(1)), kv("a", gguf.NewUint8(2))}, nil, 0, gguf.ErrMalformed},
		{"unknown value type", []gguf.KV{kv("a", gguf.Value{Type: 13})}, nil, 0, gguf.ErrMalformed},
		{"array without elements", []gguf.KV{kv("a", gguf.Value{Type: gguf.TypeArray})}, nil, 0, gguf.ErrMalformed},
		{"duplicate tensor", nil, []gguf.TensorData{good, good}, 0, gguf.ErrMalformed},
		{"unsupported type", nil, []gguf.TensorData{{Name: "x", Dims: []uint64{256}, Type: 16, Data: make([]byte, 66)}}, 0, gguf.ErrUnsupportedType},
		{"short data", nil, []gguf.TensorData{{Name: "x", Dims: []uint64{4}, Type: ggml.F32, Data: make([]byte, 15)}}, 0, gguf.ErrMalformed},
		{"no dims", nil, []gguf.TensorData{{Name: "x", Type: ggml.F32}}, 0, gguf.ErrMalformed},
		{"five dims", nil, []gguf.TensorData{{Name: "x", Dims: []uint64{1, 1, 1, 1, 1}, Type: ggml.F32, Data: make([]byte, 4)}}, 0, gguf.ErrMalformed},
		{"partial block", nil, []gguf.TensorData{{Name: "x", Dims: []uint64{16, 2}, Type: ggml.Q8_0, Data: make([]byte, 34)}}, 0, gguf.ErrMalformed},
		{"alignment not a power of two", nil, nil, 48, gguf.ErrMalformed},
		{"alignment disagrees with kv", []gguf.KV{kv(gguf.AlignmentKey, gguf.NewUint32(64))}, nil, 32, gguf.ErrMalformed},
		{"bad alignment in kv", []gguf.KV{kv(gguf.AlignmentKey, gguf.NewUint32(0))}, nil, 0, gguf.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := gguf.Write(&buf, tc.kv, tc.tensors, tc.alignment)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Write error = %v, want %v", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("Write wrote %d bytes before failing, want 0", buf.Len())
			}
		})
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n < len(p) {
		return 0, io.ErrShortWrite
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteWriterError(t *testing.T) {
	err := gguf.Write(&failWriter{n: 100}, allTypesKV(t), smallTensors(), 0)
	if !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("Write to a failing writer: error %v, want io.ErrShortWrite", err)
	}
}
