package model

import (
	"fmt"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kernels"
)

// BenchmarkAttention times attention alone, every layer of the target, for the passes
// BenchmarkForwardSeqs and BenchmarkForward time whole: 16 sequences of one token each
// at 100 cached positions (a continuous-batching decode step, bound by reading every
// sequence's keys and values), one token at 250, and blocks of 16 tokens of one
// sequence (verification, bound by arithmetic), with F32 and F16 caches.
//
//	go test ./model -run '^$' -bench Attention -benchtime 200x
func BenchmarkAttention(b *testing.B) {
	m, err := Load(testmodels.ForTest(b, "specd-target-q8_0.gguf"), LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, kvt := range []ggml.Type{ggml.F32, ggml.F16} {
		for _, threads := range []int{1, 2} {
			for _, c := range []struct{ seqs, n, past int }{{16, 1, 100}, {1, 1, 250}, {1, 16, 100}, {1, 16, 250}} {
				b.Run(fmt.Sprintf("kv=%v/threads=%d/seqs=%d/block=%d/past=%d", kvt, threads, c.seqs, c.n, c.past), func(b *testing.B) {
					pool := kernels.NewPool(threads)
					defer pool.Close()
					kv, err := m.NewKVPool(int64(c.seqs)*8<<20, kvt)
					if err != nil {
						b.Fatal(err)
					}
					bt := m.NewBatch(pool, max(c.seqs*c.n, c.past))
					segs := make([]Segment, c.seqs)
					for i := range segs {
						ctx := make([]int32, c.past+c.n)
						for j := range ctx {
							ctx[j] = int32(100 + (j*7+i*13)%300)
						}
						seq := kv.NewSeq()
						if _, err := bt.Forward([]Segment{{Seq: seq, Tokens: ctx[:c.past]}}); err != nil {
							b.Fatal(err)
						}
						segs[i] = Segment{Seq: seq, Tokens: ctx[c.past:], Logits: 1}
					}
					// One pass sets up the queries and the cache; attention then reruns
					// on them.
					if _, err := bt.Forward(segs); err != nil {
						b.Fatal(err)
					}
					for b.Loop() {
						for li := range m.Layers {
							bt.attention(li)
						}
					}
				})
			}
		}
	}
}
