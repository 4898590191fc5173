package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/specd-dev/specd/ggml"
)

var allTypes = []ggml.Type{ggml.F32, ggml.F16, ggml.Q8_0, ggml.Q4_0}

// subTypes are the types specd computes with but does not quantize to: their test
// matrices are random blocks (randBlocks).
var subTypes = []ggml.Type{ggml.Q4_K, ggml.Q6_K, ggml.Q5_0, ggml.Q5_K, ggml.Q3_K, ggml.Q2_K, ggml.Q5_1, ggml.IQ4_NL, ggml.BF16}

// computeTypes are all the types MatMul takes.
var computeTypes = append(append([]ggml.Type{}, allTypes...), subTypes...)

// fp16Fields are the byte offsets of the fp16 scales in a block of each sub type.
var fp16Fields = map[ggml.Type][]int{
	ggml.Q8_0: {0}, ggml.Q5_0: {0}, ggml.Q5_1: {0, 2}, ggml.IQ4_NL: {0},
	ggml.Q2_K: {80, 82}, ggml.Q3_K: {108}, ggml.Q4_K: {0, 2}, ggml.Q5_K: {0, 2}, ggml.Q6_K: {208},
}

// randBlocks returns n bytes of random blocks of t: random bytes with every fp16 scale
// set to a random value of either sign around 0.01 (BF16: random values of scale 0.5).
func randBlocks(rng *rand.Rand, t ggml.Type, n int) []byte {
	b := make([]byte, n)
	if t == ggml.BF16 {
		for i := 0; i < n; i += 2 {
			binary.LittleEndian.PutUint16(b[i:], fp32ToBF16(float32(rng.NormFloat64()*0.5)))
		}
		return b
	}
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	bb := t.BlockBytes()
	for blk := 0; blk+bb <= n; blk += bb {
		for _, off := range fp16Fields[t] {
			v := float32((0.2 + rng.Float64()) * 0.01)
			if rng.IntN(4) == 0 {
				v = -v
			}
			binary.LittleEndian.PutUint16(b[blk+off:], FP32ToFP16(v))
		}
	}
	return b
}

// randMatrix returns a rows×cols matrix of type t made from normal random weights.
func randMatrix(tb testing.TB, rng *rand.Rand, t ggml.Type, rows, cols int) *Matrix {
	tb.Helper()
	rb, err := t.RowBytes(cols)
	if err != nil {
		tb.Fatal(err)
	}
	data := make([]byte, rows*rb)
	if !CanQuantize(t) || t == ggml.BF16 {
		data = randBlocks(rng, t, rows*rb)
	} else if err := Quantize(t, data, randFloats(rng, rows*cols, 0.5)); err != nil {
		tb.Fatal(err)
	}
	m, err := NewMatrix(t, rows, cols, data)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// refMatMul computes MatMul in float64 from dequantized weights and, for quantized
// weights, activations quantized as ggml does: with ggml's Q8_K loop for the K-quants,
// with Quantize(Q8_0) for the others. It also returns Σ|w·x| per output, the scale of
// the rounding error a float32 implementation may make; for the types with offsets
// (x = D·q + F), which every implementation sums as D·Σq·a + F·Σa, Σ(|D·q| + |F|)·|x|,
// since those two terms may cancel.
func refMatMul(w *Matrix, x []float32, n int) (want, mag []float64) {
	want = make([]float64, n*w.Rows)
	mag = make([]float64, n*w.Rows)
	row := make([]float32, w.Cols)
	xt := make([]float32, w.Cols)
	for t := range n {
		copy(xt, x[t*w.Cols:(t+1)*w.Cols])
		if usesQ8K(w.Type) {
			for s, b := range ggmlQuantizeQ8K(xt) {
				for j, q := range b.qs {
					xt[s*ggml.QKK+j] = b.d * float32(q)
				}
			}
		} else if w.Type.BlockSize() > 1 {
			enc := make([]byte, w.Cols/ggml.QK*34)
			if err := Quantize(ggml.Q8_0, enc, xt); err != nil {
				panic(err)
			}
			if err := Dequantize(ggml.Q8_0, xt, enc); err != nil {
				panic(err)
			}
		}
		for r := range w.Rows {
			w.Row(row, r)
			var s, m float64
			for j, v := range row {
				s += float64(v) * float64(xt[j])
				m += math.Abs(float64(v) * float64(xt[j]))
			}
			if hasOffsets(w.Type) {
				m = offsetMag(w, r, xt)
			}
			want[t*w.Rows+r], mag[t*w.Rows+r] = s, m
		}
	}
	return want, mag
}

// offsetMag is Σ(|D·q| + |F|)·|x| over row r of w, of a type with offsets, against x.
func offsetMag(w *Matrix, r int, x []float32) float64 {
	bb, nsub := w.Type.BlockBytes(), w.Type.BlockSize()/ggml.QK
	row := w.Data[r*w.RowBytes():][:w.RowBytes()]
	var q [ggml.QK]int8
	var m float64
	for b := range w.Cols / ggml.QK {
		sc := decodeSub(w.Type, row[b/nsub*bb:][:bb], b%nsub, &q)
		for j, v := range q {
			d, f := sc.dl, sc.fl
			if j >= ggml.QK/2 {
				d, f = sc.dh, sc.fh
			}
			m += (math.Abs(float64(d)*float64(v)) + math.Abs(float64(f))) * math.Abs(float64(x[b*ggml.QK+j]))
		}
	}
	return m
}

// packs packs w and reports whether the current implementation has a packed layout for it.
func packs(w *Matrix) bool {
	w.Pack()
	return w.Packed()
}

// forEachImpl runs f under every implementation this CPU has.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	defer UseImpl(Impl())
	for _, name := range Implementations() {
		t.Run(name, func(t *testing.T) {
			if err := UseImpl(name); err != nil {
				t.Fatal(err)
			}
			f(t)
		})
	}
}

func testShapes(typ ggml.Type) (rows, cols []int) {
	rows = []int{1, 2, 3, 5, 8, 13, 37}
	switch typ.BlockSize() {
	case ggml.QKK:
		cols = []int{256, 512, 768, 1280, 2048}
	case ggml.QK:
		cols = []int{32, 64, 96, 160, 192, 512, 1408}
	default:
		cols = []int{1, 7, 16, 31, 33, 172, 192, 513}
	}
	if testing.Short() || raceEnabled {
		rows = []int{1, 3, 13, 37}
		cols = cols[:len(cols)-1]
	}
	return rows, cols
}

func TestMatMulMatchesReference(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 8))
		pool := NewPool(2)
		defer pool.Close()
		for _, typ := range computeTypes {
			rowsList, colsList := testShapes(typ)
			for _, cols := range colsList {
				for _, rows := range rowsList {
					w := randMatrix(t, rng, typ, rows, cols)
					n := 1 + rng.IntN(7)
					x := randFloats(rng, n*cols, 1)
					want, mag := refMatMul(w, x, n)
					// float32 accumulation: a few ulps per term in the worst case.
					tol := 1.2e-7 * float64(cols/8+8)
					for _, pack := range []bool{false, true} {
						if pack && !packs(w) {
							continue
						}
						got := make([]float32, n*rows)
						pool.MatMul(got, w, x, n)
						for i := range got {
							if d := math.Abs(float64(got[i]) - want[i]); d > tol*mag[i]+1e-30 {
								t.Fatalf("%v %d×%d n=%d packed=%v: out[%d] = %v, want %v (error %g, bound %g)", typ, rows, cols, n, pack, i, got[i], want[i], d, tol*mag[i])
							}
						}
					}
				}
			}
		}
	})
}

// TestMatMulBatchInvariance checks the property speculative decoding relies on: a
// (row, token) result is bitwise the same whether the token is computed alone or inside a
// batch of any size, at any position, on one thread or two.
func TestMatMulBatchInvariance(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(9, 10))
		pools := []*Pool{NewPool(1), NewPool(2)}
		defer pools[0].Close()
		defer pools[1].Close()
		// Every size to 16, then a few wide blocks (batches of sequences): 40 tokens run
		// the wide kernels in four calls.
		ns := []int{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 23, 32, 40}
		if raceEnabled {
			ns = []int{2, 3, 5, 6, 9, 13}
		}
		// The last shape of each type is large enough (minParallelWork) for two threads to
		// split it even for one token.
		shapes := map[ggml.Type][][]int{
			ggml.F32: {{37, 172}, {5, 7}, {67, 1}, {24, 192}, {801, 172}},
			ggml.F16: {{37, 172}, {5, 7}, {67, 33}, {24, 192}, {1601, 172}},
			// A third number packs the matrix (see Matrix.Pack).
			ggml.Q8_0: {{37, 96}, {5, 32}, {67, 224}, {401, 1408}, {13, 512}, {401, 1408, 1}},
			ggml.Q4_0: {{37, 96}, {5, 32}, {67, 224}, {733, 1408}, {13, 512}, {733, 1408, 1}},
		}
		for _, typ := range subTypes {
			switch typ.BlockSize() {
			case ggml.QKK:
				shapes[typ] = [][]int{{37, 256}, {13, 768}, {801, 2048}, {37, 256, 1}, {13, 768, 1}, {801, 2048, 1}}
			case ggml.QK:
				shapes[typ] = [][]int{{37, 96}, {5, 32}, {601, 1408}, {37, 96, 1}, {5, 32, 1}, {601, 1408, 1}}
			default:
				shapes[typ] = [][]int{{37, 172}, {5, 7}, {1601, 172}}
			}
		}
		for _, typ := range computeTypes {
			for _, sh := range shapes[typ] {
				rows, cols := sh[0], sh[1]
				w := randMatrix(t, rng, typ, rows, cols)
				if len(sh) > 2 && !packs(w) {
					continue
				}
				ns := ns
				if slices.Contains(subTypes, typ) && !w.Packed() {
					ns = []int{2, 3, 5, 6, 13} // portable Go: fewer sizes
					if raceEnabled {
						ns = ns[:3]
					}
				}
				maxN := ns[len(ns)-1]
				x := randFloats(rng, maxN*cols, 1)
				// Some tokens with a huge or zero block exercise the scales.
				x[cols+3] = 1e4
				clear(x[2*cols : 2*cols+min(cols, 32)])
				single := make([]float32, maxN*rows)
				for tok := range maxN {
					pools[0].MatMul(single[tok*rows:(tok+1)*rows], w, x[tok*cols:], 1)
				}
				for _, p := range pools {
					for _, n := range ns {
						for _, start := range []int{0, maxN - n} {
							got := make([]float32, n*rows)
							p.MatMul(got, w, x[start*cols:], n)
							for i, v := range got {
								if want := single[start*rows+i]; math.Float32bits(v) != math.Float32bits(want) {
									t.Fatalf("%v %d×%d threads=%d n=%d start=%d: out[%d] = %v (%#08x), alone %v (%#08x)",
										typ, rows, cols, p.Threads(), n, start, i, v, math.Float32bits(v), want, math.Float32bits(want))
								}
							}
						}
					}
				}
			}
		}
	})
}

// TestMatMulsMatchesMatMul: matrices computed together in one MatMuls give what each
// gives alone, whichever activations each reads (Q8_0 and Q8_K, packed or not, float).
func TestMatMulsMatchesMatMul(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(11, 12))
		pool := NewPool(2)
		defer pool.Close()
		const n = 5
		for _, c := range []struct {
			cols  int
			types []ggml.Type
		}{
			{192, []ggml.Type{ggml.Q8_0, ggml.Q4_0, ggml.F16, ggml.F32}},
			{512, []ggml.Type{ggml.Q4_K, ggml.Q5_0, ggml.Q6_K, ggml.Q8_0, ggml.Q4_K, ggml.Q5_1, ggml.F16}},
		} {
			var ws []*Matrix
			for i, typ := range c.types {
				w := randMatrix(t, rng, typ, 37+64*(i%3), c.cols)
				if i%2 == 0 {
					w.Pack()
				}
				ws = append(ws, w)
			}
			checkMatMuls(t, pool, ws, randFloats(rng, n*c.cols, 1), n)
		}
	})
}

// checkMatMuls computes ws together in one MatMuls for n tokens of x and checks each
// output bitwise against MatMul of its matrix alone.
func checkMatMuls(t *testing.T, pool *Pool, ws []*Matrix, x []float32, n int) {
	t.Helper()
	outs := make([][]float32, len(ws))
	for i, w := range ws {
		outs[i] = make([]float32, n*w.Rows)
	}
	pool.MatMuls(outs, ws, x, n)
	for i, w := range ws {
		want := make([]float32, n*w.Rows)
		pool.MatMul(want, w, x, n)
		for j := range want {
			if math.Float32bits(outs[i][j]) != math.Float32bits(want[j]) {
				t.Fatalf("%d×%d, n=%d: MatMuls output %d (%v, packed=%v)[%d] = %v, MatMul gives %v", w.Rows, w.Cols, n, i, w.Type, w.Packed(), j, outs[i][j], want[j])
			}
		}
	}
}

// TestImplementationsAgree compares every implementation with the generic one on the
// model shapes: they may round differently, but only within float32 accumulation error.
func TestImplementationsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	defer UseImpl(Impl())
	pool := NewPool(1)
	defer pool.Close()
	for _, typ := range computeTypes {
		w := randMatrix(t, rng, typ, 64, 512)
		x := randFloats(rng, 3*512, 1)
		if err := UseImpl("generic"); err != nil {
			t.Fatal(err)
		}
		want := make([]float32, 3*64)
		pool.MatMul(want, w, x, 3)
		_, mag := refMatMul(w, x, 3)
		for _, name := range Implementations() {
			if err := UseImpl(name); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, 3*64)
			pool.MatMul(got, w, x, 3)
			for i := range got {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*mag[i] {
					t.Errorf("%s %v: out[%d] = %v, generic %v", name, typ, i, got[i], want[i])
				}
			}
		}
	}
}

func TestUseImplUnknown(t *testing.T) {
	if err := UseImpl("avx9000"); err == nil {
		t.Error("UseImpl(avx9000) succeeded, want an error")
	}
	if err := UseImpl(Impl()); err != nil {
		t.Errorf("UseImpl(%q) = %v", Impl(), err)
	}
}

func TestMatMulNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	rng := rand.New(rand.NewPCG(15, 16))
	for _, threads := range []int{1, 2} {
		pool := NewPool(threads)
		ws := []*Matrix{randMatrix(t, rng, ggml.Q8_0, 192, 192), randMatrix(t, rng, ggml.F16, 64, 192)}
		x := randFloats(rng, 5*192, 1)
		outs := [][]float32{make([]float32, 5*192), make([]float32, 5*64)}
		pool.MatMuls(outs, ws, x, 5)
		allocs := testing.AllocsPerRun(50, func() {
			pool.MatMuls(outs, ws, x, 5)
			pool.MatMul(outs[0], ws[0], x, 1)
			pool.For(100, func(lo, hi int) {})
		})
		pool.Close()
		if allocs != 0 {
			t.Errorf("threads=%d: %v allocations per call, want 0", threads, allocs)
		}
	}
}

func TestPoolForCoversRange(t *testing.T) {
	for _, threads := range []int{1, 2, 3} {
		pool := NewPool(threads)
		for _, n := range []int{0, 1, 2, 7, 100, 1000} {
			hits := make([]atomic.Int32, n)
			for range 20 {
				pool.For(n, func(lo, hi int) {
					if lo >= hi {
						t.Errorf("For(%d) called fn(%d, %d)", n, lo, hi)
					}
					for i := lo; i < hi; i++ {
						hits[i].Add(1)
					}
				})
			}
			for i := range hits {
				if got := hits[i].Load(); got != 20 {
					t.Fatalf("threads=%d For(%d): index %d covered %d times in 20 runs, want 20", threads, n, i, got)
				}
			}
		}
		pool.Close()
		pool.Close() // idempotent
	}
}

// TestPoolParksAndWakes lets the workers go to sleep between jobs and checks that jobs
// still run, and that Close leaves no goroutine behind.
func TestPoolParksAndWakes(t *testing.T) {
	before := runtime.NumGoroutine()
	pool := NewPool(3)
	var total atomic.Int64
	for i := range 5 {
		if i%2 == 1 {
			time.Sleep(2 * (workerSpin + callerSpin))
		}
		pool.For(64, func(lo, hi int) {
			time.Sleep(10 * time.Microsecond)
			total.Add(int64(hi - lo))
		})
	}
	pool.Close()
	if got := total.Load(); got != 5*64 {
		t.Errorf("ran %d iterations, want %d", got, 5*64)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Errorf("%d goroutines after Close, %d before", got, before)
	}
}

func ExamplePool_MatMul() {
	pool := NewPool(1)
	defer pool.Close()
	// A 2×3 F32 matrix [[1 2 3] [4 5 6]] times the token [1 0 -1].
	data := make([]byte, 2*3*4)
	if err := Quantize(ggml.F32, data, []float32{1, 2, 3, 4, 5, 6}); err != nil {
		panic(err)
	}
	w, err := NewMatrix(ggml.F32, 2, 3, data)
	if err != nil {
		panic(err)
	}
	out := make([]float32, 2)
	pool.MatMul(out, w, []float32{1, 0, -1}, 1)
	fmt.Println(out)
	// Output: [-2 -2]
}

// TestPreparedActivations checks that each implementation's activation quantizer stores
// the values and scales of quantizeActs, in its own layout.
func TestPreparedActivations(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for _, cols := range []int{32, 64, 96, 512, 1408} {
		const n = 3
		x := randFloats(rng, n*cols, 1)
		clear(x[cols : cols+32]) // an all-zero block
		x[2*cols+1] = -40
		// d = 1 in this block, so these are exact ties and near-ties of the rounding.
		copy(x[2*cols-32:], []float32{127, 2.5, -3.5, 0.5, -0.5, 1.4999999, -126.5, 0.49999997})
		for _, ks := range impls {
			var got acts
			ks.prep(&got, x, n, cols)
			checkPrepared(t, ks.name, &got, x, n, cols)
		}
	}
}

// TestPreparedPacked checks each packed layout's activations against quantizeActs: per
// token and group of 16 blocks, dword i of vector v holds values 4v..4v+3 of block i,
// then the blocks' scales, -128·Σq and -8·Σq; blocks past the end are zero.
func TestPreparedPacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, cols := range []int{32, 96, 512, 544, 1024, 1408} {
		const n = 3
		x := randFloats(rng, n*cols, 1)
		clear(x[cols : cols+32])
		x[2*cols+1] = -40
		copy(x[2*cols-32:], []float32{127, 2.5, -3.5, 0.5, -0.5, 1.4999999, -126.5, 0.49999997})
		x[5] = 1e-39 // a denormal block maximum: 1/d overflows
		var want acts
		quantizeActs(&want, x, n, cols)
		for _, ks := range impls {
			if ks.sizeP == nil {
				continue
			}
			var got acts
			ks.sizeP(&got, n, cols)
			for tok := range n {
				ks.prepTokP(&got, x, tok, cols)
			}
			checkPackedLayout(t, ks.name, &got, &want, n, cols)
		}
	}
}

// checkPackedLayout compares n tokens of packed activations (see sizePackedVNNI) with
// want, the same values and scales in the generic layout.
func checkPackedLayout(t *testing.T, name string, got, want *acts, n, cols int) {
	t.Helper()
	nb := cols / ggml.QK
	for tok := range n {
		for b := range (nb + 15) / 16 * 16 {
			grp := got.q[b/16*got.stride+tok*packedActBytes:][:packedActBytes]
			i := b % 16
			var wq []byte
			var wd float32
			if b < nb {
				wq, wd = want.q[(tok*nb+b)*ggml.QK:][:ggml.QK], want.d[tok*nb+b]
			} else {
				wq = make([]byte, ggml.QK)
			}
			var sum, lo int32
			for j := range ggml.QK {
				sum += int32(int8(wq[j]))
				if j < 16 {
					lo += int32(int8(wq[j]))
				}
				if g := grp[64*(j/4)+4*i+j%4]; g != wq[j] {
					t.Fatalf("%s cols=%d token %d block %d: q[%d] = %d, want %d", name, cols, tok, b, j, int8(g), int8(wq[j]))
				}
			}
			if g := math.Float32frombits(binary.LittleEndian.Uint32(grp[512+4*i:])); math.Float32bits(g) != math.Float32bits(wd) {
				t.Fatalf("%s cols=%d token %d block %d: scale %v, want %v", name, cols, tok, b, g, wd)
			}
			// The corrections of the block and of each half, then all four converted
			// and times the scale, in float32.
			corr := []int32{-128 * sum, -8 * sum, -128 * lo, -128 * (sum - lo)}
			for c, want := range corr {
				if g := int32(binary.LittleEndian.Uint32(grp[576+64*c+4*i:])); g != want {
					t.Fatalf("%s cols=%d token %d block %d: correction %d = %d, want %d", name, cols, tok, b, c, g, want)
				}
				wf := float32(want) * wd
				if g := math.Float32frombits(binary.LittleEndian.Uint32(grp[832+64*c+4*i:])); math.Float32bits(g) != math.Float32bits(wf) {
					t.Fatalf("%s cols=%d token %d block %d: scaled correction %d = %v, want %v", name, cols, tok, b, c, g, wf)
				}
			}
		}
	}
}

// checkPrepared compares activations prepared by an assembly quantizer (the generic one,
// with no stride, is the reference) with quantizeActs (see checkPairedLayout).
func checkPrepared(t *testing.T, name string, got *acts, x []float32, n, cols int) {
	t.Helper()
	if got.stride == 0 {
		return
	}
	var want acts
	quantizeActs(&want, x, n, cols)
	checkPairedLayout(t, name, got, &want, n, cols)
}

// checkPairedLayout compares n tokens of activations in a paired layout (prepPaired)
// with want, in the generic layout: per token and pair of blocks the 64 values, each
// block's scale eight times and, in a 256-byte layout, the corrections -128·Σq and -8·Σq
// of each group of four values; a missing second block is zero.
func checkPairedLayout(t *testing.T, name string, got, want *acts, n, cols int) {
	t.Helper()
	nb := cols / ggml.QK
	pairBytes := got.stride / ((nb + 1) / 2)
	i32 := func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }
	for tok := range n {
		for b := range nb {
			pair := got.q[tok*got.stride+b/2*pairBytes:]
			h := b % 2
			wq := want.q[(tok*nb+b)*ggml.QK : (tok*nb+b+1)*ggml.QK]
			for j := range ggml.QK {
				if g := pair[h*ggml.QK+j]; g != wq[j] {
					t.Fatalf("%s cols=%d token %d block %d: q[%d] = %d, want %d", name, cols, tok, b, j, int8(g), int8(wq[j]))
				}
			}
			for j := range 8 {
				g := math.Float32frombits(binary.LittleEndian.Uint32(pair[64+h*32+4*j:]))
				if w := want.d[tok*nb+b]; math.Float32bits(g) != math.Float32bits(w) {
					t.Fatalf("%s cols=%d token %d block %d: scale %v, want %v", name, cols, tok, b, g, w)
				}
			}
			if pairBytes < 256 {
				continue
			}
			for j := range 8 {
				var sum int32
				for _, q := range wq[4*j : 4*j+4] {
					sum += int32(int8(q))
				}
				if g := i32(pair[128+h*32+4*j:]); g != -128*sum {
					t.Fatalf("%s cols=%d token %d block %d: Q8_0 correction %d = %d, want %d", name, cols, tok, b, j, g, -128*sum)
				}
				if g := i32(pair[192+h*32+4*j:]); g != -8*sum {
					t.Fatalf("%s cols=%d token %d block %d: Q4_0 correction %d = %d, want %d", name, cols, tok, b, j, g, -8*sum)
				}
			}
		}
		if nb%2 == 1 {
			last := got.q[tok*got.stride+(nb/2)*pairBytes : tok*got.stride+(nb/2+1)*pairBytes]
			for off := 32; off < pairBytes; off += 64 {
				for j, v := range last[off : off+32] {
					if v != 0 {
						t.Fatalf("%s cols=%d token %d: padding byte %d of the last pair = %d, want 0", name, cols, tok, off+j, v)
					}
				}
			}
		}
	}
}

func TestMatMulPanicsOnBadInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	w := randMatrix(t, rng, ggml.Q8_0, 4, 64)
	pool := NewPool(2)
	defer pool.Close()
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"short output", func() { pool.MatMul(make([]float32, 7), w, make([]float32, 128), 2) }},
		{"short input", func() { pool.MatMul(make([]float32, 8), w, make([]float32, 127), 2) }},
		{"truncated data", func() {
			pool.MatMul(make([]float32, 4), &Matrix{Type: ggml.Q8_0, Rows: 4, Cols: 64, Data: w.Data[:100]}, make([]float32, 64), 1)
		}},
		{"unsupported type", func() {
			pool.MatMul(make([]float32, 4), &Matrix{Type: ggml.Type(7), Rows: 4, Cols: 64}, make([]float32, 64), 1)
		}},
		{"mixed columns", func() {
			pool.MatMuls([][]float32{make([]float32, 4), make([]float32, 4)}, []*Matrix{w, randMatrix(t, rng, ggml.F32, 4, 32)}, make([]float32, 64), 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tc.name)
				}
			}()
			tc.f()
		})
	}
}

// TestWideKernels calls each implementation's wide-block kernels directly on odd shapes
// (partial blocks of 16 rows, one to three groups, every token count a call takes) and
// checks them against the float64 reference and, bitwise, against the narrow packed
// kernels, whose results a product may mix with theirs.
func TestWideKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	for _, ks := range impls {
		if ks.wideGroup == 0 {
			continue
		}
		for _, typ := range []ggml.Type{ggml.Q8_0, ggml.Q4_0, ggml.Q4_K, ggml.Q5_K, ggml.Q6_K, ggml.Q2_K} {
			kind := packKindOf(typ)
			wide, narrow := ks.wide[kind], ks.packed[kind]
			colsList := []int{480, 512, 1408}
			if typ.BlockSize() == ggml.QKK {
				colsList = []int{256, 512, 1280}
			}
			for _, cols := range colsList {
				for _, rows := range []int{2, 14, 16, 18, 38} {
					w := randMatrix(t, rng, typ, rows, cols)
					w.packed, w.packedBy = ks.pack(w), ks
					n := ks.wideGroup + 3
					x := randFloats(rng, n*cols, 1)
					x[3] = 1e4
					clear(x[cols : cols+32])
					if wide == nil {
						continue // a tiled kind (see TestTiledKernels)
					}
					a := packedActs(ks, typ, x, n, cols)
					rb, data := packedRowBytes(w), w.packed.b
					want, mag := refMatMul(w, x, n)
					alone := make([]float32, n*rows)
					for tok := range n {
						narrow(alone[tok*rows:], rows, data, rb, rows, a, tok, 1)
					}
					for k := 1; k <= ks.wideGroup; k++ {
						for _, tok := range []int{0, n - k} {
							got := make([]float32, k*rows)
							wide(got, rows, data, rb, rows, a, tok, k)
							for i, v := range got {
								tt, r := tok+i/rows, i%rows
								if one := alone[tt*rows+r]; math.Float32bits(v) != math.Float32bits(one) {
									t.Fatalf("%s %v %d×%d k=%d tok=%d: row %d token %d = %v, narrow kernel %v", ks.name, typ, rows, cols, k, tok, r, tt, v, want)
								}
								ref, m := want[tt*rows+r], mag[tt*rows+r]
								if d := math.Abs(float64(v) - ref); d > 1.2e-7*float64(cols/8+8)*m+1e-30 {
									t.Fatalf("%s %v %d×%d k=%d: row %d token %d = %v, want %v", ks.name, typ, rows, cols, k, r, tt, v, ref)
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestTiledKernels calls each implementation's tiled kernels directly on odd shapes
// (partial tiles, a product starting at a later tile, rows of one to five super-blocks
// or of 1 to 44 blocks, whole groups of 16 blocks or not, every token count a call
// takes at every position) and checks them bitwise against the same kernel one token
// at a time, and against the float64 reference.
func TestTiledKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	types := map[packKind][]ggml.Type{
		kindQ8:      {ggml.Q8_0, ggml.Q5_0, ggml.IQ4_NL},
		kindNibMin:  {ggml.Q4_K},
		kindByteMin: {ggml.Q5_K, ggml.Q5_1},
		kindHalves:  {ggml.Q6_K},
	}
	for _, ks := range impls {
		for kind, kern := range ks.tiled {
			if kern == nil {
				continue
			}
			if len(types[packKind(kind)]) == 0 {
				t.Fatalf("%s: tiled kernels of kind %d have no test types", ks.name, kind)
			}
			for _, typ := range types[packKind(kind)] {
				colsList := []int{32, 480, 512, 1408}
				if typ.BlockSize() == ggml.QKK {
					colsList = []int{256, 768, 1280}
				}
				for _, cols := range colsList {
					for _, rows := range []int{1, 15, 16, 17, 40} {
						testTiled(t, rng, ks, packKind(kind), typ, rows, cols)
					}
				}
			}
		}
	}
}

// packedActs prepares n tokens of x (cols values each) as ks's packed kernels read them,
// quantized as for weights of type typ.
func packedActs(ks *kernelSet, typ ggml.Type, x []float32, n, cols int) *acts {
	a := new(acts)
	ks.sizeP(a, n, cols)
	prep := ks.prepTokP
	if usesQ8K(typ) {
		prep = ks.prepTokPK
	}
	for tok := range n {
		prep(a, x, tok, cols)
	}
	return a
}

// testTiled is one shape of TestTiledKernels.
func testTiled(t *testing.T, rng *rand.Rand, ks *kernelSet, kind packKind, typ ggml.Type, rows, cols int) {
	t.Helper()
	kern := ks.tiled[kind]
	w := randMatrix(t, rng, typ, rows, cols)
	w.packed, w.packedBy = ks.pack(w), ks
	n := ks.tileGroup[kind] + 2
	x := randFloats(rng, n*cols, 1)
	x[3] = 1e4
	clear(x[cols : cols+typ.BlockSize()])
	a := packedActs(ks, typ, x, n, cols)
	want, mag := refMatMul(w, x, n)
	tb := packedRowBytes(w) * tileRows
	for _, lo := range []int{0, 16} {
		if lo >= rows {
			continue
		}
		wd := w.packed.b[lo/tileRows*tb:]
		alone := make([]float32, n*rows)
		for tok := range n {
			kern(alone[tok*rows+lo:], rows, wd, tb, rows-lo, a, tok, 1)
		}
		for k := 1; k <= ks.tileGroup[kind]; k++ {
			for _, tok := range []int{0, 1, n - k} {
				got := make([]float32, k*rows)
				kern(got[lo:], rows, wd, tb, rows-lo, a, tok, k)
				for i, v := range got {
					tt, r := tok+i/rows, i%rows
					if r < lo {
						if v != 0 {
							t.Fatalf("%s %v %d×%d from row %d: row %d token %d written (%v)", ks.name, typ, rows, cols, lo, r, tt, v)
						}
						continue
					}
					if one := alone[tt*rows+r]; math.Float32bits(v) != math.Float32bits(one) {
						t.Fatalf("%s %v %d×%d k=%d tok=%d: row %d token %d = %v, alone %v", ks.name, typ, rows, cols, k, tok, r, tt, v, one)
					}
					ref, m := want[tt*rows+r], mag[tt*rows+r]
					if d := math.Abs(float64(v) - ref); d > 1.2e-7*float64(cols/8+8)*m+1e-30 {
						t.Fatalf("%s %v %d×%d k=%d: row %d token %d = %v, want %v", ks.name, typ, rows, cols, k, r, tt, v, ref)
					}
				}
			}
		}
	}
}
