package verifier

import (
	"math"
	"time"
)

// draftSwitch decides, by measurement, whether the verifier speculates at all: checks
// its drafts' proposals and its own prompt-lookup guesses. A draft costs more than the
// verifier's passes show: where draft
// and verifier share cores (specd up on a small machine), every token drafted is
// compute the verifier's own passes lose, and the passes' measured costs, inflated by
// that contention, make extra tokens look cheaper than they are. The cost curve cannot
// see it, so the switch compares what counts — tokens committed per second of wall
// time — speculating and decoding plainly. While off, proposals go unanswered, so each
// draft stops after its pipelining depth and uses no compute; when the switch turns
// back on, the queued proposals are found stale and the verdicts about them bring each
// draft up to date.
//
// Time runs in epochs of epochLen of wall time (the first epochWarm of each, while
// drafts catch up or go quiet, is not counted). What pays depends on the load, so the
// switch keeps its measurements per load band (see loadBand). In each band the better setting runs several
// epochs in a row, then the other one epoch, so that a change of text or machine is
// noticed; each exploration that confirms the better setting doubles the run before
// the next (up to maxExploit), as the old single-stream pauses did. It starts on, and
// measures both settings in a band before it prefers either.
type draftSwitch struct {
	on      bool
	band    int           // load band of the current epoch (-1: none yet)
	elapsed time.Duration // in the current epoch
	tokens  int           // committed in the counted part of the epoch
	counted time.Duration
	bands   [8]band
}

// band is what the switch knows of one load band.
type band struct {
	rate [2]float64 // committed tokens per second, off and on
	// measured: rate[i] has an epoch behind it. A rate of 0 is a measurement (an
	// epoch that committed nothing, the verifier stalled waiting for drafts), the
	// worst there is, not the lack of one.
	measured [2]bool
	run      int // epochs of the better setting (or of the assumed one) in a row
	exploit  int // epochs of the better setting between explorations
	// assumeOff: a lighter load measured drafts slower, so until drafts are measured
	// here the band decodes plainly for minExploit epochs before it tries them.
	assumeOff bool
	// doubt: the last epoch with drafts on, in a run of them, measured drafts not
	// paying; one more such epoch turns them off (see record).
	doubt bool
	// next is the setting the band's last epoch chose for its next one (decided: it has
	// had one). The load may move to another band at that moment; when it comes back,
	// the band goes on from there, or a band the load leaves every epoch would never
	// run its other setting: neither measure it nor explore it.
	next, decided bool
}

const (
	epochLen   = 200 * time.Millisecond
	epochWarm  = 30 * time.Millisecond
	minExploit = 8
	maxExploit = 64
)

func newDraftSwitch() draftSwitch { return draftSwitch{on: true, band: -1} }

// loadBand is the band of a load: log₂ of the running requests, rounded, so that a
// load near a power of two (16 clients: 15 or 16 running) stays in one band.
func loadBand(running int) int {
	return min(int(math.Round(math.Log2(float64(running)))), len(draftSwitch{}.bands)-1)
}

// observe records a step's wall time and the tokens it committed, with the requests
// running and whether the step measures the current setting: with drafts on, a
// running request's draft has proposed; off, a running request could have had one.
// Other steps are not counted: requests without drafts (or, just after the switch
// turned on, whose drafts are not connected yet) measure neither setting.
//
// A load that rises, with drafts on, into a band that starts off (see start) turns
// them off at once, not at the end of the epoch: the requests of a burst connect their
// drafts, for the rest of their lives, as they are admitted, and under specd up's load
// test each burst had come after requests alone (drafts on), so the first 200-700 ms of
// it speculated where the heavier load measured plain decoding faster. What the epoch
// measured so far, of a load that has gone, is not counted.
func (d *draftSwitch) observe(tokens int, wall time.Duration, running int, measurable bool) {
	if running == 0 {
		return
	}
	if b := loadBand(running); d.on && d.band >= 0 && b > d.band && !d.start(b, true) {
		d.band, d.on = b, false
		d.elapsed, d.tokens, d.counted = 0, 0, 0
		return
	}
	if !measurable {
		return
	}
	if d.band < 0 {
		d.band = loadBand(running)
	}
	d.elapsed += wall
	if d.elapsed > epochWarm {
		d.tokens += tokens
		d.counted += wall
	}
	if d.elapsed < epochLen {
		return
	}
	// The epoch counts for the band it started in; the next starts in the band of
	// the load now, in that band's choice.
	next := d.on
	if d.counted > 0 {
		x := &d.bands[d.band]
		next = x.record(d.on, float64(d.tokens)/d.counted.Seconds())
		x.next, x.decided = next, true
	}
	if b := loadBand(running); b != d.band {
		d.band = b
		next = d.start(b, next)
	}
	d.on = next
	d.elapsed, d.tokens, d.counted = 0, 0, 0
}

// start is the setting to start band b in, cur the one running: the one b's last
// epoch chose (see band.next); before b has had an epoch, off if a lighter load
// measured off better (drafts share the verifier's cores, and a heavier load leaves
// them less room, never more), for minExploit epochs before drafts are tried (see
// band.assumeOff), else cur.
func (d *draftSwitch) start(b int, cur bool) bool {
	if x := &d.bands[b]; x.decided {
		return x.next
	}
	for _, x := range d.bands[:b] {
		if x.both() && !x.prefer(true) {
			d.bands[b].assumeOff = true
			return false
		}
	}
	return cur
}

// prefer is the setting to start the band in: its better one once both are measured.
func (b *band) prefer(cur bool) bool {
	if !b.both() {
		return cur
	}
	return b.draftsPay()
}

// draftsPay reports whether drafts measured faster than plain decoding, by a margin:
// drafts computed before an epoch but checked in it count for it, and the setting that
// is wrong costs more with drafts on than off.
func (b *band) draftsPay() bool { return b.rate[1] > 1.05*b.rate[0] }

// record takes the rate of an epoch run with setting on and returns the next setting.
func (b *band) record(on bool, r float64) bool {
	i := b2i(on)
	if !b.measured[i] {
		b.rate[i], b.measured[i] = r, true
	} else {
		b.rate[i] = 0.5*b.rate[i] + 0.5*r
	}
	if !b.both() {
		if !on && b.assumeOff && b.run+1 < minExploit {
			b.run++
			return false
		}
		b.run = 0
		return !on // measure the other
	}
	if b.exploit == 0 {
		b.exploit = minExploit
	}
	better := b.draftsPay()
	if on && !better && b.run > 0 && !b.doubt {
		// Drafts on, in a run of them, measured not paying once. What a speculating
		// epoch commits depends on the text far more than what a plain one does (one
		// stream: 0.85× plain on some prompts, 1.25× on others), so one epoch of hard
		// text is not taken as a change: a second in a row is.
		b.doubt = true
		b.run++
		return on
	}
	b.doubt = false
	switch {
	case on != better && b.run == 0:
		// An exploration (or the estimates crossed): back to the better one; an
		// exploration that confirmed it earns a longer run before the next.
		b.exploit = min(2*b.exploit, maxExploit)
		b.run = 0
		return better
	case on != better:
		// The setting that was better no longer is.
		b.exploit, b.run = minExploit, 0
		return better
	case b.run+1 < b.exploit:
		b.run++
		return on
	}
	b.run = 0
	return !on // explore
}

// both reports whether both settings are measured.
func (b *band) both() bool { return b.measured[0] && b.measured[1] }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
