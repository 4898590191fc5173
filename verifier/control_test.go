package verifier

import (
	"testing"
	"time"
)

// TestControl: the controller gives a request the number of speculative tokens that
// commits the most tokens per second of the pass, on the measured cost curve, and asks
// its draft for as many — also
// when the curve jumps from one token to two and is flat after (passes timed while
// drafts compute beside the verifier), where adding tokens one at a time while the
// next one pays would stop before the first.
func TestControl(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	cases := []struct {
		name  string
		cost  func(n int) time.Duration
		alpha float64
		avail int
		want  int
	}{
		{"weights-bound: extra tokens nearly free", func(n int) time.Duration { return ms(1 + 0.05*float64(n-1)) }, 0.6, 4, 4},
		{"arithmetic-bound: every token costs a step", func(n int) time.Duration { return ms(float64(n)) }, 0.6, 4, 0},
		{"a jump at two tokens, then flat", func(n int) time.Duration {
			if n == 1 {
				return ms(2.6)
			}
			return ms(5.5)
		}, 0.6, 4, 4},
		{"a jump too high for what drafts give", func(n int) time.Duration {
			if n == 1 {
				return ms(2.6)
			}
			return ms(8)
		}, 0.6, 4, 0},
		{"nothing to check", func(n int) time.Duration { return ms(1) }, 0.9, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			const maxTokens = 16
			s := &Scheduler{cfg: Config{MaxTokens: maxTokens}, cost: NewCost(maxTokens)}
			for _, n := range s.cost.Knots() {
				s.cost.Observe(n, c.cost(n))
			}
			e := &entry{source: srcDraft, avail: c.avail, alpha: c.alpha, draft: rate{acc: c.alpha, rej: 1 - c.alpha}}
			s.running = []*entry{e}
			added := s.control(maxTokens-1, 1)
			if e.k != c.want || added != c.want {
				t.Errorf("k = %d (added %d), want %d; curve %s", e.k, added, c.want, s.cost)
			}
			// The γ asked of the draft follows the same rule (up to MaxGamma).
			s.cfg.MaxGamma = 4
			if g := s.draftGamma(e); c.avail > 0 && g != c.want {
				t.Errorf("draftGamma = %d, want %d; curve %s", g, c.want, s.cost)
			}
		})
	}
}

// TestObserveStepLeavesOutPrompts: the draft switch times a step without its prompt
// chunks' share of the pass (by the cost curve), and a pass of prompt chunks alone not
// at all: they commit nothing, and a burst of new requests would otherwise count
// against whichever setting its epoch measured.
func TestObserveStepLeavesOutPrompts(t *testing.T) {
	cost := NewCost(16)
	for _, n := range cost.Knots() {
		cost.Observe(n, time.Duration(1000+100*n)*time.Microsecond)
	}
	e := &entry{job: Job{Spec: true, Draftable: true}}
	for _, c := range []struct {
		pass, prefilled int
		want            time.Duration
	}{
		{16, 0, 10 * time.Millisecond},
		{16, 12, time.Duration(10e6 * cost.At(4) / cost.At(16))},
		{16, 16, 0},
	} {
		s := &Scheduler{cost: cost, drafts: newDraftSwitch(), running: []*entry{e}}
		s.drafts.on = false
		s.passTokens, s.prefilled, s.committed = c.pass, c.prefilled, c.pass-c.prefilled
		s.ObserveStep(10 * time.Millisecond)
		if got := s.drafts.elapsed; got != c.want {
			t.Errorf("pass of %d tokens, %d of them prompt: step timed %v, want %v", c.pass, c.prefilled, got, c.want)
		}
	}
}
