package router_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
)

func eps() *router.Static {
	return router.NewStatic(
		router.Endpoint{ID: "v1", Address: "v1:1", Role: router.Verifier, TokenizerHash: "A"},
		router.Endpoint{ID: "v2", Address: "v2:1", Role: router.Verifier, TokenizerHash: "A"},
		router.Endpoint{ID: "v3", Address: "v3:1", Role: router.Verifier, TokenizerHash: "B"},
		router.Endpoint{ID: "d1", Address: "d1:1", Role: router.Draft, TokenizerHash: "A"},
		router.Endpoint{ID: "d2", Address: "d2:1", Role: router.Draft, TokenizerHash: "C"},
	)
}

func TestPickAffinityAndPairing(t *testing.T) {
	d := eps()
	for _, key := range []string{"alpha", "beta", "gamma", "delta", "a longer prompt head"} {
		v, dr, err := router.Pick(d, key, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if v2, _, _ := router.Pick(d, key, nil, nil); v2.ID != v.ID {
				t.Fatalf("Pick(%q) = %s then %s: affinity not stable", key, v.ID, v2.ID)
			}
		}
		switch v.TokenizerHash {
		case "A":
			if dr == nil || dr.ID != "d1" {
				t.Errorf("Pick(%q) = %s with draft %v, want d1 (same tokenizer)", key, v.ID, dr)
			}
		default:
			if dr != nil {
				t.Errorf("Pick(%q) = %s (tokenizer %s) with draft %s: incompatible pair", key, v.ID, v.TokenizerHash, dr.ID)
			}
		}
	}
}

func TestPickSpreadsKeysAndAvoidsOverload(t *testing.T) {
	d := eps()
	seen := map[string]int{}
	for i := range 300 {
		v, _, _ := router.Pick(d, fmt.Sprint("session-", i), nil, nil)
		seen[v.ID]++
	}
	if len(seen) != 3 {
		t.Fatalf("keys spread over %v, want all three verifiers", seen)
	}
	// A verifier far busier than the others loses its keys.
	busy := router.NewStatic(
		router.Endpoint{ID: "v1", Role: router.Verifier, Load: 10},
		router.Endpoint{ID: "v2", Role: router.Verifier, Load: 0},
	)
	for i := range 50 {
		if v, _, _ := router.Pick(busy, fmt.Sprint("k", i), nil, nil); v.ID != "v2" {
			t.Fatalf("Pick with v1 overloaded = %s, want v2", v.ID)
		}
	}
}

// fakeBackend streams tokens 100, 101, … from the resume point; verifiers listed in
// failAfter break (ErrEndpointDown) after that many tokens of the attempt.
type fakeBackend struct {
	total     int
	failAfter map[string]int
	starts    []router.Attempt
}

type fakeStream struct {
	next, end, failAt int
	sent              int
	done              bool
}

func (s *fakeStream) Recv() (router.Event, error) {
	switch {
	case s.done:
		return router.Event{}, io.EOF
	case s.failAt >= 0 && s.sent >= s.failAt:
		return router.Event{}, fmt.Errorf("%w: connection reset", router.ErrEndpointDown)
	case s.next >= s.end:
		s.done = true
		return router.Event{Final: &router.Final{Reason: generate.Length}}, nil
	}
	t := int32(100 + s.next)
	s.next++
	s.sent++
	return router.Event{IDs: []int32{t}, Positions: []int{10 + s.next - 1}, Text: fmt.Sprint(" ", t)}, nil
}

func (b *fakeBackend) Start(ctx context.Context, a router.Attempt) (router.Stream, error) {
	b.starts = append(b.starts, a)
	fail, ok := b.failAfter[a.Verifier.ID]
	if !ok {
		fail = -1
	}
	if fail == 0 {
		return nil, fmt.Errorf("%w: refused", router.ErrEndpointDown)
	}
	return &fakeStream{next: len(a.Resume), end: b.total, failAt: fail}, nil
}

func TestRelayResumesWithoutGapOrRepeat(t *testing.T) {
	r := &router.Router{Discovery: eps()}
	first, _, _ := router.Pick(r.Discovery, "k", nil, nil)
	b := &fakeBackend{total: 20, failAfter: map[string]int{first.ID: 7}}
	var got []int32
	var pos []int
	res, err := r.Relay(context.Background(), "k", "", b, func(ev router.Event) error {
		got = append(got, ev.IDs...)
		pos = append(pos, ev.Positions...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int32, 20)
	for i := range want {
		want[i] = int32(100 + i)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("relayed %v, want %v", got, want)
	}
	for i := 1; i < len(pos); i++ {
		if pos[i] != pos[i-1]+1 {
			t.Fatalf("positions %v: gap or repeat at %d", pos, i)
		}
	}
	if res.Failovers != 1 || len(b.starts) != 2 || len(b.starts[1].Resume) != 7 || b.starts[1].Verifier.ID == first.ID {
		t.Fatalf("failovers %d, attempts %+v", res.Failovers, b.starts)
	}
	if res.Final == nil || res.Final.Reason != generate.Length || res.Final.Stats.Failovers != 1 {
		t.Errorf("final %+v, want the last attempt's, with its 1 failover", res.Final)
	}
	if b.starts[1].ResumeText != len(" 100 101 102 103 104 105 106") {
		t.Errorf("resume text bytes %d", b.starts[1].ResumeText)
	}
}

// TestRelayResumesAfterLastToken: a verifier that streamed the request's last token and
// failed before its final message leaves a generation that is whole but not ended. The
// client must get its end, not the failure: the router resumes with every token, and
// the next verifier ends the request at once, adding none.
func TestRelayResumesAfterLastToken(t *testing.T) {
	r := &router.Router{Discovery: eps()}
	first, _, _ := router.Pick(r.Discovery, "k", nil, nil)
	b := &fakeBackend{total: 6, failAfter: map[string]int{first.ID: 6}}
	var got []int32
	res, err := r.Relay(context.Background(), "k", "", b, func(ev router.Event) error {
		got = append(got, ev.IDs...)
		return nil
	})
	if err != nil {
		t.Fatalf("Relay = %v, want the request ended", err)
	}
	if res.Final == nil || res.Final.Reason != generate.Length || len(got) != 6 || len(b.starts) != 2 || len(b.starts[1].Resume) != 6 {
		t.Errorf("final %+v after %d tokens, attempts %+v; want Length after 6 from a resume with all 6", res.Final, len(got), b.starts)
	}
}

func TestRelayDoesNotRetryRequestErrors(t *testing.T) {
	r := &router.Router{Discovery: eps()}
	bad := errors.New("max_tokens: too many")
	_, err := r.Relay(context.Background(), "k", "", backendFunc(func(context.Context, router.Attempt) (router.Stream, error) { return nil, bad }),
		func(router.Event) error { return nil })
	if !errors.Is(err, bad) {
		t.Fatalf("Relay = %v, want the request error", err)
	}
}

type backendFunc func(context.Context, router.Attempt) (router.Stream, error)

func (f backendFunc) Start(ctx context.Context, a router.Attempt) (router.Stream, error) {
	return f(ctx, a)
}

// TestBreakerOpensAndRecovers: an endpoint failing Trip times in a row is no longer
// picked; after the cooldown one probe goes through and its success closes the breaker.
func TestBreakerOpensAndRecovers(t *testing.T) {
	d := router.NewStatic(
		router.Endpoint{ID: "v1", Address: "v1:1", Role: router.Verifier},
		router.Endpoint{ID: "v2", Address: "v2:1", Role: router.Verifier},
	)
	br := services.NewBreakers(3, 100*time.Millisecond)
	r := &router.Router{Discovery: d, Breakers: br}
	down := true
	b := backendFunc(func(ctx context.Context, a router.Attempt) (router.Stream, error) {
		if a.Verifier.ID == "v1" && down {
			return nil, fmt.Errorf("%w: refused", router.ErrEndpointDown)
		}
		return &fakeStream{end: 2, failAt: -1}, nil
	})
	v1 := router.Endpoint{ID: "v1"}
	// Keys whose affinity is v1, so each request tries v1 first.
	var keys []string
	for i := 0; len(keys) < 6; i++ {
		k := fmt.Sprint("key", i)
		if v, _, _ := router.Pick(d, k, nil, nil); v.ID == "v1" {
			keys = append(keys, k)
		}
	}
	for _, k := range keys[:3] {
		if _, err := r.Relay(context.Background(), k, "", b, func(router.Event) error { return nil }); err != nil {
			t.Fatalf("Relay with failover: %v", err)
		}
	}
	if br.Ready(v1) || br.States()["v1"] != 2 {
		t.Fatalf("after 3 failures the breaker of v1 is %v, want open", br.States())
	}
	// While open, v1 is not even tried.
	calls := 0
	counting := backendFunc(func(ctx context.Context, a router.Attempt) (router.Stream, error) {
		if a.Verifier.ID == "v1" {
			calls++
		}
		return b.Start(ctx, a)
	})
	if _, err := r.Relay(context.Background(), keys[3], "", counting, func(router.Event) error { return nil }); err != nil || calls != 0 {
		t.Fatalf("with the breaker open: err %v, %d calls to v1", err, calls)
	}
	down = false
	time.Sleep(150 * time.Millisecond) // the cooldown: half-open
	if _, err := r.Relay(context.Background(), keys[4], "", counting, func(router.Event) error { return nil }); err != nil || calls != 1 {
		t.Fatalf("half-open probe: err %v, %d calls to v1", err, calls)
	}
	if !br.Ready(v1) || br.States()["v1"] != 0 {
		t.Fatalf("after a successful probe the breaker is %v, want closed", br.States())
	}
}

// TestRelayUnreachableCostsNoAttempt: a verifier that cannot be reached is skipped
// without spending an attempt or counting a failover, and its breaker counts it
// neither way; with MaxAttempts 2, a request whose first pick is unreachable and
// whose second verifier fails mid-stream still completes on the third.
func TestRelayUnreachableCostsNoAttempt(t *testing.T) {
	d := router.NewStatic(
		router.Endpoint{ID: "v1", Address: "v1:1", Role: router.Verifier},
		router.Endpoint{ID: "v2", Address: "v2:1", Role: router.Verifier},
		router.Endpoint{ID: "v3", Address: "v3:1", Role: router.Verifier},
	)
	br := services.NewBreakers(1, time.Hour)
	r := &router.Router{Discovery: d, Breakers: br, MaxAttempts: 2}
	order := func(key string) []string {
		var ids []string
		ex := map[string]bool{}
		for range 3 {
			v, _, _ := router.Pick(d, key, ex, nil)
			ids, ex[v.ID] = append(ids, v.ID), true
		}
		return ids
	}("k")
	unreachable, breaks := order[0], order[1]
	var tried []string
	b := backendFunc(func(ctx context.Context, a router.Attempt) (router.Stream, error) {
		tried = append(tried, a.Verifier.ID)
		switch a.Verifier.ID {
		case unreachable:
			return nil, fmt.Errorf("%w: connection refused", router.ErrUnreachable)
		case breaks:
			return &fakeStream{next: len(a.Resume), end: 6, failAt: 3}, nil
		}
		return &fakeStream{next: len(a.Resume), end: 6, failAt: -1}, nil
	})
	res, err := r.Relay(context.Background(), "k", "", b, func(router.Event) error { return nil })
	if err != nil {
		t.Fatalf("Relay: %v (tried %v)", err, tried)
	}
	if !slices.Equal(tried, order) || res.Failovers != 1 || len(res.Attempts) != 2 {
		t.Errorf("tried %v, %d failovers, %d attempts; want %v, 1 and 2", tried, res.Failovers, len(res.Attempts), order)
	}
	if st := br.States(); st[unreachable] != 0 || st[breaks] != 2 {
		t.Errorf("breakers %v: want %s closed (unreachable is no failure) and %s open", st, unreachable, breaks)
	}
}

// TestRelayResumesOnTheSameModel: a request that names no model, started on a
// verifier of model a that fails mid-stream, resumes on the other verifier of a even
// when its affinity ranks a verifier of model b next: resumed ids are a's tokens.
func TestRelayResumesOnTheSameModel(t *testing.T) {
	d := router.NewStatic(
		router.Endpoint{ID: "v1", Role: router.Verifier, Model: "a"},
		router.Endpoint{ID: "v2", Role: router.Verifier, Model: "b"},
		router.Endpoint{ID: "v3", Role: router.Verifier, Model: "a"},
	)
	key := ""
	var first router.Endpoint
	for i := 0; key == ""; i++ {
		k := fmt.Sprint("key", i)
		v, _, _ := router.Pick(d, k, nil, nil)
		next, _, _ := router.Pick(d, k, map[string]bool{v.ID: true}, nil)
		if v.Model == "a" && next.Model == "b" {
			key, first = k, v
		}
	}
	r := &router.Router{Discovery: d}
	b := &fakeBackend{total: 8, failAfter: map[string]int{first.ID: 3}}
	if _, err := r.Relay(context.Background(), key, "", b, func(router.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(b.starts) != 2 || b.starts[1].Verifier.Model != "a" {
		t.Fatalf("attempts %+v: want the resume on the other verifier of model a", b.starts)
	}
	// A request naming model b runs on v2 only, whatever its key.
	b = &fakeBackend{total: 2}
	if _, err := r.Relay(context.Background(), key, "b", b, func(router.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(b.starts) != 1 || b.starts[0].Verifier.ID != "v2" {
		t.Fatalf("attempts %+v: want one on v2, model b's verifier", b.starts)
	}
}

// drafted is a verifier's stream that ends after n tokens with a final naming the
// draft that served it (zero: the verifier did not use the request's draft).
type drafted struct {
	fakeStream
	draft router.Served
}

func (s *drafted) Recv() (router.Event, error) {
	ev, err := s.fakeStream.Recv()
	if ev.Final != nil {
		ev.Final.Stats.Draft = s.draft
	}
	return ev, err
}

// TestDraftBreakerProbedOnlyByUse: a request that succeeds without its draft — the
// verifier did not open the draft's stream (one token to generate, speculation
// switched off, or a draft outside its view) — says nothing of the draft, so it
// neither closes the draft's half-open breaker nor counts as the draft's success. A
// request the draft served does close it.
func TestDraftBreakerProbedOnlyByUse(t *testing.T) {
	d := router.NewStatic(
		router.Endpoint{ID: "v1", Address: "v1:1", Role: router.Verifier, TokenizerHash: "A"},
		router.Endpoint{ID: "d1", Address: "d1:1", Role: router.Draft, TokenizerHash: "A"},
	)
	br := services.NewBreakers(1, 50*time.Millisecond)
	r := &router.Router{Discovery: d, Breakers: br}
	d1 := router.Endpoint{ID: "d1"}
	done, ok := br.Begin(d1)
	if !ok {
		t.Fatal("Begin(d1) refused on a new breaker")
	}
	done(router.ErrEndpointDown)      // the draft failed: its breaker opens
	time.Sleep(80 * time.Millisecond) // the cooldown: half-open
	var served router.Served
	b := backendFunc(func(ctx context.Context, a router.Attempt) (router.Stream, error) {
		if a.Draft == nil || a.Draft.ID != "d1" {
			t.Errorf("attempt offered draft %v, want d1 (half-open: one probe)", a.Draft)
		}
		return &drafted{fakeStream: fakeStream{end: 1, failAt: -1}, draft: served}, nil
	})
	for i := range 2 {
		if _, err := r.Relay(context.Background(), "k", "", b, func(router.Event) error { return nil }); err != nil {
			t.Fatalf("request %d without the draft: %v", i, err)
		}
		if st := br.States()["d1"]; st != 1 {
			t.Fatalf("after request %d, which did not use the draft: its breaker is in state %d, want 1 (half-open, still to be probed)", i, st)
		}
	}
	served = router.Served{Address: "d1:1"}
	if _, err := r.Relay(context.Background(), "k", "", b, func(router.Event) error { return nil }); err != nil {
		t.Fatalf("request with the draft: %v", err)
	}
	if st := br.States()["d1"]; st != 0 {
		t.Errorf("after a request the draft served: its breaker is in state %d, want 0 (closed)", st)
	}
}

// script is a stream that returns its events, then io.EOF, or err in place of io.EOF.
type script struct {
	events []router.Event
	err    error
}

func (s *script) Recv() (router.Event, error) {
	if len(s.events) == 0 {
		if s.err != nil {
			return router.Event{}, s.err
		}
		return router.Event{}, io.EOF
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return ev, nil
}

// TestRelayStatsCountEveryAttempt: after a failover, the final stats count the rounds,
// tokens, fallbacks, round trips and waits of the attempt that failed (its last
// progress) as well as the last attempt's, and the last attempt's draft is not blamed
// for the fallback of the draft an earlier attempt lost.
func TestRelayStatsCountEveryAttempt(t *testing.T) {
	d := router.NewStatic(
		router.Endpoint{ID: "v1", Address: "v1:1", Role: router.Verifier, TokenizerHash: "A"},
		router.Endpoint{ID: "v2", Address: "v2:1", Role: router.Verifier, TokenizerHash: "A"},
		router.Endpoint{ID: "d1", Address: "d1:1", Role: router.Draft, TokenizerHash: "A"},
	)
	br := services.NewBreakers(1, time.Minute)
	r := &router.Router{Discovery: d, Breakers: br}
	ms := time.Millisecond
	var last string // the verifier of the last attempt, which finishes the request
	b := backendFunc(func(ctx context.Context, a router.Attempt) (router.Stream, error) {
		last = a.Verifier.Address
		if len(a.Resume) == 0 { // the first attempt: four tokens, a lost draft, then a crash
			s := &script{err: fmt.Errorf("%w: connection reset", router.ErrEndpointDown)}
			for i := 1; i <= 4; i++ {
				s.events = append(s.events, router.Event{IDs: []int32{int32(i)}, Progress: &router.Progress{
					Rounds: i, DraftedTokens: 3 * i, AcceptedTokens: 2 * i, LookupTokens: i, LookupAcceptedTokens: 1,
					Fallbacks: i / 4, RoundTrips: i, RoundTripTotal: time.Duration(i) * 10 * ms, QueueWait: 5 * ms,
				}})
			}
			s.events = append(s.events, router.Event{IDs: []int32{5}}) // progress unchanged
			return s, nil
		}
		own := router.Progress{Rounds: 2, DraftedTokens: 6, AcceptedTokens: 3, RoundTrips: 2, RoundTripTotal: 80 * ms, QueueWait: ms}
		return &script{events: []router.Event{
			{IDs: []int32{6, 7}, Progress: &own},
			{Progress: &own, Final: &router.Final{Reason: generate.Length, Stats: router.Stats{
				CompletionTokens: 7, Rounds: 2, DraftedTokens: 6, AcceptedTokens: 3, AcceptanceRate: 0.5, MeanAcceptedPerRound: 1.5,
				MeanRoundTrip: 40 * ms, QueueWait: ms, Draft: router.Served{Address: "d1:1"},
			}}},
		}}, nil
	})
	res, err := r.Relay(context.Background(), "k", "", b, func(router.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := router.Stats{
		CompletionTokens: 7, Rounds: 6, DraftedTokens: 18, AcceptedTokens: 11, LookupTokens: 4, LookupAcceptedTokens: 1,
		AcceptanceRate: float32(11) / 18, MeanAcceptedPerRound: float32(11) / 6,
		MeanRoundTrip: 20 * ms, QueueWait: 6 * ms, Draft: router.Served{Address: "d1:1"}, Fallbacks: 1, Failovers: 1,
		Verifier: router.Served{Address: last}, // as the router reached it: the verifier's own report left it empty
	}
	if got := res.Final.Stats; got != want {
		t.Errorf("final stats\n got %+v\nwant %+v", got, want)
	}
	if st := br.States()["d1"]; st != 0 {
		t.Errorf("d1's breaker is in state %d after the attempt that used it succeeded, want 0 (closed)", st)
	}
}

// TestRelayProgressOfFailedRequest: a request whose every attempt failed has no final
// message, and its Result still tells what the attempts had done (for its metrics).
func TestRelayProgressOfFailedRequest(t *testing.T) {
	r := &router.Router{Discovery: eps(), MaxAttempts: 2}
	b := backendFunc(func(ctx context.Context, a router.Attempt) (router.Stream, error) {
		return &script{err: fmt.Errorf("%w: connection reset", router.ErrEndpointDown), events: []router.Event{
			{IDs: []int32{1}, Progress: &router.Progress{Rounds: 2, DraftedTokens: 5, AcceptedTokens: 3, LookupTokens: 1}},
		}}, nil
	})
	res, err := r.Relay(context.Background(), "k", "", b, func(router.Event) error { return nil })
	if !errors.Is(err, router.ErrEndpointDown) || res.Final != nil {
		t.Fatalf("relay = final %v, %v; want no final and the endpoints' failure", res.Final, err)
	}
	if p := res.Progress(); p.Rounds != 4 || p.DraftedTokens != 10 || p.AcceptedTokens != 6 || p.LookupTokens != 2 {
		t.Errorf("progress of two failed attempts = %+v, want twice each one's", p)
	}
}

// TestRelayPromptLogprobsOnce: prompt log-probabilities come in pieces ahead of the
// tokens. An attempt that fails after some of them is resumed on another verifier,
// which sends them all again: the client gets each prompt token's once, in order, and
// a piece holding only what it already has is no event at all.
func TestRelayPromptLogprobsOnce(t *testing.T) {
	d := router.NewStatic(
		router.Endpoint{ID: "v1", Address: "v1:1", Role: router.Verifier},
		router.Endpoint{ID: "v2", Address: "v2:1", Role: router.Verifier},
	)
	lp := func(from, to int) []*generate.Logprobs {
		var out []*generate.Logprobs
		for k := from; k < to; k++ {
			out = append(out, &generate.Logprobs{Logprob: -float32(k), Bytes: []byte{byte('a' + k)}})
		}
		return out
	}
	down := fmt.Errorf("%w: gone", router.ErrEndpointDown)
	scripts := []*script{
		{events: []router.Event{{PromptLogprobs: lp(0, 2)}, {PromptLogprobs: lp(2, 3)}}, err: down},
		{events: []router.Event{{PromptLogprobs: lp(0, 2)}, {PromptLogprobs: lp(2, 4)}, {PromptLogprobs: lp(4, 5)},
			{IDs: []int32{7}, Positions: []int{5}, Text: "x"}, {Final: &router.Final{Reason: generate.Length}}}},
	}
	attempt := 0
	b := backendFunc(func(context.Context, router.Attempt) (router.Stream, error) {
		s := scripts[attempt]
		attempt++
		return s, nil
	})
	var got []string
	events := 0
	res, err := (&router.Router{Discovery: d}).Relay(context.Background(), "k", "", b, func(ev router.Event) error {
		events++
		for _, l := range ev.PromptLogprobs {
			got = append(got, fmt.Sprintf("%s%v", l.Bytes, l.Logprob))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a-0", "b-1", "c-2", "d-3", "e-4"}
	if !slices.Equal(got, want) || len(res.PromptLogprobs) != len(want) {
		t.Errorf("relayed %q (%d in the result), want %q", got, len(res.PromptLogprobs), want)
	}
	// 2 events of the first attempt; of the second, 2 with new entries, the token, the end.
	if events != 6 {
		t.Errorf("%d events relayed, want 6", events)
	}
}

// heldStream streams one token, then waits for release (or its request's end) before
// it ends the generation: a long generation under way.
type heldStream struct {
	ctx     context.Context
	release <-chan struct{}
	step    int
}

func (s *heldStream) Recv() (router.Event, error) {
	s.step++
	switch s.step {
	case 1:
		return router.Event{IDs: []int32{100}, Positions: []int{0}, Text: " 100"}, nil
	case 2:
		select {
		case <-s.release:
		case <-s.ctx.Done():
			return router.Event{}, s.ctx.Err()
		}
		return router.Event{Final: &router.Final{Reason: generate.Length}}, nil
	}
	return router.Event{}, io.EOF
}

// TestHalfOpenProbeClosesOnFirstTokens: the half-open probe of a verifier's breaker
// succeeds as soon as the verifier streams the probe request's first tokens, not when
// that generation ends. Until the probe reports, every other request is refused the
// verifier (the probe holds the breaker's one half-open slot): with a single
// verifier, just restarted, that was UNAVAILABLE for as long as the probe generated.
// A probe that streams and then breaks still counts as the verifier's failure.
func TestHalfOpenProbeClosesOnFirstTokens(t *testing.T) {
	d := router.NewStatic(router.Endpoint{ID: "v1", Address: "v1:1", Role: router.Verifier})
	br := services.NewBreakers(1, 50*time.Millisecond)
	r := &router.Router{Discovery: d, Breakers: br}
	v1 := router.Endpoint{ID: "v1"}
	halfOpen := func() {
		t.Helper()
		done, ok := br.Begin(v1)
		if !ok {
			t.Fatalf("Begin(v1) refused with the breaker %v", br.States())
		}
		done(router.ErrEndpointDown) // trip 1: open
		for deadline := time.Now().Add(10 * time.Second); br.States()["v1"] != 1; time.Sleep(10 * time.Millisecond) {
			br.Ready(v1) // the breaker turns half-open when asked after its cooldown
			if time.Now().After(deadline) {
				t.Fatalf("breaker %v, want half-open after its cooldown", br.States())
			}
		}
	}
	halfOpen()

	release := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	probe := backendFunc(func(ctx context.Context, a router.Attempt) (router.Stream, error) {
		return &heldStream{ctx: ctx, release: release}, nil
	})
	first := make(chan struct{})
	probeDone := make(chan error, 1)
	go func() {
		_, err := r.Relay(ctx, "k", "", probe, func(ev router.Event) error {
			if len(ev.IDs) > 0 {
				close(first)
			}
			return nil
		})
		probeDone <- err
	}()
	<-first
	// The probe is still generating; another request gets the verifier.
	quick := backendFunc(func(context.Context, router.Attempt) (router.Stream, error) {
		return &fakeStream{end: 2, failAt: -1}, nil
	})
	if _, err := r.Relay(ctx, "k2", "", quick, func(router.Event) error { return nil }); err != nil {
		t.Errorf("request while the probe, which has streamed tokens, still generates: %v (breakers %v), want it served", err, br.States())
	}
	close(release)
	if err := <-probeDone; err != nil {
		t.Fatalf("probe request: %v", err)
	}
	if st := br.States()["v1"]; st != 0 {
		t.Fatalf("breaker state %d after the probe, want 0 (closed)", st)
	}

	// A probe that streams, then breaks, opens the breaker again.
	halfOpen()
	breaking := backendFunc(func(context.Context, router.Attempt) (router.Stream, error) {
		return &fakeStream{end: 6, failAt: 2}, nil
	})
	if _, err := r.Relay(ctx, "k3", "", breaking, func(router.Event) error { return nil }); !errors.Is(err, router.ErrEndpointDown) {
		t.Fatalf("probe that breaks mid-stream: %v, want the verifier's failure", err)
	}
	if st := br.States()["v1"]; st != 2 {
		t.Errorf("breaker state %d after a probe that broke mid-stream, want 2 (open)", st)
	}
}
