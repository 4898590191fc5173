package verifier

import (
	"math"
	"time"
)

// Gamma chooses how many tokens the draft should propose per round, from the observed
// acceptance and the measured cost of verification passes. It maximises expected
// committed tokens per unit of verifier time:
//
//	E(γ) = (1 − α^(γ+1)) / (1 − α)        tokens per round (Leviathan et al. 2023, eq. 1)
//	T(γ) = c₀ + c₁·γ + rtt                verifier time per round
//
// where α is the per-token acceptance probability (estimated from recent rounds as
// accepted / (accepted + rejections), with a prior), c₀ and c₁ come from timed forward
// passes (a block of γ+1 tokens costs c₀ + c₁·γ), and rtt is the verifier's wait for
// proposals. The zero value is not usable; use NewGamma.
//
// That γ serves rounds the draft makes ahead, while the verifier checks earlier ones.
// The round after a rollback is different: the verifier waits while the draft computes
// every token of it, so First sizes it with the wait in the cost,
//
//	T₁(γ) = c₀ + c₁·γ + hop + d·γ
//
// where d is the draft's compute time per token and hop the rest of the wait (two
// messages), both measured from proposals the verifier waited for.
type Gamma struct {
	Max   int // largest γ
	Fixed int // > 0: always this γ (the request fixed it)

	acc, rej float64 // decayed counts of accepted tokens and of rounds ending in a rejection
	c0, c1   float64 // seconds: cost of a 1-token pass, extra cost per extra token
	rtt      float64 // seconds waited for a proposal, per round
	passes   int
	draftTok float64 // seconds the draft computes per token; 0 until measured
	hop      float64 // seconds of a wait that the draft was not computing
}

// NewGamma returns a policy capped at max, starting from a neutral prior.
func NewGamma(max, fixed int) *Gamma {
	return &Gamma{Max: max, Fixed: fixed, acc: 2, rej: 1, c0: 1, c1: 0.1}
}

const decay = 0.9 // weight of history per observed round

// Seed starts the cost model from measured passes before any pass of the request is
// timed: c₀ = step, c₁ = (block5 − step)/4. Without it the first pass timed, often a
// block, stands for c₀ and makes plain decoding look slower than it is. A zero step
// leaves the model as it was.
func (g *Gamma) Seed(step, block5 time.Duration) {
	if s := step.Seconds(); s > 0 && g.passes == 0 {
		g.c0, g.c1 = s, 0.1*s
		if block5 > step {
			g.c1 = (block5 - step).Seconds() / 4
		}
		g.passes = 1
	}
}

// ObserveRound records a verified round: drafted tokens checked, accepted of them.
func (g *Gamma) ObserveRound(drafted, accepted int) {
	g.acc = g.acc*decay + float64(accepted)
	r := 0.0
	if accepted < drafted {
		r = 1
	}
	g.rej = g.rej*decay + r
}

// ObservePass records the time of a forward pass over n tokens (n ≥ 1).
func (g *Gamma) ObservePass(n int, d time.Duration) {
	s := d.Seconds()
	if s <= 0 {
		return
	}
	const w = 0.2
	if g.passes == 0 {
		// Until both are measured, assume a block costs little more than one step.
		g.c0, g.c1 = s, s*0.1
	}
	g.passes++
	if n == 1 {
		g.c0 = (1-w)*g.c0 + w*s
		return
	}
	extra := (s - g.c0) / float64(n-1)
	g.c1 = (1-w)*g.c1 + w*max(extra, 0)
}

// ObserveWait records time the verifier spent waiting for a proposal of n tokens that
// the draft took drafting to compute (0: not reported).
func (g *Gamma) ObserveWait(wait, drafting time.Duration, n int) {
	g.rtt = 0.8*g.rtt + 0.2*wait.Seconds()
	if drafting <= 0 || n < 1 {
		return
	}
	tok, hop := drafting.Seconds()/float64(n), max(wait-drafting, 0).Seconds()
	if g.draftTok == 0 {
		g.draftTok, g.hop = tok, hop
		return
	}
	g.draftTok = 0.8*g.draftTok + 0.2*tok
	g.hop = 0.8*g.hop + 0.2*hop
}

// Alpha is the current estimate of the per-token acceptance probability.
func (g *Gamma) Alpha() float64 { return g.acc / (g.acc + g.rej) }

// Next returns the γ to ask of the draft.
func (g *Gamma) Next() int {
	if g.Fixed > 0 {
		return g.Fixed
	}
	a := math.Min(g.Alpha(), 0.999)
	best, bestRate := 1, 0.0
	for γ := 1; γ <= g.Max; γ++ {
		e := (1 - math.Pow(a, float64(γ+1))) / (1 - a)
		t := g.c0 + g.c1*float64(γ) + g.rtt
		if r := e / t; r > bestRate {
			best, bestRate = γ, r
		}
	}
	return best
}

// First returns the γ for the draft's round after a rollback when it is below Next, else
// 0 (no cap): that round is all wait, so each of its tokens also costs the draft's time
// (see T₁ above). A request that fixed γ gets it every round.
func (g *Gamma) First() int {
	if g.Fixed > 0 || g.draftTok == 0 {
		return 0
	}
	a := math.Min(g.Alpha(), 0.999)
	best, bestRate := 1, 0.0
	for γ := 1; γ <= g.Max; γ++ {
		e := (1 - math.Pow(a, float64(γ+1))) / (1 - a)
		t := g.c0 + g.hop + (g.c1+g.draftTok)*float64(γ)
		if r := e / t; r > bestRate {
			best, bestRate = γ, r
		}
	}
	if best >= g.Next() {
		return 0
	}
	return best
}

// PlainPays reports whether plain decoding is expected to commit tokens faster than
// the best speculative round at the current estimates: 1/c₀ > E(γ)/T(γ) for every γ.
// That happens when the draft agrees too rarely with the verifier for its proposals to
// pay for the block pass and the wait (some text is simply hard to predict). A request
// that fixed γ always speculates.
func (g *Gamma) PlainPays() bool {
	if g.Fixed > 0 || g.passes == 0 {
		return false
	}
	a := math.Min(g.Alpha(), 0.999)
	plain := 1 / g.c0
	for γ := 1; γ <= g.Max; γ++ {
		e := (1 - math.Pow(a, float64(γ+1))) / (1 - a)
		if e/(g.c0+g.c1*float64(γ)+g.rtt) >= plain {
			return false
		}
	}
	return true
}

// StepTime is the measured time of a one-token forward pass (zero before any).
func (g *Gamma) StepTime() time.Duration {
	if g.passes == 0 {
		return 0
	}
	return time.Duration(g.c0 * float64(time.Second))
}
