package model_test

import (
	"math"
	"runtime"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
)

// TestOffHeapLifetimes creates and drops KV pools and batches, whose memory lives
// outside the Go heap and is unmapped once they are unreachable, with collections (and
// so the unmapping cleanups) between every pass, while earlier pools' mappings are
// returned and new ones may take their addresses. Every round must compute the same
// logits as the first round with its cache type: a view of a pool's blocks or a batch's scratch used after its owner became
// unreachable would read another mapping, or fault.
func TestOffHeapLifetimes(t *testing.T) {
	m := load(t, "specd-draft-q8_0.gguf", nil)
	pool := kernels.NewPool(2)
	defer pool.Close()
	tokens := []int32{1, 450, 3996, 1735, 1701, 432, 1, 2987, 13, 3}
	want := map[ggml.Type][]float32{} // each cache type's logits in its first round
	for round := range 12 {
		typ := []ggml.Type{ggml.F32, ggml.F16}[round%2]
		kv, err := m.NewKVPool(16<<20, typ) // a mapping of its own, not a shared chunk
		if err != nil {
			t.Fatal(err)
		}
		a, b := kv.NewSeq(), kv.NewSeq()
		bt := m.NewBatch(pool, 8)
		kv = nil
		var got []float32
		for i := range tokens {
			runtime.GC()
			l, err := bt.Forward([]model.Segment{
				{Seq: a, Tokens: tokens[i : i+1], Logits: 1},
				{Seq: b, Tokens: tokens[len(tokens)-1-i : len(tokens)-i], Logits: 1},
			})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, l...)
		}
		w, ok := want[typ]
		if !ok {
			want[typ] = got
			continue
		}
		for i := range w {
			if math.Float32bits(got[i]) != math.Float32bits(w[i]) {
				t.Fatalf("round %d (%v cache): logit %d = %v, want %v as in its first round", round, typ, i, got[i], w[i])
			}
		}
	}
}
