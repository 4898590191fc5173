package sample

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestLogSumExp: against the sum of exponentials in 256-bit floats, for logits far
// from 0 (where a naive sum overflows) and near it, and the log-probabilities it gives
// add up to 1.
func TestLogSumExp(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		name         string
		n            int
		scale, shift float64
	}{
		{"small", 5, 1, 0},
		{"vocab", 4096, 4, 0},
		{"Qwen2's vocab", 152064, 3, 0},
		{"large logits", 4096, 3, 200},
		{"very negative", 1000, 2, -500},
	} {
		logits := make([]float32, c.n)
		for i := range logits {
			logits[i] = float32(r.NormFloat64()*c.scale + c.shift)
		}
		got, _ := LogSumExp(logits, nil)
		// Exact: Σ exp(x - shift) in big floats, then add the shift back.
		sum := new(big.Float).SetPrec(256)
		for _, v := range logits {
			sum.Add(sum, new(big.Float).SetFloat64(math.Exp(float64(v)-c.shift)))
		}
		f, _ := sum.Float64()
		want := math.Log(f) + c.shift
		// float32 precision: the softmax sums in float32.
		if math.Abs(got-want) > 1e-5*max(1, math.Abs(want)) {
			t.Errorf("%s: LogSumExp = %v, want %v", c.name, got, want)
		}
		total := 0.0
		for _, v := range logits {
			total += math.Exp(float64(v) - got)
		}
		if math.Abs(total-1) > 1e-4 {
			t.Errorf("%s: probabilities sum to %v", c.name, total)
		}
	}
	if got, _ := LogSumExp(nil, nil); !math.IsInf(got, -1) {
		t.Errorf("LogSumExp(nil) = %v, want -Inf", got)
	}
}

// TestTopIDs: the k best ids in Distribution's order (decreasing logit, ties by id),
// against a full sort, with many ties, for k from 0 to past the vocabulary.
func TestTopIDs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 7, 300} {
		logits := make([]float32, n)
		for i := range logits {
			logits[i] = float32(r.IntN(10)) // many equal logits
		}
		all := make([]int32, n)
		for i := range all {
			all[i] = int32(i)
		}
		slices.SortFunc(all, byLogit(logits))
		for _, k := range []int{0, 1, 2, 5, 20, n, n + 3} {
			prefix := []int32{-7}
			got := TopIDs(prefix, logits, k)
			want := append([]int32{-7}, all[:min(k, n)]...)
			if !slices.Equal(got, want) {
				t.Errorf("n=%d k=%d: TopIDs = %v, want %v", n, k, got, want)
			}
		}
	}
}

// BenchmarkLogprobs times what a request asking for log-probabilities adds per
// generated token: LogSumExp and the top 5 over the specd vocabulary (4096) and
// Qwen2.5's (151936).
//
//	go test ./sample -run '^$' -bench Logprobs
func BenchmarkLogprobs(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, v := range []int{4096, 151936} {
		logits := make([]float32, v)
		for i := range logits {
			logits[i] = float32(r.NormFloat64() * 3)
		}
		b.Run(fmt.Sprintf("vocab=%d", v), func(b *testing.B) {
			var ids []int32
			var scratch []float32
			for b.Loop() {
				_, scratch = LogSumExp(logits, scratch)
				ids = TopIDs(ids[:0], logits, 5)
			}
		})
	}
}
