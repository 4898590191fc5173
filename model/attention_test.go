package model

import (
	"fmt"
	"math"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
)

// attentionPass runs a pass of seqs sequences of n tokens each, every one after past
// cached positions of its own in a cache of type kvt, and returns the batch, ready for
// attention to rerun on the pass's queries and cache, and its segments.
func attentionPass(tb testing.TB, m *Model, pool *kernels.Pool, kvt ggml.Type, seqs, n, past int) (*Batch, []Segment) {
	tb.Helper()
	kv, err := m.NewKVPool(int64(seqs)*8<<20, kvt)
	if err != nil {
		tb.Fatal(err)
	}
	bt := m.NewBatch(pool, max(seqs*n, past))
	segs := make([]Segment, seqs)
	for i := range segs {
		ctx := make([]int32, past+n)
		for j := range ctx {
			ctx[j] = int32(100 + (j*7+i*13)%300)
		}
		seq := kv.NewSeq()
		if _, err := bt.Forward([]Segment{{Seq: seq, Tokens: ctx[:past]}}); err != nil {
			tb.Fatal(err)
		}
		segs[i] = Segment{Seq: seq, Tokens: ctx[past:], Logits: 1}
	}
	if _, err := bt.Forward(segs); err != nil {
		tb.Fatal(err)
	}
	return bt, segs
}

// TestF16AttentionAsConverted checks that attention over an F16 cache, which reads the
// halves as stored and converts them in registers, gives bitwise the outputs of
// attention over an F32 cache holding the converted values (what it computed before
// it read halves): so an F16 cache keeps its expected values. Decode steps of many
// sequences and blocks of one sequence, with one and two threads; the target's query
// heads share KV heads two by two, the draft's (32 dimensions) have KV heads of their
// own.
func TestF16AttentionAsConverted(t *testing.T) {
	for _, file := range []string{"specd-target-q8_0.gguf", "specd-draft-q8_0.gguf"} {
		t.Run(file, func(t *testing.T) { testF16AttentionAsConverted(t, file) })
	}
}

func testF16AttentionAsConverted(t *testing.T, file string) {
	m, err := Load(testmodels.ForTest(t, file), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, threads := range []int{1, 2} {
		for _, c := range []struct{ seqs, n, past int }{{5, 1, 70}, {2, 3, 90}, {1, 16, 100}, {3, 7, 130}, {2, 4, 90}, {1, 5, 250}} {
			t.Run(fmt.Sprintf("threads=%d/seqs=%d/block=%d/past=%d", threads, c.seqs, c.n, c.past), func(t *testing.T) {
				pool := kernels.NewPool(threads)
				defer pool.Close()
				bt, segs := attentionPass(t, m, pool, ggml.F16, c.seqs, c.n, c.past)
				full, err := m.NewKVPool(int64(c.seqs)*8<<20, ggml.F32)
				if err != nil {
					t.Fatal(err)
				}
				// The same cache contents, converted, in F32 sequences.
				kc := segs[0].Seq.Pool().Config()
				kbuf, vbuf := make([]float32, kc.BlockTokens*kc.KVDim), make([]float32, kc.BlockTokens*kc.KVDim)
				conv := make([]*kvcache.Seq, c.seqs)
				for i, sg := range segs {
					conv[i] = full.NewSeq()
					if err := conv[i].Grow(sg.Seq.Len()); err != nil {
						t.Fatal(err)
					}
					for li := range m.Layers {
						for p := range sg.Seq.Len() {
							b, r := p/kc.BlockTokens, p%kc.BlockTokens
							k, v := sg.Seq.BlockKV(li, b, kbuf, vbuf)
							conv[i].Put(li, p, k[r*kc.KVDim:(r+1)*kc.KVDim], v[r*kc.KVDim:(r+1)*kc.KVDim])
						}
					}
				}
				for li := range m.Layers {
					for i := range bt.segs {
						bt.segs[i].seq = segs[i].Seq
					}
					bt.attention(li)
					want := append([]float32(nil), bt.att...)
					for i := range bt.segs {
						bt.segs[i].seq = conv[i]
					}
					bt.attention(li)
					for j, got := range bt.att[:len(want)] {
						if math.Float32bits(got) != math.Float32bits(want[j]) {
							t.Fatalf("layer %d: attention output [%d] over the F16 cache = %v, over its F32 conversion %v", li, j, want[j], got)
						}
					}
				}
			})
		}
	}
}

// BenchmarkAttention times attention alone, every layer of the target, for the passes
// BenchmarkForwardSeqs and BenchmarkForward time whole: 16 sequences of one token each
// at 100 cached positions (a continuous-batching decode step, bound by reading every
// sequence's keys and values), one token at 250, and blocks of 16 tokens of one
// sequence (verification, bound by arithmetic), with F32 and F16 caches; 16 sequences
// at 250 positions too.
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
			for _, c := range []struct{ seqs, n, past int }{{16, 1, 100}, {16, 1, 250}, {1, 1, 250}, {1, 16, 100}, {1, 16, 250}} {
				b.Run(fmt.Sprintf("kv=%v/threads=%d/seqs=%d/block=%d/past=%d", kvt, threads, c.seqs, c.n, c.past), func(b *testing.B) {
					pool := kernels.NewPool(threads)
					defer pool.Close()
					// One pass sets up the queries and the cache; attention then reruns
					// on them.
					bt, _ := attentionPass(b, m, pool, kvt, c.seqs, c.n, c.past)
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

// BenchmarkAttentionDraft times attention alone, every layer of the draft (six heads of
// 32 dimensions, each with a KV head of its own), for one token and for a block of 5
// after 100 and 250 cached positions, with one thread: the part of the draft's passes
// that grows with the context.
//
//	go test ./model -run '^$' -bench AttentionDraft -benchtime 2000x
func BenchmarkAttentionDraft(b *testing.B) {
	m, err := Load(testmodels.ForTest(b, "specd-draft-q8_0.gguf"), LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, kvt := range []ggml.Type{ggml.F32, ggml.F16} {
		for _, c := range []struct{ n, past int }{{1, 100}, {1, 250}, {5, 100}, {5, 250}} {
			b.Run(fmt.Sprintf("kv=%v/block=%d/past=%d", kvt, c.n, c.past), func(b *testing.B) {
				pool := kernels.NewPool(1)
				defer pool.Close()
				bt, _ := attentionPass(b, m, pool, kvt, 1, c.n, c.past)
				for b.Loop() {
					for li := range m.Layers {
						bt.attention(li)
					}
				}
			})
		}
	}
}
