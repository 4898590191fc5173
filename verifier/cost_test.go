package verifier

import (
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
