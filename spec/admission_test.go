package spec_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

// TestAdmissionUnderPressure tries to break admission by memory (issue 12, point 4)
// on a KV budget of 20 blocks, the scheduler production runs and the real target: four
// long requests growing in step of which only three fit at once, then a stream of
// small ones with a fifth long one in the middle; small ones sharing a prompt prefix that ends inside a block
// (a cache hit that diverges and copies the block on its first write), n generations
// of one prompt with different seeds, speculation by prompt lookup (a pass grows a
// request's cache by up to γ positions it may give back), prompt chunks of 8 tokens.
// No admitted request may fail for lack of blocks, admission must be first come first
// served (the long request behind the small ones is not starved by those after it),
// every request must commit what it commits alone, and at the end no request holds a
// block.
func TestAdmissionUnderPressure(t *testing.T) {
	p := loadPair(t)
	probe, err := p.target.NewKVPool(8<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	const blocks = 20
	s, kv, prefix := prefixScheduler(t, p, int64(blocks*probe.BlockBytes()), 1, 32, verifier.Config{MaxQueue: 64, Lookup: 8, PrefillChunk: 8})

	preamble := p.target.Tok.Encode("You are a careful storyteller. Tell the story plainly, in short sentences, for a child of five who is falling asleep, and never use a word a child would not know.", true)
	const long = 300
	type job struct {
		prompt []int32
		n      int
		sp     sample.Params
		plain  bool // speculation off
		want   []int32
		got    []int32
		done   bool
	}
	var jobs []*job
	add := func(prompt []int32, n int, sp sample.Params) {
		jobs = append(jobs, &job{prompt: prompt, n: n, sp: sp})
	}
	seeded := func(seed uint64) sample.Params { return sample.Params{Temperature: 0.9, TopP: 1, Seed: seed} }
	for i := range 4 { // 6 blocks each at the end: no more than three fit at once
		add(slices.Concat(preamble, p.target.Tok.Encode(fmt.Sprintf(" Once upon a time %d", i), false)), long, seeded(uint64(50+i)))
		jobs[len(jobs)-1].plain = true // a token a step: they grow in step
	}
	for i := range 6 {
		// Prefixes of the preamble ending at different positions, then text of their own.
		cut := len(preamble) - 5*i
		add(slices.Concat(preamble[:cut], p.target.Tok.Encode(fmt.Sprintf(" Story %d:", i), false)), 10+i, seeded(uint64(i)))
	}
	add(slices.Concat(preamble, p.target.Tok.Encode(" The dragon", false)), long+60, sample.Params{})
	shared := slices.Concat(preamble[:40], p.target.Tok.Encode(" A fox", false))
	for i := range 4 { // n = 4 generations of one prompt
		add(shared, 12, seeded(uint64(100+i)))
	}
	for i := range 6 {
		add(slices.Concat(preamble[:20+3*i], p.target.Tok.Encode(" and", false)), 8, sample.Params{})
	}
	for i, j := range jobs {
		// No end-of-text token ends a request early: each grows to its max tokens.
		lim := generate.Limits{MaxTokens: j.n, Context: p.target.Context}
		j.want = plainLimits(t, p, j.prompt, lim, j.sp)
		if len(j.want) != j.n {
			t.Fatalf("request %d: %d tokens alone, want %d", i, len(j.want), j.n)
		}
		err := s.Submit(verifier.ID(i), verifier.Job{Request: verifier.Request{Prompt: j.prompt, Sampling: j.sp, Mode: spec.Coupled,
			Limits: lim}, Spec: !j.plain})
		if err != nil {
			t.Fatalf("Submit(%d): %v", i, err)
		}
	}
	var admitted []verifier.ID
	waited := false // a request waited for blocks while others ran
	for step := 0; s.HasWork(); step++ {
		if step > 100000 {
			t.Fatal("the scheduler did not finish")
		}
		if running, queued := s.Load(); queued > 0 && running > 0 {
			waited = true
		}
		r, err := s.Step()
		if err != nil {
			t.Fatal(err)
		}
		s.ObservePass(r.Tokens, time.Duration(100+10*r.Tokens)*time.Microsecond)
		for _, u := range r.Updates {
			j := jobs[u.ID]
			if u.Err != nil {
				t.Fatalf("request %d failed after admission: %v", u.ID, u.Err)
			}
			if u.Admitted {
				admitted = append(admitted, u.ID)
			}
			for _, tk := range u.Tokens {
				if tk.ID >= 0 {
					j.got = append(j.got, tk.ID)
				}
			}
			j.done = j.done || u.Done
		}
	}
	if !waited {
		t.Error("no request ever waited for blocks: the budget put no pressure on admission")
	}
	if !slices.IsSorted(admitted) || len(admitted) != len(jobs) {
		t.Errorf("admission order %v, want every request in the order submitted", admitted)
	}
	for i, j := range jobs {
		switch {
		case !j.done:
			t.Errorf("request %d never finished", i)
		case !slices.Equal(j.got, j.want):
			t.Errorf("request %d (%d tokens, %+v): got %v\nwant %v (alone)", i, j.n, j.sp, j.got, j.want)
		}
	}
	if st := kv.Stats(); st.Used != st.Cached {
		t.Errorf("after every request: %d KV blocks in use, %d of them only cached; want none held by a request", st.Used, st.Cached)
	}
	if ps := prefix.Stats(); ps.HitTokens == 0 || ps.Evictions == 0 {
		t.Errorf("prefix cache %+v: want hits and evictions under the budget", ps)
	}
}

// prefixScheduler returns a scheduler of the target with a prefix cache, its KV pool of
// budget bytes and the cache, running passes of at most maxTokens on threads threads.
func prefixScheduler(t *testing.T, p pair, budget int64, threads, maxTokens int, cfg verifier.Config) (*verifier.Scheduler, *kvcache.Pool, *kvcache.Prefix) {
	t.Helper()
	kv, err := p.target.NewKVPool(budget, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := kv.NewPrefix(p.target.Name)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(threads)
	t.Cleanup(pool.Close)
	return verifier.NewScheduler(p.target.NewBatch(pool, maxTokens), p.target, kv, prefix, cfg), kv, prefix
}

// TestQueueFullCountsOnlyWaiting: Submit refuses a request as ErrQueueFull only when
// the queue holds MaxQueue requests that the budget cannot admit now — not when the
// queue is long only because no step has admitted its requests yet (issue 12, point
// 4: RESOURCE_EXHAUSTED only when the budget and the queue are truly full).
func TestQueueFullCountsOnlyWaiting(t *testing.T) {
	p := loadPair(t)
	probe, err := p.target.NewKVPool(8<<20, ggml.F32)
	if err != nil {
		t.Fatal(err)
	}
	// Room for two requests of 3 blocks each (a prompt and 100 tokens, and a block
	// each for speculation and a copy), with a queue of one.
	s, _, _ := prefixScheduler(t, p, int64(6*probe.BlockBytes()), 1, 32, verifier.Config{MaxQueue: 1})
	prompt := p.target.Tok.Encode("Once upon a time", true)
	job := verifier.Job{Request: verifier.Request{Prompt: prompt, Limits: limits(p.target, 100)}}
	for id := range verifier.ID(3) {
		// The first two fit the budget: the next step admits them.
		if err := s.Submit(id, job); err != nil {
			t.Fatalf("Submit(%d) with room for it and the queue empty of waiting requests: %v", id, err)
		}
	}
	if err := s.Submit(3, job); !errors.Is(err, verifier.ErrQueueFull) {
		t.Fatalf("Submit(3) with the budget taken and one request waiting: %v, want ErrQueueFull", err)
	}
	if ups := s.Admit(); len(ups) != 2 || !ups[0].Admitted || !ups[1].Admitted {
		t.Fatalf("Admit() = %+v, want the first two admitted", ups)
	}
	if running, queued := s.Load(); running != 2 || queued != 1 {
		t.Fatalf("Load() = %d running, %d queued; want 2, 1", running, queued)
	}
}
