package quota_test

import (
	"errors"
	"testing"
	"time"

	"github.com/specd-dev/specd/quota"
)

var t0 = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

// at is t0 plus d: the tests' clock.
func at(d time.Duration) time.Time { return t0.Add(d) }

// TestRate replays a transcript against a bucket of 10 tokens/s, burst 20: a full
// bucket admits; a request that produced more than was left puts the bucket in debt,
// and requests are refused — with the time until one token is back — until the
// refill has paid it.
func TestRate(t *testing.T) {
	lim := quota.Limits{Rate: 10, Burst: 20}
	var tab quota.Table
	steps := []struct {
		at      time.Duration
		op      string // admit, done+charge (charge n then done)
		n       int
		wantErr error
		retry   time.Duration
	}{
		{0, "admit", 0, nil, 0},
		{time.Second, "end", 50, nil, 0}, // 20 - 50 = -30 tokens
		{time.Second, "admit", 0, quota.ErrRate, 3100 * time.Millisecond},
		{3 * time.Second, "admit", 0, quota.ErrRate, 1100 * time.Millisecond}, // -30 + 20 = -10
		{4*time.Second + 100*time.Millisecond, "admit", 0, nil, 0},            // +1
		{4*time.Second + 100*time.Millisecond, "end", 1, nil, 0},              // 0 left
		{4*time.Second + 100*time.Millisecond, "admit", 0, quota.ErrRate, 100 * time.Millisecond},
		{time.Hour, "admit", 0, nil, 0},
	}
	for i, s := range steps {
		now := at(s.at)
		switch s.op {
		case "admit":
			err := tab.Admit("alice", lim, now)
			if !errors.Is(err, s.wantErr) || (s.wantErr == nil) != (err == nil) {
				t.Fatalf("step %d: Admit at %v = %v, want %v", i, s.at, err, s.wantErr)
			}
			var r *quota.Refusal
			if errors.As(err, &r) && r.RetryAfter != s.retry {
				t.Errorf("step %d: RetryAfter = %v, want %v", i, r.RetryAfter, s.retry)
			}
		case "end":
			tab.Charge("alice", lim, s.n, now)
			tab.Done("alice", lim, now)
		}
	}
	// After two idle hours the bucket holds its burst of 20, no more: charged 20, it
	// is empty, one token (0.1 s) short of admitting.
	if err := tab.Admit("alice", lim, at(2*time.Hour)); err != nil {
		t.Fatalf("Admit after two idle hours = %v, want nil", err)
	}
	tab.Charge("alice", lim, 20, at(2*time.Hour))
	tab.Done("alice", lim, at(2*time.Hour))
	var r *quota.Refusal
	if err := tab.Admit("alice", lim, at(2*time.Hour)); !errors.As(err, &r) || r.RetryAfter != 100*time.Millisecond {
		t.Errorf("Admit after 20 tokens from a bucket idle for two hours = %v, want ErrRate with retry 100ms (a bucket of 20)", err)
	}
}

// TestStreams: past Streams running requests a name is refused with ErrStreams and
// StreamRetry; Done makes room; other names are not affected.
func TestStreams(t *testing.T) {
	lim := quota.Limits{Streams: 2}
	var tab quota.Table
	for i := range 2 {
		if err := tab.Admit("peer-a", lim, t0); err != nil {
			t.Fatalf("Admit %d = %v, want nil", i, err)
		}
	}
	err := tab.Admit("peer-a", lim, t0)
	var r *quota.Refusal
	if !errors.As(err, &r) || !errors.Is(err, quota.ErrStreams) || r.RetryAfter != quota.StreamRetry || r.Name != "peer-a" {
		t.Fatalf("third Admit = %v, want a Refusal for ErrStreams with retry %v", err, quota.StreamRetry)
	}
	if err := tab.Admit("peer-b", lim, t0); err != nil {
		t.Errorf("another name's Admit = %v, want nil", err)
	}
	tab.Done("peer-a", lim, t0)
	if err := tab.Admit("peer-a", lim, t0); err != nil {
		t.Errorf("Admit after a Done = %v, want nil", err)
	}
	if err := tab.Admit("peer-a", lim, t0); !errors.Is(err, quota.ErrStreams) {
		t.Errorf("Admit with two running again = %v, want ErrStreams", err)
	}
}

// TestForget: a name that has nothing running and a full bucket holds no state, so a
// table keyed by peers does not grow with every peer ever seen.
func TestForget(t *testing.T) {
	var tab quota.Table
	peers := quota.Limits{Streams: 4}
	for _, p := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		if err := tab.Admit(p, peers, t0); err != nil {
			t.Fatal(err)
		}
		tab.Done(p, peers, t0)
	}
	if tab.Len() != 0 {
		t.Errorf("Len after every request ended = %d, want 0", tab.Len())
	}
	keyed := quota.Limits{Rate: 1, Burst: 5}
	if err := tab.Admit("k", keyed, t0); err != nil {
		t.Fatal(err)
	}
	tab.Charge("k", keyed, 3, t0)
	tab.Done("k", keyed, t0)
	if tab.Len() != 1 {
		t.Fatalf("Len with a bucket still refilling = %d, want 1", tab.Len())
	}
	if err := tab.Admit("k", keyed, at(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	tab.Done("k", keyed, at(10*time.Second))
	if tab.Len() != 0 {
		t.Errorf("Len once the bucket is full again = %d, want 0", tab.Len())
	}
}

// TestLimitsChange: a smaller burst on reload caps a fuller bucket at once; no limits
// admit everything.
func TestLimitsChange(t *testing.T) {
	var tab quota.Table
	if err := tab.Admit("k", quota.Limits{Rate: 1, Burst: 100}, t0); err != nil {
		t.Fatal(err)
	}
	// Under a burst lowered to 3 the bucket holds 3: charged 3, it is one second
	// short of admitting.
	lower := quota.Limits{Rate: 1, Burst: 3}
	tab.Charge("k", lower, 3, t0)
	var r *quota.Refusal
	if err := tab.Admit("k", lower, t0); !errors.As(err, &r) || r.RetryAfter != time.Second {
		t.Errorf("Admit after 3 tokens under a burst lowered from 100 to 3 = %v, want ErrRate with retry 1s", err)
	}
	for i := range 1000 {
		if err := tab.Admit("free", quota.Limits{}, t0); err != nil {
			t.Fatalf("unlimited Admit %d = %v", i, err)
		}
		tab.Charge("free", quota.Limits{}, 1<<20, t0)
	}
}

// TestRetryPastDurations: a slow bucket deep in debt is refused with a retry hint as
// long as a Duration can say — not a wrapped-around conversion that tells the client
// to retry at once. (rate=0.000001 is a valid key file option; a request that
// produced 10,000 tokens leaves a debt that takes 1e10 s, past 292 years, to refill.)
func TestRetryPastDurations(t *testing.T) {
	lim := quota.Limits{Rate: 1e-6}
	var tab quota.Table
	if err := tab.Admit("slow", lim, t0); err != nil {
		t.Fatal(err)
	}
	tab.Charge("slow", lim, 10000, t0)
	tab.Done("slow", lim, t0)
	var r *quota.Refusal
	if err := tab.Admit("slow", lim, t0); !errors.As(err, &r) || !errors.Is(err, quota.ErrRate) {
		t.Fatalf("Admit = %v, want a refusal for the rate", err)
	}
	if r.RetryAfter < 290*365*24*time.Hour {
		t.Errorf("RetryAfter = %v, want at least 290 years", r.RetryAfter)
	}
}
