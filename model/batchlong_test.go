package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
)

// TestBatchLongPositions checks batch invariance where TestBatchAcrossSequences does
// not reach: sequences many cache blocks long, of very different lengths in one pass
// (so the attention scores' rows are as long as the longest, and grow pass by pass),
// and a sequence that runs up to the last position of the context. Each row of logits
// must be bitwise the one the sequence computes alone (in passes of 64).
func TestBatchLongPositions(t *testing.T) {
	for _, c := range []struct {
		file string
		kv   ggml.Type
	}{
		{"specd-draft-q8_0.gguf", ggml.F32},
		{"specd-draft-q8_0.gguf", ggml.F16},
		{"arch-qwen2-f16.gguf", ggml.F32}, // NEOX RoPE, from the per-row operands
	} {
		t.Run(fmt.Sprintf("%s/kv-%v", c.file, c.kv), func(t *testing.T) {
			const ctxLen = 300 // past four blocks of 64
			m, err := model.Load(testmodels.ForTest(t, c.file), model.LoadOptions{Context: ctxLen})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			rng := rand.New(rand.NewPCG(3, 4))
			// Lengths: the whole context, long, and short; the short ones join late.
			lens := []int{ctxLen, 231, 140, 9}
			inputs := make([][]int32, len(lens))
			for i, n := range lens {
				for range n {
					inputs[i] = append(inputs[i], int32(rng.IntN(m.Vocab)))
				}
			}
			V := m.Vocab
			want := make([][]float32, len(inputs))
			for i, in := range inputs {
				st := newStateKV(t, m, 1, 64, c.kv)
				l, err := st.Forward(in, true)
				if err != nil {
					t.Fatal(err)
				}
				want[i] = append([]float32(nil), l...)
				if _, err := st.Forward(in[:1], false); i == 0 && err == nil {
					t.Fatalf("a token past the context of %d was taken", ctxLen)
				}
			}
			pool := kernels.NewPool(2)
			t.Cleanup(pool.Close)
			kv, err := m.NewKVPool(64<<20, c.kv)
			if err != nil {
				t.Fatal(err)
			}
			b := m.NewBatch(pool, 48)
			seqs := make([]*model.State, len(inputs))
			for i := range seqs {
				seqs[i] = m.NewState(pool, kv.NewSeq(), 1)
			}
			done := make([]int, len(inputs))
			for pass := 0; ; pass++ {
				var segs []model.Segment
				var who []int
				budget := 48
				for i, in := range inputs {
					start := i * 40 // later sequences join later, behind longer ones
					if left := len(in) - done[i]; left > 0 && pass*8 >= start && budget > 0 {
						n := min(left, 1+rng.IntN(17), budget)
						budget -= n
						segs = append(segs, model.Segment{Seq: seqs[i].Seq, Tokens: in[done[i] : done[i]+n], Logits: n})
						who = append(who, i)
					}
				}
				if len(segs) == 0 {
					if finished(done, inputs) {
						break
					}
					continue
				}
				l, err := b.Forward(segs)
				if err != nil {
					t.Fatal(err)
				}
				for k, sg := range segs {
					i := who[k]
					for j := range sg.Tokens {
						row, w := l[:V], want[i][(done[i]+j)*V:(done[i]+j+1)*V]
						l = l[V:]
						for x := range row {
							if math.Float32bits(row[x]) != math.Float32bits(w[x]) {
								t.Fatalf("pass %d: sequence %d position %d logit %d = %v, want %v (alone)", pass, i, done[i]+j, x, row[x], w[x])
							}
						}
					}
					done[i] += len(sg.Tokens)
				}
			}
		})
	}
}
