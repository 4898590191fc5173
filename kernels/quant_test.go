package kernels

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
)

// halfValue decodes a half with float64 arithmetic, independently of FP16ToFP32.
func halfValue(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch {
	case e == 0x1f && m == 0:
		return s * math.Inf(1)
	case e == 0x1f:
		return math.NaN()
	case e == 0:
		return s * m * math.Ldexp(1, -24)
	}
	return s * (1 + m/1024) * math.Ldexp(1, e-15)
}

func TestFP16ToFP32AllValues(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got, want := FP16ToFP32(h), halfValue(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("FP16ToFP32(%#04x) = %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != (h&0x8000 != 0) {
			t.Fatalf("FP16ToFP32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

func TestFP16RoundTripAllValues(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := FP16ToFP32(h)
		got := FP32ToFP16(f)
		if math.IsNaN(float64(f)) {
			// NaNs come back quiet with sign and payload kept (F16C semantics).
			if want := h | 0x0200; got != want {
				t.Fatalf("FP32ToFP16(FP16ToFP32(%#04x)) = %#04x, want %#04x", h, got, want)
			}
			continue
		}
		if got != h {
			t.Fatalf("FP32ToFP16(FP16ToFP32(%#04x)) = %#04x, want %#04x", h, got, h)
		}
	}
}

// refFP32ToFP16 rounds to the nearest half by searching the sorted finite halves, ties
// to the even encoding, overflowing to Inf past 65520 (the midpoint above the largest half).
func refFP32ToFP16(f float32) uint16 {
	v := float64(f)
	var sign uint16
	if math.Signbit(v) {
		sign, v = 0x8000, -v
	}
	if v >= 65520 {
		return sign | 0x7c00
	}
	// Positive finite halves are 0x0000..0x7bff, increasing in value with the encoding.
	i := sort.Search(0x7c00, func(i int) bool { return halfValue(uint16(i)) >= v })
	if i == 0x7c00 {
		return sign | 0x7bff
	}
	if i == 0 || halfValue(uint16(i)) == v {
		return sign | uint16(i)
	}
	lo, hi := halfValue(uint16(i-1)), halfValue(uint16(i))
	switch {
	case v-lo < hi-v:
		return sign | uint16(i-1)
	case v-lo > hi-v:
		return sign | uint16(i)
	case i%2 == 0:
		return sign | uint16(i)
	}
	return sign | uint16(i-1)
}

func TestFP32ToFP16Rounding(t *testing.T) {
	var cases []float32
	// Every midpoint between neighbouring halves (exact in float32) and its neighbours.
	for i := range 0x7c00 {
		lo, hi := halfValue(uint16(i)), halfValue(uint16(i+1))
		if i == 0x7bff {
			hi = 65536
		}
		mid := float32((lo + hi) / 2)
		cases = append(cases, mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9))
	}
	cases = append(cases, 0, 1e-10, math.SmallestNonzeroFloat32, 65504, 65519.99, 65520, 1e10,
		float32(math.Inf(1)), 5.960464477539063e-08, 2.980232238769531e-08, 2.9802326e-08)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		cases = append(cases, math.Float32frombits(rng.Uint32()&0x7fffffff))
	}
	for _, f := range cases {
		for _, v := range []float32{f, -f} {
			if math.IsNaN(float64(v)) {
				if got := FP32ToFP16(v); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
					t.Fatalf("FP32ToFP16(NaN %#08x) = %#04x, want a NaN", math.Float32bits(v), got)
				}
				continue
			}
			if got, want := FP32ToFP16(v), refFP32ToFP16(v); got != want {
				t.Fatalf("FP32ToFP16(%g) = %#04x, want %#04x", v, got, want)
			}
		}
	}
}

func randFloats(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

func TestQuantizeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := randFloats(rng, 32*40, 1)
	src[5], src[40] = 0, -7 // an exact zero and a large negative
	clear(src[64:96])       // an all-zero block
	for _, tc := range []struct {
		typ ggml.Type
		tol float64 // relative to the block's largest magnitude
	}{
		{ggml.F32, 0},
		{ggml.F16, 1.0 / 1024},
		{ggml.Q8_0, 0.5/127 + 1.0/1024},
		{ggml.Q4_0, 1.0/8 + 1.0/1024}, // the end opposite the max clamps at +7, not +8
	} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			rb, _ := tc.typ.RowBytes(len(src))
			enc := make([]byte, rb)
			if err := Quantize(tc.typ, enc, src); err != nil {
				t.Fatal(err)
			}
			dec := make([]float32, len(src))
			if err := Dequantize(tc.typ, dec, enc); err != nil {
				t.Fatal(err)
			}
			for b := 0; b < len(src); b += ggml.QK {
				var amax float64
				for _, v := range src[b : b+ggml.QK] {
					amax = max(amax, math.Abs(float64(v)))
				}
				for j := b; j < b+ggml.QK; j++ {
					if d := math.Abs(float64(dec[j] - src[j])); d > tc.tol*amax {
						t.Errorf("element %d: %v -> %v, error %g > %g", j, src[j], dec[j], d, tc.tol*amax)
					}
				}
			}
		})
	}
}

func TestQuantizeSizeErrors(t *testing.T) {
	for _, tc := range []struct {
		typ        ggml.Type
		n, nbytes  int
		wantSubstr string
	}{
		{ggml.Q8_0, 31, 34, "multiple"},
		{ggml.Q8_0, 32, 33, "bytes"},
		{ggml.Q4_0, 64, 34, "bytes"},
		{ggml.F16, 3, 4, "bytes"},
		{ggml.Type(99), 32, 32, "unsupported"},
	} {
		err := Quantize(tc.typ, make([]byte, tc.nbytes), make([]float32, tc.n))
		if err == nil || !strings.Contains(err.Error(), tc.wantSubstr) {
			t.Errorf("Quantize(%v, %d bytes, %d floats) = %v, want error containing %q", tc.typ, tc.nbytes, tc.n, err, tc.wantSubstr)
		}
		err = Dequantize(tc.typ, make([]float32, tc.n), make([]byte, tc.nbytes))
		if err == nil || !strings.Contains(err.Error(), tc.wantSubstr) {
			t.Errorf("Dequantize(%v, %d floats, %d bytes) = %v, want error containing %q", tc.typ, tc.n, tc.nbytes, err, tc.wantSubstr)
		}
	}
}

// TestQuantizeMatchesLlamaCpp re-quantizes every 2-D tensor of the F16 draft model and
// compares the bytes with the Q8_0 and Q4_0 files llama.cpp made from it (--pure).
func TestQuantizeMatchesLlamaCpp(t *testing.T) {
	src := readTestGGUF(t, testmodels.ForTest(t, "specd-draft-f16.gguf"))
	for _, tc := range []struct {
		typ  ggml.Type
		file string
	}{{ggml.Q8_0, "specd-draft-q8_0.gguf"}, {ggml.Q4_0, "specd-draft-q4_0.gguf"}} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			dst := readTestGGUF(t, testmodels.ForTest(t, tc.file))
			names := make([]string, 0, len(src))
			for name := range src {
				names = append(names, name)
			}
			slices.Sort(names)
			compared := 0
			for _, name := range names {
				s := src[name]
				if len(s.Dims) != 2 || s.Type != ggml.F16 {
					continue
				}
				d, ok := dst[name]
				if !ok {
					t.Errorf("%s: missing from %s", name, tc.file)
					continue
				}
				if d.Type != tc.typ {
					t.Errorf("%s: type %v in %s, want %v", name, d.Type, tc.file, tc.typ)
					continue
				}
				m, err := NewMatrix(ggml.F16, s.Dims[1], s.Dims[0], s.Data)
				if err != nil {
					t.Fatal(err)
				}
				q, err := Convert(m, tc.typ)
				if err != nil {
					t.Fatalf("Convert(%s, %v): %v", name, tc.typ, err)
				}
				if !bytes.Equal(q.Data, d.Data) {
					i := 0
					for q.Data[i] == d.Data[i] {
						i++
					}
					t.Errorf("Convert(%s, %v): first byte difference at %d of %d: %#02x, want %#02x", name, tc.typ, i, len(d.Data), q.Data[i], d.Data[i])
				}
				compared++
			}
			if compared == 0 {
				t.Fatal("no 2-D F16 tensor compared")
			}
			t.Logf("%d tensors byte-identical", compared)
		})
	}
}

func TestNewMatrixErrors(t *testing.T) {
	for _, tc := range []struct {
		typ        ggml.Type
		rows, cols int
		nbytes     int
	}{
		{ggml.Q8_0, 2, 31, 68},
		{ggml.Q8_0, 2, 32, 67},
		{ggml.F32, 3, 7, 83},
		{ggml.Type(7), 1, 32, 34},
		{ggml.F32, -1, 4, 0},
	} {
		if _, err := NewMatrix(tc.typ, tc.rows, tc.cols, make([]byte, tc.nbytes)); err == nil {
			t.Errorf("NewMatrix(%v, %d, %d, %d bytes) succeeded, want an error", tc.typ, tc.rows, tc.cols, tc.nbytes)
		}
	}
	if _, err := NewMatrix(ggml.F16, 3, 7, make([]byte, 42)); err != nil {
		t.Errorf("NewMatrix(f16, 3, 7, 42 bytes) = %v", err)
	}
}

func TestConvertRejectsUnblockedCols(t *testing.T) {
	m, err := NewMatrix(ggml.F32, 2, 172, make([]byte, 2*172*4))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(m, ggml.Q8_0); err == nil {
		t.Error("Convert(172 columns, q8_0) succeeded, want an error")
	}
	c, err := Convert(m, ggml.F16)
	if err != nil || c.Type != ggml.F16 || len(c.Data) != 2*172*2 {
		t.Errorf("Convert(172 columns, f16) = %+v, %v", c, err)
	}
}

func TestMatrixRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	src := randFloats(rng, 3*64, 1)
	for _, typ := range []ggml.Type{ggml.F32, ggml.F16, ggml.Q8_0, ggml.Q4_0} {
		rb, _ := typ.RowBytes(64)
		data := make([]byte, 3*rb)
		if err := Quantize(typ, data, src); err != nil {
			t.Fatal(err)
		}
		m, err := NewMatrix(typ, 3, 64, data)
		if err != nil {
			t.Fatal(err)
		}
		all := make([]float32, 3*64)
		if err := Dequantize(typ, all, data); err != nil {
			t.Fatal(err)
		}
		row := make([]float32, 64)
		m.Row(row, 2)
		if !slices.Equal(row, all[128:]) {
			t.Errorf("%v: Row(2) = %v, want %v", typ, row, all[128:])
		}
	}
}
