package verifier

import (
	"fmt"
	"strings"
	"time"
)

// Cost estimates the time of a forward pass from the number of tokens it runs: a
// piecewise-linear curve through knots at 1, 2, 4, 8, … tokens, each moved toward the
// passes measured near it. On a CPU a pass of few tokens is bound by reading the
// weights (a second token costs little more than the first) and a pass of many by
// arithmetic (each token costs about the same); the curve follows both without a model
// of either. It is not safe for concurrent use.
type Cost struct {
	knots []int     // token counts, ascending powers of two
	est   []float64 // seconds at each knot
	seen  []bool
}

// NewCost returns a curve up to maxTokens tokens per pass, starting from a guess (a
// step of one millisecond, a tenth of that per extra token) that the first
// measurements replace.
func NewCost(maxTokens int) *Cost {
	c := &Cost{}
	for k := 1; ; k *= 2 {
		c.knots = append(c.knots, min(k, maxTokens))
		c.est = append(c.est, 1e-3*(1+0.1*float64(min(k, maxTokens)-1)))
		c.seen = append(c.seen, false)
		if k >= maxTokens {
			break
		}
	}
	return c
}

// Observe records a pass of n tokens that took d.
func (c *Cost) Observe(n int, d time.Duration) {
	s := d.Seconds()
	if n < 1 || s <= 0 {
		return
	}
	i, w := c.bracket(n)
	const rate = 0.2
	for _, k := range []struct {
		i int
		w float64
	}{{i, 1 - w}, {i + 1, w}} {
		if k.w == 0 || k.i >= len(c.est) {
			continue
		}
		if !c.seen[k.i] {
			// The first pass near a knot sets it: the start-up guess knows nothing.
			c.est[k.i], c.seen[k.i] = s*c.est[k.i]/c.At(n), true
			continue
		}
		// One pass slowed by something else (a page fault, a collection, a neighbour on
		// the core) counts as at most twice the estimate: knots that few passes visit
		// — 2 to 8 tokens while speculation is off — would otherwise keep the outlier.
		c.est[k.i] += rate * k.w * (min(s, 2*c.At(n)) - c.At(n))
	}
	// A pass of more tokens never costs less: keep the curve non-decreasing.
	for j := 1; j < len(c.est); j++ {
		c.est[j] = max(c.est[j], c.est[j-1])
	}
}

// At is the estimated seconds of a pass of n ≥ 1 tokens.
func (c *Cost) At(n int) float64 {
	i, w := c.bracket(n)
	if i+1 >= len(c.est) {
		last := len(c.est) - 1
		if last == 0 {
			return c.est[0] * float64(n)
		}
		// Past the last knot, continue the last segment's slope.
		slope := (c.est[last] - c.est[last-1]) / float64(c.knots[last]-c.knots[last-1])
		return c.est[last] + slope*float64(n-c.knots[last])
	}
	return (1-w)*c.est[i] + w*c.est[i+1]
}

// bracket returns the knot at or below n and how far n lies toward the next one.
func (c *Cost) bracket(n int) (int, float64) {
	i := 0
	for i+1 < len(c.knots) && c.knots[i+1] <= n {
		i++
	}
	if i+1 >= len(c.knots) || c.knots[i] == n {
		return i, 0
	}
	return i, float64(n-c.knots[i]) / float64(c.knots[i+1]-c.knots[i])
}

// Knots are the pass sizes the curve is anchored at: the sizes worth timing at start.
func (c *Cost) Knots() []int { return c.knots }

// String lists the curve's knots as tokens:milliseconds.
func (c *Cost) String() string {
	var b strings.Builder
	for i, k := range c.knots {
		fmt.Fprintf(&b, "%d:%.2f ", k, c.est[i]*1e3)
	}
	return strings.TrimSpace(b.String())
}
