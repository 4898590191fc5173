package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/specd-dev/specd/ggml"
)

// benchShapes are the weight matrices of the three models, rows×cols.
var benchShapes = []struct {
	model      string
	rows, cols int
}{
	{"target", 512, 512},  // wq, wo
	{"target", 256, 512},  // wk, wv (4 KV heads)
	{"target", 1408, 512}, // w1, w3
	{"target", 512, 1408}, // w2
	{"target", 4096, 512}, // classifier
	{"draft", 192, 192},   // wq, wk, wv, wo
	{"draft", 512, 192},   // w1, w3
	{"draft", 192, 512},   // w2
	{"draft", 4096, 192},  // classifier
	{"stories", 64, 64},   // wq, wo
	{"stories", 172, 64},  // w1, w3
	{"stories", 64, 172},  // w2
	{"stories", 512, 64},  // classifier
}

// BenchmarkMatMul times one MatMul per shape, type, batch size and thread count. Bytes
// are the weight bytes, so MB/s reads as weight bandwidth.
func BenchmarkMatMul(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, sh := range benchShapes {
		for _, typ := range computeTypes {
			if sh.cols%typ.BlockSize() != 0 {
				continue
			}
			for _, w := range withPacked(randMatrix(b, rng, typ, sh.rows, sh.cols)) {
				for _, n := range []int{1, 5, 8, 16, 32, 128} {
					x := randFloats(rng, n*sh.cols, 1)
					out := make([]float32, n*sh.rows)
					for _, threads := range []int{1, 2} {
						name := fmt.Sprintf("%s/%dx%d/%v/n=%d/threads=%d", sh.model, sh.rows, sh.cols, layoutName(w), n, threads)
						b.Run(name, func(b *testing.B) {
							pool := NewPool(threads)
							defer pool.Close()
							b.SetBytes(int64(len(w.Data)))
							for b.Loop() {
								pool.MatMul(out, w, x, n)
							}
						})
					}
				}
			}
		}
	}
}

// withPacked returns w and, when the current implementation packs it, a packed copy.
func withPacked(w *Matrix) []*Matrix {
	p := *w
	p.Pack()
	if !p.Packed() {
		return []*Matrix{w}
	}
	return []*Matrix{w, &p}
}

// layoutName names w's type and, for a packed matrix, its layout: "q8_0" or "q8_0-packed".
func layoutName(w *Matrix) string {
	if w.Packed() {
		return w.Type.String() + "-packed"
	}
	return w.Type.String()
}

// decodeSet is the per-token matrix products of a model: layers × (QKV, O, gate+up, down)
// and the classifier, each matrix distinct so that the set streams from memory.
type decodeSet struct {
	qkv, o, gateUp, down [][]*Matrix
	cls                  *Matrix
	bytes                int64
}

func newDecodeSet(tb testing.TB, typ ggml.Type, pack bool, layers, dim, kvDim, ffn, vocab int) *decodeSet {
	rng := rand.New(rand.NewPCG(2, 2))
	s := &decodeSet{}
	mk := func(rows, cols int) *Matrix {
		t := typ
		if _, err := t.RowBytes(cols); err != nil {
			t = ggml.Q5_0 // as llama.cpp's K-quant mixes do for rows not a multiple of 256
		}
		m := randMatrix(tb, rng, t, rows, cols)
		if pack {
			m.Pack()
		}
		s.bytes += int64(len(m.Data))
		return m
	}
	for range layers {
		s.qkv = append(s.qkv, []*Matrix{mk(dim, dim), mk(kvDim, dim), mk(kvDim, dim)})
		s.o = append(s.o, []*Matrix{mk(dim, dim)})
		s.gateUp = append(s.gateUp, []*Matrix{mk(ffn, dim), mk(ffn, dim)})
		s.down = append(s.down, []*Matrix{mk(dim, ffn)})
	}
	s.cls = mk(vocab, dim)
	return s
}

// run does every product of one step for n tokens (activations are not chained: the
// inputs are fixed random vectors).
func (s *decodeSet) run(p *Pool, x, xf []float32, outs [][]float32, n int) {
	for l := range s.qkv {
		p.MatMuls(outs[:3], s.qkv[l], x, n)
		p.MatMuls(outs[:1], s.o[l], x, n)
		p.MatMuls(outs[:2], s.gateUp[l], x, n)
		p.MatMuls(outs[:1], s.down[l], xf, n)
	}
	p.MatMul(outs[0], s.cls, x, n)
}

// BenchmarkDecodeStep times all the matrix products of one step of the verifier target
// (dim 512, 8 layers, 4 KV heads of 64, FFN 1408, vocab 4096: 25.7M weights) and of the
// draft (dim 192, 4 layers, FFN 512), for 1 token (decode), 5 (verifying a block) and
// more (a batch of sequences' tokens, a prefill).
func BenchmarkDecodeStep(b *testing.B) {
	models := []struct {
		name                           string
		layers, dim, kvDim, ffn, vocab int
		types                          []ggml.Type
	}{
		{"target", 8, 512, 256, 1408, 4096, []ggml.Type{ggml.Q8_0, ggml.Q4_0, ggml.Q4_K, ggml.Q6_K, ggml.F16, ggml.F32}},
		{"draft", 4, 192, 192, 512, 4096, []ggml.Type{ggml.F16, ggml.Q8_0, ggml.Q4_0}},
	}
	for _, m := range models {
		for _, typ := range m.types {
			for _, pack := range []bool{false, true} {
				if pack && typ.BlockSize() == 1 {
					continue
				}
				s := newDecodeSet(b, typ, pack, m.layers, m.dim, m.kvDim, m.ffn, m.vocab)
				layout := typ.String()
				if pack {
					layout += "-packed"
				}
				for _, n := range []int{1, 5, 16, 32, 128} {
					rng := rand.New(rand.NewPCG(3, 3))
					x := randFloats(rng, n*m.dim, 1)
					xf := randFloats(rng, n*m.ffn, 1)
					outs := make([][]float32, 3)
					for i := range outs {
						outs[i] = make([]float32, n*max(m.vocab, m.ffn))
					}
					for _, threads := range []int{1, 2} {
						b.Run(fmt.Sprintf("%s/%s/n=%d/threads=%d", m.name, layout, n, threads), func(b *testing.B) {
							pool := NewPool(threads)
							defer pool.Close()
							b.SetBytes(s.bytes)
							for b.Loop() {
								s.run(pool, x, xf, outs, n)
							}
						})
					}
				}
			}
		}
	}
}

// BenchmarkQuantizeActs times preparing the activations of 1 and 128 tokens of 512 for
// each implementation's unpacked kernels: Q8_0 (prep), and Q8_K for K-quant weights
// (prepK, or quantizeActsQ8K where the set has none).
func BenchmarkQuantizeActs(b *testing.B) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, ks := range impls {
		prepK := ks.prepK
		if prepK == nil {
			prepK = quantizeActsQ8K
		}
		for _, q := range []struct {
			name string
			prep func(a *acts, x []float32, n, cols int)
		}{{"q8_0", ks.prep}, {"q8_k", prepK}} {
			for _, n := range []int{1, 128} {
				x := randFloats(rng, n*512, 1)
				b.Run(fmt.Sprintf("%s/%s/n=%d", ks.name, q.name, n), func(b *testing.B) {
					var a acts
					b.SetBytes(int64(4 * len(x)))
					for b.Loop() {
						q.prep(&a, x, n, 512)
					}
				})
			}
		}
	}
}

// BenchmarkWideKernel times the wide-block kernels alone on a 256×512 packed Q4_0 tile
// (its weights and activations in L2), per token count of a call, and the narrow packed
// kernels on as many tokens (which mmRows would run in calls of at most group); the
// product metric is per (row, token) of 512 columns.
func BenchmarkWideKernel(b *testing.B) {
	if cur.wide[kindQ4] == nil {
		b.Skip("no wide kernels")
	}
	const rows, cols = 256, 512
	rng := rand.New(rand.NewPCG(5, 5))
	w := randMatrix(b, rng, ggml.Q4_0, rows, cols)
	w.Pack()
	for _, k := range []int{2, 3, 4, 5, 6, 8, 12} {
		x := randFloats(rng, k*cols, 1)
		var a acts
		cur.sizeP(&a, k, cols)
		for t := range k {
			cur.prepTokP(&a, x, t, cols)
		}
		out := make([]float32, k*rows)
		b.Run(fmt.Sprintf("wide/k=%d", k), func(b *testing.B) {
			for b.Loop() {
				cur.wide[kindQ4](out, rows, w.packed.b, packedRowBytes(w), rows, &a, 0, k)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows*k), "ns/product")
		})
		b.Run(fmt.Sprintf("narrow/k=%d", k), func(b *testing.B) {
			for b.Loop() {
				for t := 0; t < k; t += cur.group {
					cur.packed[kindQ4](out[t*rows:], rows, w.packed.b, packedRowBytes(w), rows, &a, t, min(cur.group, k-t))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows*k), "ns/product")
		})
	}
}

// BenchmarkPrepPacked times preparing the activations of packed kernels for 16 tokens of
// 512 and of 1408 values: Q8_0, and Q8_K (K-quant weights, whose rows are multiples of
// 256).
func BenchmarkPrepPacked(b *testing.B) {
	if cur.prepTokP == nil {
		b.Skip("no packed layout")
	}
	rng := rand.New(rand.NewPCG(6, 6))
	const n = 16
	for _, c := range []struct {
		name string
		cols int
		prep func(a *acts, x []float32, t, cols int)
	}{{"q8_0", 512, cur.prepTokP}, {"q8_0", 1408, cur.prepTokP}, {"q8_k", 512, cur.prepTokPK}, {"q8_k", 1536, cur.prepTokPK}} {
		x := randFloats(rng, n*c.cols, 1)
		b.Run(fmt.Sprintf("%s/cols=%d", c.name, c.cols), func(b *testing.B) {
			var a acts
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				cur.sizeP(&a, n, c.cols)
				for t := range n {
					c.prep(&a, x, t, c.cols)
				}
			}
		})
	}
}

// BenchmarkTiledKernel times the tiled kernels alone on 512×512 matrices of Q8_0 and
// Q6_K (weights and activations in L2 and L1) per token count of a call; the product
// metric is per (row, token) of 512 columns.
func BenchmarkTiledKernel(b *testing.B) {
	const rows, cols = 512, 512
	rng := rand.New(rand.NewPCG(7, 7))
	for _, typ := range []ggml.Type{ggml.Q8_0, ggml.Q6_K, ggml.Q4_K} {
		kind := packKindOf(typ)
		kern := cur.tiled[kind]
		if kern == nil {
			continue
		}
		w := randMatrix(b, rng, typ, rows, cols)
		w.Pack()
		prep := cur.prepTokP
		if usesQ8K(typ) {
			prep = cur.prepTokPK
		}
		for k := 1; k <= cur.tileGroup[kind]; k++ {
			x := randFloats(rng, k*cols, 1)
			var a acts
			cur.sizeP(&a, k, cols)
			for t := range k {
				prep(&a, x, t, cols)
			}
			out := make([]float32, k*rows)
			b.Run(fmt.Sprintf("%v/k=%d", typ, k), func(b *testing.B) {
				for b.Loop() {
					kern(out, rows, w.packed.b, packedRowBytes(w)*tileRows, rows, &a, 0, k)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows*k), "ns/product")
			})
		}
	}
}
