package verifier

import (
	"math/rand/v2"
	"testing"

	"github.com/specd-dev/specd/sample"
)

// linearResidual is residual with q looked up by a scan of its support, as Dist.Prob
// does: the first of repeated ids wins.
func linearResidual(p, q *sample.Dist, u float64) int32 {
	total := 0.0
	for i, id := range p.IDs {
		total += max(0, float64(p.Probs[i])-float64(q.Prob(id)))
	}
	if total <= 0 {
		acc := 0.0
		for i, id := range p.IDs {
			acc += float64(p.Probs[i])
			if u <= acc {
				return id
			}
		}
		return p.IDs[len(p.IDs)-1]
	}
	acc, target, last := 0.0, u*total, p.IDs[0]
	for i, id := range p.IDs {
		r := max(0, float64(p.Probs[i])-float64(q.Prob(id)))
		if r <= 0 {
			continue
		}
		last = id
		acc += r
		if target <= acc {
			return id
		}
	}
	return last
}

// randomDist is a distribution over n of the ids below vocab (repeated ids when dup),
// in random order.
func randomDist(rng *rand.Rand, vocab, n int, dup bool) sample.Dist {
	ids, probs := make([]int32, n), make([]float32, n)
	sum := 0.0
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
		if !dup {
			ids[i] = int32(i * vocab / n)
		}
		probs[i] = float32(rng.ExpFloat64())
		sum += float64(probs[i])
	}
	rng.Shuffle(n, func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	for i := range probs {
		probs[i] = float32(float64(probs[i]) / sum)
	}
	return sample.NewDist(ids, probs)
}

// TestResidualLooksUpQ: residual draws exactly what it drew with q scanned for every
// id of p — q's support smaller than p's, larger, disjoint, with repeated ids (the
// first counts, as in Dist.Prob), and q equal to p (no residual mass: p itself) —
// for uniform draws across (0, 1].
func TestResidualLooksUpQ(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 400 {
		vocab := 1 + rng.IntN(3000)
		p := randomDist(rng, vocab, 1+rng.IntN(vocab), false)
		var q sample.Dist
		switch trial % 4 {
		case 0:
			q = randomDist(rng, vocab, 1+rng.IntN(64), true)
		case 1:
			q = randomDist(rng, vocab, 1+rng.IntN(vocab), false)
		case 2:
			q = sample.NewDist([]int32{int32(vocab + 1)}, []float32{1}) // outside p
		case 3:
			q = sample.NewDist(append([]int32(nil), p.IDs...), append([]float32(nil), p.Probs...))
		}
		for _, u := range []float64{1e-12, rng.Float64(), rng.Float64(), 0.5, 1} {
			if got, want := residual(&p, &q, u), linearResidual(&p, &q, u); got != want {
				t.Fatalf("trial %d (vocab %d, |p| %d, |q| %d) u %v: residual = %d, want %d", trial, vocab, len(p.IDs), len(q.IDs), u, got, want)
			}
		}
	}
}

// BenchmarkResidual: a rejection with no filter on Qwen2's vocabulary, the draft's
// distribution cut to 64 ids.
func BenchmarkResidual(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, 152064)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	s := sample.New(sample.Params{Temperature: 1, TopP: 1})
	p := s.Distribution(logits).Clone()
	d := s.Distribution(logits)
	d.Truncate(64)
	q := d.Clone()
	for b.Loop() {
		residual(&p, &q, 0.5)
	}
}
