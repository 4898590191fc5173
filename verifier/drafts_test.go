package verifier

import (
	"testing"
	"time"
)

// TestDraftSwitch runs the switch against a machine where checking drafts commits
// tokens at rate[on] per second, and checks that it settles on the faster setting,
// explores the other rarely, follows a change, and keeps load bands apart.
func TestDraftSwitch(t *testing.T) {
	const step = time.Millisecond
	run := func(d *draftSwitch, rate [2]float64, running int, dur time.Duration) (onFrac float64) {
		on := 0
		n := int(dur / step)
		carry := 0.0
		for range n {
			if d.on {
				on++
			}
			carry += rate[b2i(d.on)] * step.Seconds()
			tokens := int(carry)
			carry -= float64(tokens)
			d.observe(tokens, step, running, true)
		}
		return float64(on) / float64(n)
	}
	cases := []struct {
		name     string
		rate     [2]float64 // off, on
		min, max float64    // share of the time on, after settling
	}{
		{"drafts cost more than they give", [2]float64{3000, 2000}, 0, 0.12},
		{"drafts pay", [2]float64{1000, 1500}, 0.88, 1},
		{"drafts pay less than the margin", [2]float64{1000, 1030}, 0, 0.12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDraftSwitch()
			run(&d, c.rate, 16, 5*time.Second) // settle
			if got := run(&d, c.rate, 16, 20*time.Second); got < c.min || got > c.max {
				t.Errorf("on %.0f%% of the time, want %.0f–%.0f%%", 100*got, 100*c.min, 100*c.max)
			}
		})
	}
	t.Run("follows a change", func(t *testing.T) {
		d := newDraftSwitch()
		run(&d, [2]float64{3000, 2000}, 16, 10*time.Second)
		if got := run(&d, [2]float64{1000, 2000}, 16, 20*time.Second); got < 0.8 {
			t.Errorf("after drafts began to pay: on %.0f%% of the time, want most", 100*got)
		}
	})
	t.Run("a heavier load starts off where a lighter one measured off better", func(t *testing.T) {
		for _, c := range []struct {
			rate [2]float64 // at 4 requests: off, on
			want bool       // the setting 16 requests start in, coming from on
		}{
			{[2]float64{3000, 2000}, false},
			{[2]float64{1000, 1500}, true},
		} {
			d := newDraftSwitch()
			run(&d, c.rate, 4, 5*time.Second)
			if got := d.start(loadBand(16), true); got != c.want {
				t.Errorf("4 requests measured off %v, on %v: 16 start on = %v, want %v", c.rate[0], c.rate[1], got, c.want)
			}
		}
		if d := newDraftSwitch(); !d.start(loadBand(16), true) || d.start(loadBand(16), false) {
			t.Errorf("nothing measured: a band must start in the current setting")
		}
		// Starting off on that assumption, the band decodes plainly for minExploit
		// epochs, then measures drafts, and keeps them where they do pay.
		d := newDraftSwitch()
		run(&d, [2]float64{3000, 2000}, 4, 5*time.Second)
		for d.band != loadBand(16) {
			run(&d, [2]float64{1000, 1500}, 16, time.Millisecond)
		}
		if got := run(&d, [2]float64{1000, 1500}, 16, (minExploit-1)*epochLen); got > 0 {
			t.Errorf("first %d epochs at 16 requests: on %.0f%% of the time, want off", minExploit-1, 100*got)
		}
		if got := run(&d, [2]float64{1000, 1500}, 16, 10*time.Second); got < 0.7 {
			t.Errorf("where drafts pay at 16 requests after all: on %.0f%% of the time, want most", 100*got)
		}
	})
	t.Run("follows a change while the load moves between bands", func(t *testing.T) {
		// Requests come and go: the load is 2 in one epoch and 3 in the next (bands 1
		// and 2). Each band must still explore the setting it ran less, now and then,
		// though the epoch after the one that decides to lies in the other band.
		steps := 0 // since the start: the load alternates across calls too
		alternate := func(d *draftSwitch, rate [2]float64, dur time.Duration) (onFrac float64) {
			on, n := 0, int(dur/step)
			for range n {
				if d.on {
					on++
				}
				// The step that ends an epoch already runs at the next epoch's load.
				steps++
				running := []int{2, 3}[steps/int(epochLen/step)%2]
				d.observe(int(rate[b2i(d.on)]*step.Seconds()), step, running, true)
			}
			return float64(on) / float64(n)
		}
		d := newDraftSwitch()
		alternate(&d, [2]float64{3000, 2000}, 5*time.Second) // settle
		if got := alternate(&d, [2]float64{3000, 2000}, 10*time.Second); got > 0.2 {
			t.Errorf("where drafts cost more: on %.0f%% of the time, want little (bands %+v)", 100*got, d.bands[1:3])
		}
		if got := alternate(&d, [2]float64{1000, 2000}, 30*time.Second); got < 0.7 {
			t.Errorf("after drafts began to pay: on %.0f%% of the time, want most (bands %+v)", 100*got, d.bands[1:3])
		}
	})
	t.Run("a setting that commits nothing is measured", func(t *testing.T) {
		// Drafts on, the verifier stalls (drafts that never arrive, requests held for
		// them): an epoch commits no token. That is the worst rate, not no rate.
		d := newDraftSwitch()
		if got := run(&d, [2]float64{1000, 0}, 4, 10*time.Second); got > 0.12 {
			t.Errorf("where drafts commit nothing: on %.0f%% of the time, want little (band %+v)", 100*got, d.bands[loadBand(4)])
		}
	})
	t.Run("one epoch of hard text does not turn drafts off", func(t *testing.T) {
		// Drafts pay (1.2× plain) but their epochs vary with the text: one in a run
		// commits at 0.85× plain. That one epoch keeps drafts on; two in a row turn
		// them off, and the epochs after show whether drafts pay again.
		d := newDraftSwitch()
		run(&d, [2]float64{1000, 1200}, 1, 5*time.Second) // settle: on
		for !d.on {
			run(&d, [2]float64{1000, 1200}, 1, epochLen)
		}
		run(&d, [2]float64{1000, 1200}, 1, 2*epochLen) // well inside a run of drafts
		run(&d, [2]float64{1000, 850}, 1, epochLen)
		if got := run(&d, [2]float64{1000, 1200}, 1, epochLen); got < 1 {
			t.Errorf("after one slow epoch with drafts: on %.0f%% of the next, want all (band %+v)", 100*got, d.bands[loadBand(1)])
		}
		run(&d, [2]float64{1000, 1200}, 1, 2*epochLen)
		run(&d, [2]float64{1000, 700}, 1, 2*epochLen)
		if got := run(&d, [2]float64{1000, 700}, 1, epochLen); got > 0 {
			t.Errorf("after two slow epochs with drafts: on %.0f%% of the next, want none (band %+v)", 100*got, d.bands[loadBand(1)])
		}
	})
	t.Run("a burst into a band that decodes plainly turns drafts off at once", func(t *testing.T) {
		d := newDraftSwitch()
		run(&d, [2]float64{3000, 2000}, 16, 10*time.Second) // off pays at 16 requests
		run(&d, [2]float64{1000, 1500}, 1, 10*time.Second)  // on pays alone
		for !d.on || d.elapsed > epochLen/2 {
			run(&d, [2]float64{1000, 1500}, 1, step)
		}
		// Sixteen requests arrive mid-epoch; none has a draft proposing yet, so the
		// step measures no setting, but it must turn drafts off for them.
		d.observe(0, step, 16, false)
		if d.on {
			t.Fatalf("a burst of 16 requests where 16 decode plainly left drafts on (band %+v)", d.bands[loadBand(16)])
		}
		// A band that has not decided to decode plainly keeps the setting running.
		d = newDraftSwitch()
		run(&d, [2]float64{1000, 1500}, 1, 10*time.Second)
		for !d.on {
			run(&d, [2]float64{1000, 1500}, 1, step)
		}
		d.observe(0, step, 16, false)
		if !d.on {
			t.Errorf("a burst into a band with nothing measured turned drafts off")
		}
	})
	t.Run("bands apart", func(t *testing.T) {
		d := newDraftSwitch()
		run(&d, [2]float64{3000, 2000}, 16, 10*time.Second) // off pays at 16 requests
		run(&d, [2]float64{1000, 1500}, 1, 10*time.Second)  // on pays alone
		if !d.bands[loadBand(1)].prefer(false) || d.bands[loadBand(16)].prefer(true) {
			t.Errorf("band preferences: alone %v, at 16 %v; want on alone, off at 16",
				d.bands[loadBand(1)].prefer(false), d.bands[loadBand(16)].prefer(true))
		}
	})
}
