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
// The round after a rollback (a fresh round) is different: the draft computes all of it
// after the verdict, so it arrives a round trip hop + d·γ later, d the draft's compute
// time per token and hop the rest (two messages), both measured from fresh rounds. First
// sizes it:
//   - A verifier that decodes its own tokens meanwhile (the default) can use the round
//     only if its first tokens match the steps it took: each step the round arrives
//     later costs another factor α. First keeps it to one token for the verifier's
//     next step plus what arrives within that step, γ = 1 + (c₀ − hop)/d, at least 2.
//   - A verifier that waits (Waits) pays the round trip idle, so First maximises
//     E(γ) / T₁(γ) with T₁(γ) = c₀ + c₁·γ + hop + d·γ.
type Gamma struct {
	Max   int  // largest γ
	Fixed int  // > 0: always this γ (the request fixed it)
	Waits bool // the verifier waits for proposals rather than decoding meanwhile

	acc, rej float64 // decayed counts of accepted tokens and of rounds ending in a rejection
	c0, c1   float64 // seconds: cost of a 1-token pass, extra cost per extra token
	rtt      float64 // seconds waited for a proposal, per round
	passes   int
	draftTok float64 // seconds the draft computes per token; 0 until measured
	hop      float64 // seconds of a fresh round's round trip the draft was not computing
	hopSeen  bool

	gacc, grej float64 // decayed counts for prompt-lookup guesses, as acc and rej

	// Rounds since speculation last paused: decayed tokens committed and seconds taken.
	specTok, specSec float64
	specRounds       int
}

// NewGamma returns a policy capped at max, starting from a neutral prior.
func NewGamma(max, fixed int) *Gamma {
	return &Gamma{Max: max, Fixed: fixed, acc: 2, rej: 1, gacc: 1, grej: 1, c0: 1, c1: 0.1}
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

// ObserveWait records time the verifier spent waiting for a proposal.
func (g *Gamma) ObserveWait(d time.Duration) {
	follow(&g.rtt, true, d.Seconds())
}

// ObserveDraft records a verified proposal of n tokens that the draft computed in
// drafting (0: not reported), and its round trip when it was a fresh round (else 0).
func (g *Gamma) ObserveDraft(drafting time.Duration, n int, roundTrip time.Duration) {
	if drafting <= 0 || n < 1 {
		return
	}
	// The draft's time per token is never 0 once measured; a hop may be.
	follow(&g.draftTok, g.draftTok != 0, drafting.Seconds()/float64(n))
	if roundTrip > 0 {
		follow(&g.hop, g.hopSeen, max(roundTrip-drafting, 0).Seconds())
		g.hopSeen = true
	}
}

// follow moves the running average *v a fifth of the way to x, or sets it to x when
// it has no sample yet.
func follow(v *float64, seen bool, x float64) {
	if !seen {
		*v = x
		return
	}
	*v = 0.8**v + 0.2*x
}

// Alpha is the current estimate of the per-token acceptance probability.
func (g *Gamma) Alpha() float64 { return g.acc / (g.acc + g.rej) }

// Next returns the γ to ask of the draft.
func (g *Gamma) Next() int {
	if g.Fixed > 0 {
		return g.Fixed
	}
	return g.best(g.c0+g.rtt, g.c1)
}

// best is the γ in [1, Max] that maximises E(γ) / (fixed + perToken·γ), all in seconds.
func (g *Gamma) best(fixed, perToken float64) int {
	return fastest(g.Alpha(), 1, g.Max, fixed, perToken)
}

// fastest is the n in [lo, hi] that maximises E(n) / (fixed + perToken·n): the tokens a
// pass over n guessed tokens, each kept with chance a, commits (its own token included)
// per second. Ties go to the smaller n.
func fastest(a float64, lo, hi int, fixed, perToken float64) int {
	a = math.Min(a, 0.999)
	best, bestRate := lo, -1.0
	for n := lo; n <= hi; n++ {
		e := (1 - math.Pow(a, float64(n+1))) / (1 - a)
		if r := e / (fixed + perToken*float64(n)); r > bestRate {
			best, bestRate = n, r
		}
	}
	return best
}

// First returns the γ for the draft's round after a rollback (see the type's comment)
// when it is below Next, else 0 (no cap). A request that fixed γ gets it every round.
func (g *Gamma) First() int {
	if g.Fixed > 0 || g.draftTok == 0 || !g.hopSeen {
		return 0
	}
	var f int
	if g.Waits {
		f = g.best(g.c0+g.hop, g.c1+g.draftTok)
	} else {
		// At least two tokens: the verifier decodes the first itself while the round
		// travels, so a one-token round would never be verified.
		f = max(2, 1+int((g.c0-g.hop)/g.draftTok))
	}
	if f < g.Next() {
		return f
	}
	return 0
}

// PlainPays reports whether the rounds verified since speculation last paused (at least
// minRounds of them) committed tokens more slowly than plain steps do: tokens per second
// of verifier time, waits for proposals included, against 1/c₀. That happens when the
// draft agrees too rarely for its proposals to pay for the block pass and the wait.
//
// It measures rather than predicts: a model from the acceptance estimate paused too
// often. Acceptance comes in bursts, rounds drafted ahead cost no wait, and every pause
// ends in a probe that waits for a draft far behind; with the model's pauses, specd
// bench ran 0.96-1.05x plain decoding on the Q8_0 verifier, against 1.03-1.16x never
// pausing, in alternating runs. A request that fixed γ always speculates.
func (g *Gamma) PlainPays() bool {
	if g.Fixed > 0 || g.passes == 0 || g.specRounds < minRounds || g.specSec <= 0 {
		return false
	}
	return g.specTok/g.specSec < 1/g.c0
}

// minRounds is how many rounds PlainPays measures before it may pause speculation.
const minRounds = 16

// ObserveRate records one verified round for PlainPays: the tokens it committed and the
// verifier time it took, from the end of the previous round's pass (waits included).
func (g *Gamma) ObserveRate(committed int, d time.Duration) {
	const keep = 0.95 // about the last twenty rounds
	g.specTok = keep*g.specTok + float64(committed)
	g.specSec = keep*g.specSec + d.Seconds()
	g.specRounds++
}

// Measured reports whether PlainPays has measured enough rounds to decide.
func (g *Gamma) Measured() bool { return g.specRounds >= minRounds }

// Paused starts PlainPays' measurement afresh, when speculation pauses.
func (g *Gamma) Paused() { g.specTok, g.specSec, g.specRounds = 0, 0, 0 }

// StepTime is the measured time of a one-token forward pass (zero before any).
func (g *Gamma) StepTime() time.Duration {
	if g.passes == 0 {
		return 0
	}
	return time.Duration(g.c0 * float64(time.Second))
}

// Lookup returns how many tokens the verifier's next own step should guess by prompt
// lookup (spec.Lookup), at most max: the k that maximises E(k) / (c₀ + c₁·k), E as
// for γ with the guesses' own acceptance. A guess is a copy of earlier text, so it is
// right far more often in some requests (a refrain, code) than in others (prose). When
// it declines to guess, the estimate moves a little toward the prior, so that a request
// whose text starts repeating later is tried again.
func (g *Gamma) Lookup(max int) int {
	if max <= 0 {
		return 0
	}
	best := fastest(g.gacc/(g.gacc+g.grej), 0, max, g.c0, g.c1)
	if best == 0 {
		const back = 0.05
		g.gacc += back * (1 - g.gacc)
		g.grej += back * (1 - g.grej)
	}
	return best
}

// ObserveGuess records an own step's prompt-lookup guess: tokens guessed, kept of them.
func (g *Gamma) ObserveGuess(guessed, accepted int) {
	if guessed == 0 {
		return
	}
	g.gacc = g.gacc*decay + float64(accepted)
	r := 0.0
	if accepted < guessed {
		r = 1
	}
	g.grej = g.grej*decay + r
}
