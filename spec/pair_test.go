package spec_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/specd-dev/specd/draft"
	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

// pairReq is one request of a pairRun.
type pairReq struct {
	prompt             []int32
	sp                 sample.Params
	mode               spec.Mode // 0: coupled
	n                  int
	gamma              int // the client's fixed γ (0: the controller's)
	want               []int32
	got                []int32
	done               bool
	cancelled, dropped bool
	rounds             int
	sent               int                    // proposals the draft made
	toV                []timed[spec.Proposal] // proposals in flight to the verifier
	toD                []timed[spec.Verdict]  // verdicts in flight to the draft
}

// pairRun is a verifier's and a draft's scheduler — the cores production runs — run
// against each other in one goroutine.
type pairRun struct {
	maxTokens int // of a verifier pass
	depth     int // the draft's pipelining
	branches  int
	lookup    int // the verifier's prompt-lookup guesses (verifier.Config.Lookup)
	draftRuns func() int
	chaos     func(now int, vs *verifier.Scheduler, ds *draft.Scheduler, reqs []*pairReq) // draft passes between two verifier steps
	// lag is how many steps late a message arrives (0: before the next verifier step);
	// messages of a request stay in order.
	lag func(r *pairReq, proposal bool) int
}

type timed[T any] struct {
	at int
	v  T
}

func last[T any](q []timed[T]) int {
	if len(q) == 0 {
		return 0
	}
	return q[len(q)-1].at
}

// run runs every request to its end, failing t on a request's or a draft session's
// failure, or when nothing can move.
func (pr pairRun) run(t *testing.T, p pair, reqs []*pairReq) {
	t.Helper()
	kv, err := p.target.NewKVPool(32<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	vs := verifier.NewScheduler(p.target.NewBatch(p.pool, pr.maxTokens), p.target, kv, nil, verifier.Config{MaxGamma: 6, Lookup: pr.lookup})
	dkv, err := p.draft.NewKVPool(32<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	dpool := kernels.NewPool(1)
	defer dpool.Close()
	ds := draft.NewScheduler(p.draft.NewBatch(dpool, 16), dkv, draft.Config{Depth: pr.depth, Prefill: 8})
	for i, r := range reqs {
		if err := vs.Submit(verifier.ID(i), verifier.Job{Request: verifier.Request{Prompt: r.prompt, Sampling: r.sp, Mode: cmp.Or(r.mode, spec.Coupled), Limits: limits(p.target, r.n)},
			Spec: true, Gamma: r.gamma, Draftable: true}); err != nil {
			t.Fatal(err)
		}
	}
	running := func() bool { return slices.ContainsFunc(reqs, func(r *pairReq) bool { return !r.done }) }
	for now := 1; running(); now++ {
		if now > 5000 {
			t.Fatalf("not done after %d steps", now)
		}
		if pr.chaos != nil {
			if pr.chaos(now, vs, ds, reqs); !running() {
				break
			}
		}
		// Verdicts that have arrived reach the draft before its passes, proposals the
		// verifier after them.
		for i, r := range reqs {
			for len(r.toD) > 0 && r.toD[0].at <= now {
				if !r.done {
					if err := ds.Apply(uint64(i), r.toD[0].v); err != nil {
						t.Fatal(err)
					}
				}
				r.toD = r.toD[1:]
			}
		}
		for range pr.draftRuns() {
			if !ds.Busy() {
				break
			}
			ds.Step()
			for _, o := range ds.Ready(time.Millisecond) {
				if o.Err != nil {
					t.Fatalf("draft session %d failed: %v", o.ID, o.Err)
				}
				r := reqs[o.ID]
				r.sent++
				r.toV = append(r.toV, timed[spec.Proposal]{max(now+pr.lag(r, true), last(r.toV)), o.Proposal})
			}
		}
		inFlight := false
		for i, r := range reqs {
			for len(r.toV) > 0 && r.toV[0].at <= now {
				vs.Propose(verifier.ID(i), r.toV[0].v)
				r.toV = r.toV[1:]
			}
			inFlight = inFlight || len(r.toV)+len(r.toD) > 0
		}
		if !vs.HasWork() {
			if !vs.Held() && !ds.Busy() && !inFlight {
				for i, r := range reqs {
					t.Logf("request %d: done %v cancelled %v dropped %v got %d/%d", i, r.done, r.cancelled, r.dropped, len(r.got), r.n)
				}
				running, queued := vs.Load()
				t.Fatalf("step %d: nothing to do and requests not done (verifier: %d running, %d queued)", now, running, queued)
			}
			if vs.Held() {
				vs.Timer() // the drafts were given their time
			}
			continue
		}
		rd, err := vs.Step()
		if err != nil {
			t.Fatal(err)
		}
		vs.ObservePass(rd.Tokens, time.Duration(1000+100*rd.Tokens)*time.Microsecond)
		for _, u := range rd.Updates {
			r := reqs[u.ID]
			if u.Err != nil {
				t.Fatalf("request %d: %v", u.ID, u.Err)
			}
			if u.Admitted {
				opt := spec.Options{Sampling: r.sp, Mode: cmp.Or(r.mode, spec.Coupled), ProposalTopK: 16, Gamma: verifier.Job{Gamma: r.gamma}.FirstGamma(6),
					MaxPosition: len(r.prompt) - 1 + r.n, Branches: pr.branches}
				if err := ds.Start(uint64(u.ID), r.prompt, opt); err != nil {
					t.Fatal(err)
				}
			}
			for _, tk := range u.Tokens {
				if tk.ID >= 0 {
					r.got = append(r.got, tk.ID)
				}
			}
			r.rounds += len(u.Rounds)
			for _, v := range u.Verdicts {
				r.toD = append(r.toD, timed[spec.Verdict]{max(now+1+pr.lag(r, false), last(r.toD)), v})
			}
			if u.Done {
				r.done = true
				ds.Stop(uint64(u.ID))
			}
		}
	}
	if st := kv.Stats(); st.Used != 0 {
		t.Errorf("verifier: %d KV blocks held after every request ended", st.Used)
	}
	if st := dkv.Stats(); st.Used != 0 || ds.Len() != 0 {
		t.Errorf("draft: %d KV blocks held, %d sessions after every request ended", st.Used, ds.Len())
	}
}

// TestSchedulersTogether drives the two schedulers production runs — the verifier's
// and the draft's — against each other, with proposals and verdicts now and then a step
// late (in order, as a stream keeps them), passes too small for whole rounds, random
// pipelining depths, branches and fixed or controlled γ. Every request commits what
// plain decoding commits, no draft session fails, and speculation does not stall:
// every greedy request has rounds verified (a sampled one may have a draft too often
// wrong for any).
func TestSchedulersTogether(t *testing.T) {
	p := loadPair(t)
	texts := []string{"Once upon a time", "The quick brown fox", "It is a truth universally acknowledged", "One day, Lily found a shiny key in the garden."}
	samplings := []sample.Params{{}, {Temperature: 0.8, Seed: 7}, {Temperature: 1, TopK: 40, Seed: 11}}
	trials := 12
	if testing.Short() {
		trials = 4
	}
	for trial := range trials {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(trial), 99))
			reqs := make([]*pairReq, 4)
			for i := range reqs {
				r := &pairReq{prompt: p.target.Tok.Encode(texts[(i+trial)%len(texts)], true), sp: samplings[(i+trial)%len(samplings)], n: 24 + rng.IntN(24)}
				if rng.IntN(3) == 0 {
					r.gamma = 1 + rng.IntN(5)
				}
				r.want = plain(t, p, r.prompt, r.n, r.sp)
				reqs[i] = r
			}
			pairRun{
				maxTokens: []int{6, 7, 9, 32}[trial%4], // 4 requests leave 2 to 28 tokens for speculation
				depth:     1 + trial%3,
				branches:  trial % 2,
				draftRuns: func() int { return 3 + rng.IntN(6) },
				// Mostly in time: a pass of several requests takes about a draft's round trip.
				lag: func(*pairReq, bool) int { return rng.IntN(4) / 3 },
			}.run(t, p, reqs)
			for i, r := range reqs {
				if !slices.Equal(r.got, r.want) {
					t.Errorf("request %d (%+v, γ %d): got %v\nwant %v", i, r.sp, r.gamma, r.got, r.want)
				}
				if r.sp.Greedy() && r.rounds < 2 {
					t.Errorf("request %d (%+v, γ %d): %d rounds verified in %d tokens: speculation stalled", i, r.sp, r.gamma, r.rounds, len(r.got))
				}
			}
		})
	}
}

// TestGammaOneCatchesUp: a request that asked for one draft token a round, running
// with others (so never held for its draft), whose draft's first proposal came a step
// late. A stale proposal is answered before the pass that commits the verifier's own
// token, so the draft drafts from one position behind the verifier; a round of one
// token from there is overtaken again, and again. The draft must catch up, and its
// proposals be checked.
func TestGammaOneCatchesUp(t *testing.T) {
	p := loadPair(t)
	texts := []string{"Once upon a time", "The quick brown fox", "One day, Lily found a shiny key in the garden."}
	reqs := make([]*pairReq, len(texts))
	for i, text := range texts {
		r := &pairReq{prompt: p.target.Tok.Encode(text, true), n: 40, gamma: 1}
		r.want = plain(t, p, r.prompt, r.n, r.sp)
		reqs[i] = r
	}
	pairRun{maxTokens: 16, depth: 1, draftRuns: func() int { return 8 },
		lag: func(r *pairReq, proposal bool) int {
			if proposal && r.sent == 1 {
				return 1
			}
			return 0
		},
	}.run(t, p, reqs)
	for i, r := range reqs {
		if !slices.Equal(r.got, r.want) {
			t.Errorf("request %d: got %v\nwant %v", i, r.got, r.want)
		}
		if r.rounds < r.n/4 {
			t.Errorf("request %d: %d rounds verified of %d proposals in %d tokens", i, r.rounds, r.sent, len(r.got))
		}
	}
}

// TestSchedulersTogetherRejection runs sampled requests in rejection mode through both
// schedulers: their output is only equal in distribution to plain decoding's
// (TestSpeculativeSamplingIsLossless), but no request or draft session may fail, hang
// or keep KV blocks, and drafts must be checked.
func TestSchedulersTogetherRejection(t *testing.T) {
	p := loadPair(t)
	texts := []string{"Once upon a time", "The quick brown fox", "It is a truth universally acknowledged", "One day, Lily found a shiny key in the garden."}
	for trial := range 4 {
		rng := rand.New(rand.NewPCG(uint64(trial), 7))
		reqs := make([]*pairReq, 4)
		for i := range reqs {
			reqs[i] = &pairReq{prompt: p.target.Tok.Encode(texts[i], true), sp: sample.Params{Temperature: 0.7, TopK: 40, Seed: uint64(10*trial + i)},
				mode: spec.Rejection, n: 24 + rng.IntN(24)}
		}
		pairRun{maxTokens: []int{6, 9, 12, 32}[trial], depth: 1 + trial%3, branches: trial % 2,
			draftRuns: func() int { return 3 + rng.IntN(6) }, lag: func(*pairReq, bool) int { return rng.IntN(4) / 3 }}.run(t, p, reqs)
		rounds := 0
		for i, r := range reqs {
			if len(r.got) == 0 || len(r.got) > r.n {
				t.Errorf("trial %d request %d: %d tokens of at most %d", trial, i, len(r.got), r.n)
			}
			rounds += r.rounds
		}
		if rounds == 0 {
			t.Errorf("trial %d: no round verified", trial)
		}
	}
}

// TestSchedulersTogetherRandom runs random mixes through both schedulers: one to four
// requests of any sampling, fixed γ or not, prompt lookup on or off, passes of a few
// tokens, any pipelining depth and branches, messages up to three steps late, drafts
// that drop out (DropDraft) and clients that cancel. Every request not cancelled
// commits what plain decoding commits; nothing fails, hangs or keeps KV blocks.
func TestSchedulersTogetherRandom(t *testing.T) {
	p := loadPair(t)
	texts := []string{"Once upon a time", "The quick brown fox", "It is a truth universally acknowledged", "One day, Lily found a shiny key in the garden.", "def main():"}
	samplings := []sample.Params{{}, {Temperature: 0.8, Seed: 7}, {Temperature: 1, TopK: 40, Seed: 11}, {Temperature: 0.5, TopP: 0.9, Seed: 3}}
	trials := 24
	if testing.Short() {
		trials = 6
	}
	for trial := range trials {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(trial), 1234))
			nreq := 1 + rng.IntN(4)
			reqs := make([]*pairReq, nreq)
			for i := range reqs {
				r := &pairReq{prompt: p.target.Tok.Encode(texts[rng.IntN(len(texts))], true), sp: samplings[rng.IntN(len(samplings))], n: 2 + rng.IntN(40)}
				if rng.IntN(3) == 0 {
					r.gamma = 1 + rng.IntN(6)
				}
				r.want = plain(t, p, r.prompt, r.n, r.sp)
				reqs[i] = r
			}
			maxLag := rng.IntN(4)
			pairRun{
				maxTokens: nreq + 1 + rng.IntN(10),
				depth:     1 + rng.IntN(4),
				branches:  rng.IntN(3),
				lookup:    rng.IntN(5),
				chaos: func(now int, vs *verifier.Scheduler, ds *draft.Scheduler, reqs []*pairReq) {
					i := rng.IntN(len(reqs))
					r := reqs[i]
					if r.done || rng.IntN(40) != 0 {
						return
					}
					switch rng.IntN(2) {
					case 0: // the draft is gone
						ds.Stop(uint64(i))
						vs.DropDraft(verifier.ID(i))
						r.toV, r.toD = nil, nil
						r.dropped = true
					case 1: // the client cancels
						ds.Stop(uint64(i))
						vs.Cancel(verifier.ID(i))
						r.toV, r.toD = nil, nil
						r.done, r.cancelled = true, true
					}
				},
				draftRuns: func() int { return 1 + rng.IntN(8) },
				lag:       func(*pairReq, bool) int { return rng.IntN(maxLag + 1) },
			}.run(t, p, reqs)
			for i, r := range reqs {
				if !r.cancelled && !slices.Equal(r.got, r.want) {
					t.Errorf("request %d (%+v, γ %d): got %v\nwant %v", i, r.sp, r.gamma, r.got, r.want)
				}
			}
		})
	}
}
