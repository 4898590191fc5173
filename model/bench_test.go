package model_test

import (
	"fmt"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
)

// BenchmarkForward times one forward pass over a block of n tokens after 100 or 250 cached positions of
// the target (the cost of verifying n-1 draft tokens, or of one pass of a batch of n
// sequences' tokens) and of the draft.
//
//	go test ./model -run '^$' -bench Forward -benchtime 200x
func BenchmarkForward(b *testing.B) {
	f32 := ggml.F32
	for _, c := range []struct {
		name  string
		file  string
		quant *ggml.Type
	}{
		{"target-q8_0", "specd-target-q8_0.gguf", nil},
		{"target-q4_k_m", "specd-target-q4_k_m.gguf", nil},
		{"target-f32", "specd-target-q8_0.gguf", &f32},
		{"draft-q8_0", "specd-draft-q8_0.gguf", nil},
		{"draft-f16", "specd-draft-f16.gguf", nil},
		{"qwen2-f16", "arch-qwen2-f16.gguf", nil},   // biases, NEOX RoPE
		{"llama3-f16", "arch-llama3-f16.gguf", nil}, // rope_freqs, untied output
	} {
		m := load(b, c.file, c.quant)
		for _, threads := range []int{1, 2} {
			for _, n := range []int{1, 2, 3, 5, 9, 16, 32} {
				// 100 cached positions, and 250: attention grows with the context,
				// and a block's attention with its tokens too.
				for _, past := range []int{100, 250} {
					b.Run(fmt.Sprintf("%s/threads=%d/block=%d/past=%d", c.name, threads, n, past), func(b *testing.B) {
						st := newState(b, m, threads, 64)
						ctx := make([]int32, past)
						for i := range ctx {
							ctx[i] = int32(100 + i%300)
						}
						if _, err := st.Forward(ctx, false); err != nil {
							b.Fatal(err)
						}
						blk := ctx[:n]
						for b.Loop() {
							if _, err := st.Forward(blk, true); err != nil {
								b.Fatal(err)
							}
							st.Seq.Truncate(past)
						}
					})
				}
			}
		}
	}
}

// BenchmarkForwardSeqs times one pass of a batch of n sequences, one token each,
// every sequence with 100 cached positions of its own in an F32 or F16 cache: a
// continuous-batching decode step. Compare it with BenchmarkForward's block of n tokens
// of one sequence, which shares one sequence's keys and values among its tokens.
//
//	go test ./model -run '^$' -bench ForwardSeqs -benchtime 200x
func BenchmarkForwardSeqs(b *testing.B) {
	m := load(b, "specd-target-q8_0.gguf", nil)
	const past = 100
	for _, kvt := range []ggml.Type{ggml.F32, ggml.F16} {
		for _, threads := range []int{1, 2} {
			for _, n := range []int{1, 4, 16} {
				b.Run(fmt.Sprintf("target-q8_0/kv=%v/threads=%d/seqs=%d/past=%d", kvt, threads, n, past), func(b *testing.B) {
					pool := kernels.NewPool(threads)
					defer pool.Close()
					kv, err := m.NewKVPool(int64(n)*8<<20, kvt)
					if err != nil {
						b.Fatal(err)
					}
					bt := m.NewBatch(pool, max(n, past))
					segs := make([]model.Segment, n)
					for i := range segs {
						ctx := make([]int32, past)
						for j := range ctx {
							ctx[j] = int32(100 + (j*7+i*13)%300)
						}
						seq := kv.NewSeq()
						if _, err := bt.Forward([]model.Segment{{Seq: seq, Tokens: ctx}}); err != nil {
							b.Fatal(err)
						}
						segs[i] = model.Segment{Seq: seq, Tokens: ctx[:1], Logits: 1}
					}
					for b.Loop() {
						if _, err := bt.Forward(segs); err != nil {
							b.Fatal(err)
						}
						for _, sg := range segs {
							sg.Seq.Truncate(past)
						}
					}
				})
			}
		}
	}
}

// BenchmarkDraftBesideVerifier times one-token passes of the draft while the target
// decodes on two threads in the same process, one step after another, as `specd up`
// runs them on a small machine: the draft's cost per token there, which decides
// whether speculation pays, includes what the verifier's threads take from it — on
// machines whose two vCPUs are hyperthreads of one core, their spinning too.
//
//	go test ./model -run '^$' -bench DraftBesideVerifier -benchtime 2000x
func BenchmarkDraftBesideVerifier(b *testing.B) {
	target, draft := load(b, "specd-target-q8_0.gguf", nil), load(b, "specd-draft-q8_0.gguf", nil)
	ctx := make([]int32, 100)
	for i := range ctx {
		ctx[i] = int32(100 + i%300)
	}
	for _, verifier := range []bool{false, true} {
		b.Run(fmt.Sprintf("verifier=%v", verifier), func(b *testing.B) {
			stop := make(chan struct{})
			done := make(chan error, 1)
			steps := 0
			if verifier {
				vs := newState(b, target, 2, 1)
				if _, err := vs.Forward(ctx, false); err != nil {
					b.Fatal(err)
				}
				go func() {
					for {
						select {
						case <-stop:
							done <- nil
							return
						default:
						}
						if _, err := vs.Forward(ctx[:1], true); err != nil {
							done <- err
							return
						}
						vs.Seq.Truncate(len(ctx))
						steps++
					}
				}()
			}
			ds := newState(b, draft, 1, 1)
			if _, err := ds.Forward(ctx, false); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := ds.Forward(ctx[:1], true); err != nil {
					b.Fatal(err)
				}
				ds.Seq.Truncate(len(ctx))
			}
			b.StopTimer()
			if verifier {
				close(stop)
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(steps)/b.Elapsed().Seconds(), "verifier-steps/s")
			}
		})
	}
}
