package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
)

// TestBatchAcrossSequences: a sequence's logits are bitwise identical whether it runs
// alone, one token per pass, or in ragged passes shared with other sequences — prefill
// chunks, single steps and blocks of several tokens mixed at random — at any thread
// count and with either KV entry type. This is what makes a request's output under
// load equal to its output alone.
func TestBatchAcrossSequences(t *testing.T) {
	f32 := ggml.F32
	cases := []struct {
		file  string
		quant *ggml.Type
		kv    ggml.Type
	}{
		{"specd-target-q8_0.gguf", nil, ggml.F32},
		{"specd-target-q8_0.gguf", &f32, ggml.F32},
		{"specd-target-q8_0.gguf", nil, ggml.F16},
		{"specd-draft-q8_0.gguf", nil, ggml.F32},
		{"stories260K.bin", nil, ggml.F32},
		{"arch-qwen2-f16.gguf", nil, ggml.F32},      // Q/K/V biases, NEOX RoPE
		{"arch-llama3-f16.gguf", nil, ggml.F16},     // rope_freqs, untied output
		{"specd-target-q4_k_m.gguf", nil, ggml.F32}, // Q8_K activations for Q4_K and Q6_K, Q8_0 for Q5_0 and Q8_0
		{"arch-llama3-q4_k_m.gguf", nil, ggml.F32},  // a Q6_K classifier
		{"synth-qwen3.gguf", nil, ggml.F32},         // per-head Q/K norms, heads wider than dim/heads
		{"synth-llama-yarn.gguf", nil, ggml.F32},
	}
	synth, _ := synthFiles(t)
	seqs, steps := 6, 20
	if testing.Short() {
		seqs, steps = 4, 8
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s/%v/kv-%v", c.file, c.quant, c.kv)
		t.Run(name, func(t *testing.T) {
			var m *model.Model
			if p, ok := synth[c.file]; ok {
				m = loadPath(t, p, c.quant)
			} else {
				m = load(t, c.file, c.quant)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			// Each sequence: a prompt of its own length, then steps tokens to feed.
			inputs := make([][]int32, seqs)
			for i := range inputs {
				n := 3 + rng.IntN(40) + steps
				for range n {
					inputs[i] = append(inputs[i], int32(rng.IntN(m.Vocab)))
				}
			}
			// Solo: every position alone, one thread.
			want := make([][]float32, seqs)
			for i, in := range inputs {
				st := newStateKV(t, m, 1, 1, c.kv)
				for _, tok := range in {
					l, err := st.Forward([]int32{tok}, true)
					if err != nil {
						t.Fatal(err)
					}
					want[i] = append(want[i], l...)
				}
			}
			for threads := 1; threads <= 2; threads++ {
				pool := kernels.NewPool(threads)
				t.Cleanup(pool.Close)
				kv, err := m.NewKVPool(256<<20, c.kv)
				if err != nil {
					t.Fatal(err)
				}
				b := m.NewBatch(pool, 64)
				done := make([]int, seqs)
				states := make([]*model.State, seqs)
				for i := range states {
					states[i] = m.NewState(pool, kv.NewSeq(), 1)
				}
				for pass := 0; ; pass++ {
					var segs []model.Segment
					var who []int
					budget := 8 + rng.IntN(56)
					for i, in := range inputs {
						left := len(in) - done[i]
						if left == 0 || rng.IntN(4) == 0 {
							continue
						}
						n := min(left, 1+rng.IntN(12), budget)
						if n == 0 {
							break
						}
						budget -= n
						segs = append(segs, model.Segment{Seq: states[i].Seq, Tokens: in[done[i] : done[i]+n], Logits: n})
						who = append(who, i)
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
					V := m.Vocab
					for k, sg := range segs {
						i := who[k]
						for j := range sg.Tokens {
							row := l[:V]
							l = l[V:]
							w := want[i][(done[i]+j)*V : (done[i]+j+1)*V]
							for x := range row {
								if math.Float32bits(row[x]) != math.Float32bits(w[x]) {
									t.Fatalf("threads %d pass %d: sequence %d position %d logit %d = %v, want %v (alone)",
										threads, pass, i, done[i]+j, x, row[x], w[x])
								}
							}
						}
						done[i] += len(sg.Tokens)
					}
				}
			}
		})
	}
}

func finished(done []int, inputs [][]int32) bool {
	for i := range done {
		if done[i] < len(inputs[i]) {
			return false
		}
	}
	return true
}

// TestBatchErrors: a bad pass is refused whole, leaving every cache as it was.
func TestBatchErrors(t *testing.T) {
	m := load(t, "stories260K.bin", nil)
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	kv, err := m.NewKVPool(8<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	a, c := kv.NewSeq(), kv.NewSeq()
	b := m.NewBatch(pool, 8)
	if _, err := b.Forward([]model.Segment{{Seq: a, Tokens: []int32{1, 2}, Logits: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		segs []model.Segment
	}{
		{"too many tokens", []model.Segment{{Seq: a, Tokens: make([]int32, 5)}, {Seq: c, Tokens: make([]int32, 4)}}},
		{"shared sequence", []model.Segment{{Seq: a, Tokens: []int32{3}}, {Seq: a, Tokens: []int32{4}}}},
		{"bad token", []model.Segment{{Seq: c, Tokens: []int32{3}}, {Seq: a, Tokens: []int32{int32(m.Vocab)}}}},
		{"empty segment", []model.Segment{{Seq: c, Tokens: []int32{3}}, {Seq: a}}},
		{"logits past tokens", []model.Segment{{Seq: a, Tokens: []int32{3}, Logits: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Forward(tc.segs); err == nil {
				t.Fatal("Forward succeeded, want an error")
			}
			if a.Len() != 2 || c.Len() != 0 {
				t.Errorf("after a refused pass: lengths %d and %d, want 2 and 0", a.Len(), c.Len())
			}
		})
	}
}

func newStateKV(t testing.TB, m *model.Model, threads, block int, typ ggml.Type) *model.State {
	t.Helper()
	pool := kernels.NewPool(threads)
	t.Cleanup(pool.Close)
	kv, err := m.NewKVPool(64<<20, typ)
	if err != nil {
		t.Fatal(err)
	}
	return m.NewState(pool, kv.NewSeq(), block)
}
