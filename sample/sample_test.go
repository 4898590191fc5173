package sample

import (
	"math"
	"testing"
)

func TestDistributionFilters(t *testing.T) {
	logits := []float32{2, 1, 0, -1, 3, 2}
	cases := []struct {
		p    Params
		want map[int32]bool
	}{
		{Params{Temperature: 1}, map[int32]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true}},
		{Params{Temperature: 1, TopK: 3}, map[int32]bool{4: true, 0: true, 5: true}},
		{Params{Temperature: 1, TopP: 0.6}, map[int32]bool{4: true, 0: true, 5: false}},
		{Params{Temperature: 1, MinP: 0.3}, map[int32]bool{4: true, 0: true, 5: true, 1: false}},
		{Params{}, map[int32]bool{4: true}},
	}
	for _, c := range cases {
		d := New(c.p).Distribution(logits)
		got := map[int32]bool{}
		sum := 0.0
		for i, id := range d.IDs {
			got[id] = true
			sum += float64(d.Probs[i])
		}
		for id, in := range c.want {
			if in != got[id] {
				t.Errorf("%+v: token %d kept = %v, want %v (support %v)", c.p, id, got[id], in, d.IDs)
			}
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Errorf("%+v: probabilities sum to %v", c.p, sum)
		}
	}
	// Temperature scales the softmax.
	d := New(Params{Temperature: 0.5}).Distribution([]float32{0, 1})
	if want := 1 / (1 + math.Exp(2)); math.Abs(float64(d.Prob(0))-want) > 1e-6 {
		t.Errorf("p(0) at T=0.5 = %v, want %v", d.Prob(0), want)
	}
}

func TestTruncateKeepsMostLikely(t *testing.T) {
	s := New(Params{Temperature: 1})
	d := s.Distribution([]float32{0, 5, 1, 4, 2, 3})
	d.Truncate(3)
	if len(d.IDs) != 3 || d.IDs[0] != 1 || d.IDs[1] != 3 || d.IDs[2] != 5 {
		t.Fatalf("Truncate(3) support = %v, want [1 3 5]", d.IDs)
	}
}

// TestGumbelMaxIsSeededAndBatchFree: the draw depends only on (seed, position, logits).
func TestGumbelMaxIsSeededAndBatchFree(t *testing.T) {
	logits := make([]float32, 100)
	for i := range logits {
		logits[i] = float32(i%7) * 0.3
	}
	a := New(Params{Temperature: 0.8, Seed: 42})
	b := New(Params{Temperature: 0.8, Seed: 42})
	c := New(Params{Temperature: 0.8, Seed: 43})
	same, diff := 0, 0
	for pos := range 200 {
		x, y, z := a.Sample(logits, pos), b.Sample(logits, pos), c.Sample(logits, pos)
		if x != y {
			t.Fatalf("same seed, position %d: %d vs %d", pos, x, y)
		}
		if x == z {
			same++
		} else {
			diff++
		}
	}
	if diff == 0 {
		t.Errorf("different seeds drew identical tokens at all %d positions", same)
	}
}

// TestSampleFastPathEqualsDistribution: without filters Sample skips the probabilities;
// it must draw exactly what GumbelMax over Distribution draws.
func TestSampleFastPathEqualsDistribution(t *testing.T) {
	logits := make([]float32, 512)
	for i := range logits {
		logits[i] = float32((i*7919)%1000) * 0.013
	}
	for _, temp := range []float32{0.3, 0.8, 1, 1.7} {
		s := New(Params{Temperature: temp, TopP: 1, Seed: 99})
		for pos := range 300 {
			want := s.GumbelMax(s.Distribution(logits), pos)
			if got := s.Sample(logits, pos); got != want {
				t.Fatalf("T=%v pos %d: Sample = %d, GumbelMax(Distribution) = %d", temp, pos, got, want)
			}
		}
	}
}

// TestTop2RunnerUp: the second token is the winner of the same race with the first
// excluded — for greedy the second highest logit.
func TestTop2RunnerUp(t *testing.T) {
	logits := []float32{0.5, 3, 1, 2.5, -1}
	if a, b := New(Params{}).Top2(logits, 0); a != 1 || b != 3 {
		t.Fatalf("greedy Top2 = %d, %d; want 1, 3", a, b)
	}
	for _, p := range []Params{{Temperature: 0.9, TopP: 1, Seed: 5}, {Temperature: 0.9, TopK: 3, Seed: 5}} {
		s := New(p)
		for pos := range 50 {
			a, b := s.Top2(logits, pos)
			want, best := int32(-1), math.Inf(-1)
			d := s.Distribution(logits)
			for i, id := range d.IDs {
				if v := float64(d.scaled[i]) + Gumbel(p.Seed, uint64(pos), uint64(id)); id != a && v > best {
					want, best = id, v
				}
			}
			if a != s.Sample(logits, pos) || b != want {
				t.Fatalf("%+v pos %d: Top2 = %d, %d; want %d, %d", p, pos, a, b, s.Sample(logits, pos), want)
			}
		}
	}
}

// TestTinyTemperatureIsArgmax: as the temperature goes to 0 sampling becomes the argmax,
// with every filter. Below about 3e-39 the reciprocal of a float32 temperature is +Inf
// (and logits/T overflows float32 from about |logit|/3.4e38), which made every
// probability NaN: the draw was the first token with a positive logit, and with min_p
// no token at all (-1). Below GreedyBelow it is greedy; above, sampling must get there
// on its own.
func TestTinyTemperatureIsArgmax(t *testing.T) {
	logits := []float32{0.5, 37, 1, 37.25, -1, 3, 2, -40}
	const best = 3
	for _, temp := range []float32{1e-3, 1e-4, 1e-6, 1e-20, 1e-37, 1e-39, math.SmallestNonzeroFloat32} {
		for _, p := range []Params{
			{Temperature: temp, TopP: 1, Seed: 1},
			{Temperature: temp, TopK: 3, TopP: 1, Seed: 1},
			{Temperature: temp, TopP: 0.9, Seed: 1},
			{Temperature: temp, TopP: 1, MinP: 0.1, Seed: 1},
		} {
			s := New(p)
			for pos := range 20 {
				if got := s.Sample(logits, pos); got != best {
					t.Fatalf("%+v: Sample at %d = %d, want the argmax %d", p, pos, got, best)
				}
			}
			if d := s.Distribution(logits); d.Prob(best) != 1 {
				t.Errorf("%+v: Distribution = %v %v, want all on %d", p, d.IDs, d.Probs, best)
			}
		}
	}
}
