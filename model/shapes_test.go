package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
)

// TestAttentionShapesAgainstNaive runs synthetic llama models whose attention the
// shipped files never exercise — query heads per KV head of 1, 3, 4 and 5 (the pairing
// of heads in attention leaves one over), head dimensions of 16, 64 and 128 — through
// batched passes of two sequences fed in chunks of odd lengths (positions not a
// multiple of 16), with F32 and F16 caches of 64, 16 and 5 positions per block (queries
// crossing block boundaries), on one and two threads. Every position's logits must
// match the float64 naive reference (within float32 rounding for an F32 cache, and fp16
// rounding of the keys and values for an F16 one), and for each cache type be the same
// bits whatever the block size, the chunking and the threads.
func TestAttentionShapesAgainstNaive(t *testing.T) {
	vocab := vocabKV(t)
	dir := t.TempDir()
	for _, sh := range []struct{ heads, kvHeads, hd int }{{3, 1, 64}, {5, 1, 64}, {2, 2, 64}, {6, 2, 128}, {3, 3, 128}, {5, 5, 16}, {4, 1, 128}} {
		s := synthSpec{name: fmt.Sprintf("synth-heads%d-kv%d-hd%d.gguf", sh.heads, sh.kvHeads, sh.hd), arch: "llama", dim: 64, layers: 2,
			heads: sh.heads, kvHeads: sh.kvHeads, headDim: sh.hd, ffn: 128, ctx: 256, ropeDim: sh.hd, base: 10000, seed: uint64(10 + 7*sh.heads + sh.hd)}
		t.Run(s.name, func(t *testing.T) {
			path := filepath.Join(dir, s.name)
			if err := os.WriteFile(path, synthesize(t, s, vocab), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(path, model.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			rng := rand.New(rand.NewPCG(uint64(sh.heads), uint64(sh.hd)))
			ids := make([]int32, 90)
			for i := range ids {
				ids[i] = int32(3 + rng.IntN(m.Vocab-3))
			}
			want := naiveLogits(t, path, ids)
			for _, typ := range []ggml.Type{ggml.F32, ggml.F16} {
				limit := 1e-3
				if typ == ggml.F16 {
					limit = 0.1 // fp16 keys and values: about 3e-2 on these models
				}
				var first []float32
				for _, bt := range []int{64, 16, 5} {
					for threads := 1; threads <= 2; threads++ {
						got := runChunked(t, m, ids, typ, bt, threads)
						worst := 0.0
						for pos, w := range want {
							for j, x := range w {
								worst = max(worst, math.Abs(float64(got[0][pos*m.Vocab+j])-x))
							}
						}
						if !(worst <= limit) {
							t.Errorf("%v cache, %d positions a block, %d threads: logits differ from the naive reference by up to %.3g, want ≤ %g",
								typ, bt, threads, worst, limit)
						}
						if first == nil {
							first = got[0]
						}
						for k, g := range got {
							for i := range g {
								if math.Float32bits(g[i]) != math.Float32bits(first[i]) {
									t.Fatalf("%v cache, %d positions a block, %d threads, sequence %d: logit %d of position %d = %v, want %v as with the first run",
										typ, bt, threads, k, i%m.Vocab, i/m.Vocab, g[i], first[i])
								}
							}
						}
					}
				}
			}
		})
	}
}

// runChunked feeds ids to two sequences of one cache in shared passes, each in its own
// chunks, and returns every position's logits of each.
func runChunked(t *testing.T, m *model.Model, ids []int32, typ ggml.Type, bt, threads int) [2][]float32 {
	t.Helper()
	pool := kernels.NewPool(threads)
	defer pool.Close()
	kv, err := kvcache.NewPool(kvcache.Config{Layers: m.Layers, KVDim: m.KVDim(), BlockTokens: bt, Budget: 16 << 20, Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	b := m.NewBatch(pool, 64)
	chunks := [2][]int{{13, 1, 30, 7, 2, 20, 17}, {1, 1, 29, 3, 40, 16}}
	seqs := [2]*kvcache.Seq{kv.NewSeq(), kv.NewSeq()}
	var out [2][]float32
	for step := 0; len(out[0]) < len(ids)*m.Vocab || len(out[1]) < len(ids)*m.Vocab; step++ {
		var segs []model.Segment
		for k := range seqs {
			at := seqs[k].Len()
			if at == len(ids) {
				continue
			}
			n := min(chunks[k][step%len(chunks[k])], len(ids)-at)
			segs = append(segs, model.Segment{Seq: seqs[k], Tokens: ids[at : at+n], Logits: n})
		}
		logits, err := b.Forward(segs)
		if err != nil {
			t.Fatal(err)
		}
		for _, sg := range segs {
			k := 0
			if sg.Seq == seqs[1] {
				k = 1
			}
			n := len(sg.Tokens) * m.Vocab
			out[k] = append(out[k], logits[:n]...)
			logits = logits[n:]
		}
	}
	return out
}
