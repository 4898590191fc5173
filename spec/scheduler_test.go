package spec_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/specd-dev/specd/draft"
	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

// TestSchedulerUnderLoadEqualsSolo drives the scheduler production runs with many
// requests at once — greedy and seeded, with and without sampling penalties,
// speculating with a draft, with prompt lookup only, or plainly, of mixed lengths, some
// sharing a prompt prefix, some asking for log-probabilities, one cancelled — with
// drafts that pipeline and hear verdicts late, and checks that every request commits
// exactly what plain decoding of it alone commits, and reports the log-probabilities
// of one teacher-forced pass over it alone, bit for bit.
func TestSchedulerUnderLoadEqualsSolo(t *testing.T) {
	p := loadPair(t)
	n, reqs := 48, 24
	if testing.Short() {
		n, reqs = 16, 10
	}
	texts := []string{"Once upon a time", "The quick brown fox", "It is a truth universally acknowledged", "def main():", "In the beginning"}
	rng := rand.New(rand.NewPCG(7, 11))
	type job struct {
		prompt []int32
		sp     sample.Params
		n      int
		mode   int // 0 plain, 1 lookup only, 2 draft
		lps    bool
		want   []int32
		ds     *draft.Session
		got    []int32
		gotLPs []*generate.Logprobs
		done   bool
		verds  []spec.Verdict
		props  []spec.Proposal
	}
	jobs := make([]*job, reqs)
	for i := range jobs {
		text := texts[i%len(texts)]
		if i%2 == 0 {
			// A shared preamble longer than a KV block, as a system prompt is.
			text = "You are a careful storyteller. Tell the story plainly, in short sentences, for a child of five who is falling asleep, and never use a word a child would not know. Keep it kind. Say goodnight at the end, and say it softly, as a parent would, with the lights already low and the window open to the summer night. " + text
		}
		if i%3 == 0 {
			text += fmt.Sprintf(" number %d, and then", i)
		}
		j := &job{prompt: p.target.Tok.Encode(text, true), n: 4 + rng.IntN(n), mode: i % 3}
		if i%2 == 1 {
			j.sp = sample.Params{Temperature: 0.8, TopP: 1, Seed: uint64(1000 + i)}
		}
		if i%4 >= 2 {
			j.sp.TopP = 1
			j.sp.RepetitionPenalty, j.sp.FrequencyPenalty, j.sp.PresencePenalty = 1.2, 0.3, 0.1
		}
		j.lps = i%5 == 1
		j.want = plain(t, p, j.prompt, j.n, j.sp)
		jobs[i] = j
	}
	s, kv, prefix := prefixScheduler(t, p, 64<<20, 2, 48, verifier.Config{MaxRunning: 6, MaxQueue: reqs, Lookup: 4, PrefillChunk: 20})
	for i, j := range jobs {
		err := s.Submit(verifier.ID(i), verifier.Job{
			Request: verifier.Request{Prompt: j.prompt, Sampling: j.sp, Mode: spec.Coupled, Limits: limits(p.target, j.n), Logprobs: j.lps, TopLogprobs: 2},
			Spec:    j.mode > 0,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	const cancelled = 5
	for step := 0; ; step++ {
		if step == 3 {
			s.Cancel(cancelled)
			jobs[cancelled].done = true
		}
		// Drafts of admitted requests draft a round now and then and hear verdicts late.
		for i, j := range jobs {
			if j.ds == nil || j.done {
				continue
			}
			if len(j.verds) > 0 && rng.IntN(2) == 0 {
				if err := j.ds.Apply(j.verds[0]); err != nil {
					t.Fatal(err)
				}
				j.verds = j.verds[1:]
			}
			if j.ds.Outstanding() < 2 && j.ds.CanDraft() && rng.IntN(3) > 0 {
				pr, ok, err := j.ds.Draft(func() bool { return false })
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					s.Propose(verifier.ID(i), pr)
				}
			}
		}
		if !s.HasWork() {
			if !s.Held() {
				break
			}
			s.Timer() // the drafts were given their time
		}
		r, err := s.Step()
		if err != nil {
			t.Fatal(err)
		}
		s.ObservePass(r.Tokens, time.Duration(100+10*r.Tokens)*time.Microsecond)
		for _, u := range r.Updates {
			j := jobs[u.ID]
			if u.Err != nil {
				t.Fatalf("request %d: %v", u.ID, u.Err)
			}
			if u.Admitted && j.mode == 2 {
				if j.ds, err = draft.NewSession(state(t, p.draft, p.pool), j.prompt, spec.Options{Sampling: j.sp, Mode: spec.Coupled, Gamma: 3, MaxPosition: p.target.Context,
					PromptLen: len(j.prompt)}); err != nil {
					t.Fatal(err)
				}
			}
			for _, tk := range u.Tokens {
				if tk.ID >= 0 {
					j.got = append(j.got, tk.ID)
					if (tk.Logprobs != nil) != j.lps {
						t.Fatalf("request %d (logprobs %v): token %d has logprobs %v", u.ID, j.lps, tk.ID, tk.Logprobs)
					}
					j.gotLPs = append(j.gotLPs, tk.Logprobs)
				}
			}
			j.verds = append(j.verds, u.Verdicts...)
			if u.Done {
				j.done = true
				if !slices.Equal(u.Output.IDs, j.got) {
					t.Errorf("request %d: streamed %v, output %v", u.ID, j.got, u.Output.IDs)
				}
			}
		}
	}
	for i, j := range jobs {
		if i == cancelled {
			continue
		}
		if !j.done {
			t.Errorf("request %d never finished", i)
			continue
		}
		if !slices.Equal(j.got, j.want) {
			t.Errorf("request %d (mode %d, %+v): got %v\nwant %v (alone, plain)", i, j.mode, j.sp, j.got, j.want)
			continue
		}
		if j.lps {
			for k, want := range teacherLogprobs(t, p, j.prompt, j.got, 2) {
				if got := j.gotLPs[k]; got.Logprob != want.Logprob || !slices.EqualFunc(got.Top, want.Top, func(a, b generate.TopLogprob) bool {
					return a.ID == b.ID && a.Logprob == b.Logprob
				}) {
					t.Errorf("request %d token %d: logprobs %+v under load, %+v alone", i, k, got, want)
				}
			}
		}
	}
	if st := kv.Stats(); st.Used != st.Cached {
		t.Errorf("after every request: %d KV blocks in use, %d of them only cached; want none held by a request", st.Used, st.Cached)
	}
	if ps := prefix.Stats(); ps.HitTokens == 0 {
		t.Errorf("prefix cache: no hits on prompts sharing prefixes (%+v)", ps)
	}
}

// TestDraftSwitch drives the scheduler production runs as the verifier service wires
// it: a speculative request gets its draft only if the switch is on when it arrives (a
// draft that is not checked still costs compute), and each step's wall time is that of
// a machine where a pass of n tokens costs 1 ms + 0.1 ms a token, plus, as when draft
// and verifier share cores, draftCost for every running request whose draft is
// connected. Requests come from concurrent clients, speculative and plain alternately
// (as specd bench runs them).
//   - One client, cheap drafts: speculation pays; requests that ran plainly because the
//     switch was off when they arrived must still measure plain decoding (when they did
//     not, the first exploration left the switch off for good), so the switch comes
//     back on.
//   - Sixteen clients, drafts costing more than they give: the switch stays off but for
//     its explorations, and measures speculation only once the requests that arrived
//     while it was off have been replaced by requests with drafts.
func TestDraftSwitch(t *testing.T) {
	p := loadPair(t)
	prompt := p.target.Tok.Encode("Once upon a time", true)
	cases := []struct {
		name      string
		clients   int
		reqs, n   int
		draftCost time.Duration
		check     func(late, lateSpec int) bool
		want      string
	}{
		{"one client, drafts pay", 1, 120, 24, 0, func(late, lateSpec int) bool { return late >= lateSpec*2/3 }, "most"},
		{"sixteen clients, drafts cost", 16, 480, 32, 600 * time.Microsecond, func(late, lateSpec int) bool { return late <= lateSpec/4 }, "few"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.clients > 1 && testing.Short() {
				t.Skip("a few thousand passes of sixteen requests")
			}
			withDraft := runSwitch(t, p, prompt, c.clients, c.reqs, c.n, c.draftCost)
			// Requests are numbered in arrival order; even ones are speculative.
			off, late, lateSpec := 0, 0, 0
			for i := 0; i < c.reqs; i += 2 {
				if !withDraft[i] {
					off++
				}
				if i >= c.reqs/2 {
					lateSpec++
					if withDraft[i] {
						late++
					}
				}
			}
			if !withDraft[0] || off == 0 || !c.check(late, lateSpec) {
				t.Errorf("speculative requests given a draft: %v (odd: plain); want the first, some not (an exploration), and %s of the second half (%d of %d)", withDraft, c.want, late, lateSpec)
			}
		})
	}
}

// runSwitch runs reqs requests of n tokens from clients concurrent clients through a
// scheduler (see TestDraftSwitch) and reports, by arrival, which got a draft.
func runSwitch(t *testing.T, p pair, prompt []int32, clients, reqs, n int, draftCost time.Duration) []bool {
	kv, err := p.target.NewKVPool(64<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(2)
	t.Cleanup(pool.Close)
	s := verifier.NewScheduler(p.target.NewBatch(pool, 128), p.target, kv, nil, verifier.Config{MaxRunning: clients, MaxQueue: clients, MaxGamma: 4})
	withDraft := make([]bool, 0, reqs)
	drafts := map[verifier.ID]*draft.Session{}
	live := 0
	submit := func() {
		i := len(withDraft)
		speculative := i%2 == 0
		withDraft = append(withDraft, speculative && s.DraftsOn())
		err := s.Submit(verifier.ID(i), verifier.Job{
			Request:   verifier.Request{Prompt: prompt, Mode: spec.Coupled, Limits: limits(p.target, n)},
			Spec:      speculative,
			Draftable: speculative,
		})
		if err != nil {
			t.Fatal(err)
		}
		live++
	}
	for range clients {
		submit()
	}
	for live > 0 {
		for id, ds := range drafts {
			if ds.Outstanding() < 2 && ds.CanDraft() {
				pr, ok, err := ds.Draft(func() bool { return false })
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					s.Propose(id, pr)
				}
			}
		}
		if !s.HasWork() {
			s.Timer()
		}
		r, err := s.Step()
		if err != nil {
			t.Fatal(err)
		}
		wall := time.Millisecond + time.Duration(r.Tokens)*100*time.Microsecond + time.Duration(len(drafts))*draftCost
		s.ObservePass(r.Tokens, wall)
		s.ObserveStep(wall)
		for _, u := range r.Updates {
			if u.Err != nil {
				t.Fatalf("request %d: %v", u.ID, u.Err)
			}
			if u.Admitted && withDraft[u.ID] {
				ds, err := draft.NewSession(state(t, p.draft, p.pool), prompt, spec.Options{Mode: spec.Coupled, Gamma: 4, MaxPosition: p.target.Context})
				if err != nil {
					t.Fatal(err)
				}
				drafts[u.ID] = ds
			}
			for _, v := range u.Verdicts {
				if err := drafts[u.ID].Apply(v); err != nil {
					t.Fatal(err)
				}
			}
			if u.Done {
				delete(drafts, u.ID)
				live--
				if len(withDraft) < reqs {
					submit()
				}
			}
		}
	}
	return withDraft
}

// TestSchedulerDropDraft: a request whose draft has proposed is held, now and then,
// waiting for the draft to catch up — unless the draft is gone (DropDraft): a request
// that lost its draft decodes on plainly without ever waiting for a proposal that
// cannot come, and commits what plain decoding commits.
func TestSchedulerDropDraft(t *testing.T) {
	p := loadPair(t)
	prompt := p.target.Tok.Encode("Once upon a time", true)
	const n = 60
	want := plain(t, p, prompt, n, sample.Params{})
	for _, c := range []struct {
		drop     bool
		wantHeld bool
	}{
		{drop: false, wantHeld: true}, // the draft is slow: the request waits for it
		{drop: true, wantHeld: false},
	} {
		s := oneSpeculative(t, p, prompt, n)
		var got []int32
		held, proposed := false, false
		for done := false; !done; {
			if !s.HasWork() {
				if !s.Held() {
					t.Fatalf("drop %v: no work, nothing held, request not done", c.drop)
				}
				held = true
				s.Timer()
			}
			done = stepCollect(t, s, &got, nil)
			if !proposed && len(got) > 0 {
				// The draft proposes once, too late (the verifier has committed another
				// token at its start), and then fails.
				proposed = true
				s.Propose(1, spec.Proposal{Round: 1, Start: len(prompt), Tokens: []int32{(got[0] + 1) % int32(p.target.Vocab)}})
				if c.drop {
					s.DropDraft(1)
				}
			}
		}
		if held != c.wantHeld {
			t.Errorf("drop %v: held waiting for the draft %v, want %v", c.drop, held, c.wantHeld)
		}
		if !slices.Equal(got, want) {
			t.Errorf("drop %v: got %v\nwant %v (plain)", c.drop, got, want)
		}
	}
}

// TestSchedulerAnswersStaleWhileHeld: a request held for its lagging draft is waiting
// for the draft to catch up, and a draft catches up by hearing verdicts. A stale
// proposal that arrives during the hold — drafted before the draft heard how far the
// verifier got — is answered at once, without a pass and without ending the hold: the
// draft hears where the verifier is and drafts from there, instead of waiting for a
// verdict that would come only when the hold timed out. The request still commits
// exactly what plain decoding commits.
func TestSchedulerAnswersStaleWhileHeld(t *testing.T) {
	p := loadPair(t)
	prompt := p.target.Tok.Encode("Once upon a time", true)
	const n = 60
	want := plain(t, p, prompt, n, sample.Params{})
	s := oneSpeculative(t, p, prompt, n)
	var got []int32
	var verdicts []spec.Verdict
	step := func() bool { t.Helper(); return stepCollect(t, s, &got, &verdicts) }
	for len(got) == 0 {
		step()
	}
	// The draft's first round arrives too late and wrong at its first token: the
	// verifier answers it with a rollback and decodes on by itself.
	s.Propose(1, spec.Proposal{Round: 1, Start: len(prompt), Tokens: []int32{(got[0] + 1) % int32(p.target.Vocab)}})
	for s.HasWork() {
		step()
	}
	if !s.Held() {
		t.Fatalf("no work and nothing held after %d tokens of %d", len(got), n)
	}
	if len(verdicts) != 1 || !verdicts[0].Rollback {
		t.Fatalf("verdicts before the hold: %+v, want the one rollback of round 1", verdicts)
	}
	// While held, the draft's second round arrives, drafted after that verdict and
	// agreeing with the verifier, but overtaken: the verifier is far past it.
	committed := len(got)
	s.Propose(1, spec.Proposal{Round: 2, Base: verdicts[0].Seq, Start: len(prompt) + 1, Tokens: slices.Clone(got[1:3])})
	if !s.HasWork() {
		t.Fatalf("a stale proposal arrived while the request is held: HasWork false, so it waits unanswered until the hold times out")
	}
	step()
	if len(verdicts) != 2 || verdicts[1].Round != 2 || verdicts[1].Position+len(verdicts[1].Tokens) != len(prompt)+committed {
		t.Fatalf("verdicts after the stale round 2: %+v, want a second one answering round 2 up to position %d", verdicts, len(prompt)+committed)
	}
	if len(got) != committed {
		t.Errorf("answering the stale proposal committed %d tokens, want none (the request is held)", len(got)-committed)
	}
	if !s.Held() {
		t.Errorf("answering a stale proposal ended the hold; want it kept for a proposal the verifier can check")
	}
	for done := false; !done; {
		if !s.HasWork() {
			s.Timer()
		}
		done = step()
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v (plain)", got, want)
	}
}

// oneSpeculative returns a scheduler of the target, with the defaults, holding one
// speculative request (id 1) for n tokens after prompt.
func oneSpeculative(t *testing.T, p pair, prompt []int32, n int) *verifier.Scheduler {
	t.Helper()
	kv, err := p.target.NewKVPool(16<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	s := verifier.NewScheduler(p.target.NewBatch(p.pool, 16), p.target, kv, nil, verifier.Config{})
	if err := s.Submit(1, verifier.Job{Request: verifier.Request{Prompt: prompt, Limits: limits(p.target, n)}, Spec: true}); err != nil {
		t.Fatal(err)
	}
	return s
}

// stepCollect runs one Step of s, failing t on an error of the pass or of a request;
// it appends the ids the step committed to *got, and its verdicts to *verdicts when
// verdicts is not nil, and reports whether a request finished.
func stepCollect(t *testing.T, s *verifier.Scheduler, got *[]int32, verdicts *[]spec.Verdict) (done bool) {
	t.Helper()
	r, err := s.Step()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range r.Updates {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		for _, tk := range u.Tokens {
			*got = append(*got, tk.ID)
		}
		if verdicts != nil {
			*verdicts = append(*verdicts, u.Verdicts...)
		}
		done = done || u.Done
	}
	return done
}

// TestSchedulerChecksPartOfRounds drives the verifier's scheduler with a pass too small
// for the draft's whole rounds (it checks at most two of each round's four tokens) and
// a draft that pipelines two rounds: speculation must go on for the whole request —
// every round the draft sends after a verdict is checked or answered — and commit what
// plain decoding commits.
func TestSchedulerChecksPartOfRounds(t *testing.T) {
	p := loadPair(t)
	r := &pairReq{prompt: p.target.Tok.Encode("Once upon a time", true), n: 60, gamma: 4}
	r.want = plain(t, p, r.prompt, r.n, r.sp)
	// One token of every pass is the request's own; two are left for draft tokens.
	pairRun{maxTokens: 3, depth: 2, draftRuns: func() int { return 8 }, lag: func(*pairReq, bool) int { return 0 }}.run(t, p, []*pairReq{r})
	if !slices.Equal(r.got, r.want) {
		t.Errorf("got %v\nwant %v (plain)", r.got, r.want)
	}
	// Each round commits at most three tokens; a stalled draft leaves the verifier
	// decoding plainly, a token per pass.
	if r.rounds < r.n/3-2 {
		t.Errorf("%d rounds verified of %d proposals for %d tokens: speculation stalled", r.rounds, r.sent, len(r.got))
	}
}

// TestResumeAfterLastToken: a verifier died after streaming the request's last token —
// the one that completed a stop string, or the last of max tokens — and before its
// final message; the router resumes the request elsewhere with every token streamed.
// The request is over: the resumed verifier ends it at once as the uninterrupted run
// ended, adding no token and running no pass for it.
func TestResumeAfterLastToken(t *testing.T) {
	p := loadPair(t)
	prompt := p.target.Tok.Encode("Once upon a time", true)
	full := plain(t, p, prompt, 40, sample.Params{})
	// A stop string that the 12th token completes, and no earlier one.
	var text string
	for _, id := range full[:12] {
		text += p.target.Tok.Piece(id)
	}
	withStop := limits(p.target, 40)
	withStop.Stop = []string{text[len(text)-4:]}
	run := func(lim generate.Limits, resume []int32) ([]int32, *generate.Output, int) {
		t.Helper()
		kv, err := p.target.NewKVPool(16<<20, ggml.F32)
		if err != nil {
			t.Fatal(err)
		}
		s := verifier.NewScheduler(p.target.NewBatch(p.pool, 16), p.target, kv, nil, verifier.Config{})
		if err := s.Submit(1, verifier.Job{Request: verifier.Request{Prompt: prompt, Resume: resume, Limits: lim}}); err != nil {
			t.Fatal(err)
		}
		var got []int32
		passes := 0
		for {
			r, err := s.Step()
			if err != nil {
				t.Fatal(err)
			}
			if r.Tokens > 0 {
				passes++
			}
			for _, u := range r.Updates {
				if u.Err != nil {
					t.Fatal(u.Err)
				}
				for _, tk := range u.Tokens {
					if tk.ID >= 0 {
						got = append(got, tk.ID)
					}
				}
				if u.Done {
					return got, u.Output, passes
				}
			}
		}
	}
	for _, c := range []struct {
		name string
		lim  generate.Limits
		want generate.Finish
	}{
		{"stop string", withStop, generate.StopString},
		{"max tokens", limits(p.target, 9), generate.Length},
	} {
		whole, out, _ := run(c.lim, nil)
		if out.Reason != c.want || !slices.Equal(whole, full[:len(whole)]) {
			t.Fatalf("%s, uninterrupted: %v ending %v, want a prefix of %v ending %v", c.name, whole, out.Reason, full, c.want)
		}
		text := out.Text()
		got, out, passes := run(c.lim, whole)
		if len(got) != 0 || out.Reason != c.want || !slices.Equal(out.IDs, whole) || out.Text() != text || passes != 0 {
			t.Errorf("%s, resumed after the last token: %d more tokens %v, output %v %q ending %v, %d passes; want none, %v %q ending %v, no pass",
				c.name, len(got), got, out.IDs, out.Text(), out.Reason, passes, whole, text, c.want)
		}
	}
}

// teacherLogprobs is what a request asking for log-probabilities with top likeliest
// tokens reports for output after prompt, from one pass over both alone.
func teacherLogprobs(t *testing.T, p pair, prompt, output []int32, top int) []*generate.Logprobs {
	t.Helper()
	seq := append(slices.Clone(prompt), output...)
	logits, err := state(t, p.target, p.pool).Forward(seq, true)
	if err != nil {
		t.Fatal(err)
	}
	V := p.target.Vocab
	out := make([]*generate.Logprobs, len(output))
	dec := p.target.Tok.NewDecoder(prompt)
	for k, id := range output {
		row := logits[(len(prompt)+k-1)*V:][:V]
		out[k] = generate.NewLogprobs(row, id, top, p.target.Tok, dec)
		dec.Next(id)
	}
	return out
}
