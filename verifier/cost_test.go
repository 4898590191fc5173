package verifier

import (
	"math"
	"testing"
	"time"
)

// TestCostOutlier: after a knot is set, one pass far slower than the curve moves it by at
// most rate × the estimate (the outlier counts as twice the estimate), and steady passes
// bring it back; the curve stays non-decreasing.
func TestCostOutlier(t *testing.T) {
	c := NewCost(8)
	for _, n := range c.Knots() {
		c.Observe(n, time.Duration(1000+100*n)*time.Microsecond)
	}
	before := c.At(2)
	c.Observe(2, 50*time.Millisecond) // 40 times the estimate
	if got, limit := c.At(2), before*1.2+1e-12; got > limit {
		t.Errorf("after one outlier At(2) = %v, want at most %v (was %v)", got, limit, before)
	}
	for range 40 {
		c.Observe(2, time.Duration(before*float64(time.Second)))
	}
	if got := c.At(2); got > before*1.01 {
		t.Errorf("after steady passes At(2) = %v, want back near %v", got, before)
	}
	for i := 1; i < len(c.est); i++ {
		if c.est[i] < c.est[i-1] {
			t.Errorf("curve decreases at knot %d: %v", c.knots[i], c.String())
		}
	}
}

// TestCostStaysPositive: a knot first set by a pass slowed by something else (the
// first pass near a knot sets it unclamped: a collection, the process descheduled on a
// shared core), then passes between it and the knot below at their usual speed. Their
// updates push the lower knot below zero on their own; the curve must stay positive
// (the controller divides by it, and below zero the clamp of outliers would push it
// further down with every pass) and come down to the passes.
func TestCostStaysPositive(t *testing.T) {
	c := NewCost(16)
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	for _, n := range []int{1, 2, 4, 8} {
		c.Observe(n, ms(1+0.1*float64(n)))
	}
	c.Observe(16, ms(100)) // its first pass, 40 times its usual 2.6 ms
	for i := range 200 {
		c.Observe(12, ms(2.2))
		for n := 1; n <= 24; n++ {
			if at := c.At(n); !(at > 0) || math.IsInf(at, 0) {
				t.Fatalf("after %d passes of 12 tokens: At(%d) = %v, want positive; curve %s", i+1, n, at, c)
			}
		}
	}
	if got := c.At(12); math.Abs(got-2.2e-3) > 0.2e-3 {
		t.Errorf("after 200 passes of 12 tokens at 2.2 ms: At(12) = %v, want near 2.2 ms; curve %s", got, c)
	}
}
