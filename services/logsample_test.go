package services_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/specd-dev/specd/services"
)

// TestLogSampler: one record per kind per interval, the held-back count reported with
// the next one let through, kinds independent, and a bounded memory of kinds.
func TestLogSampler(t *testing.T) {
	s := services.LogSampler{Every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		kind     string
		at       time.Duration
		ok       bool
		wantHeld int
	}{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"b", time.Second, true, 0}, // another kind is not held back by a
		{"a", 9 * time.Second, false, 0},
		{"a", 10 * time.Second, true, 2},
		{"a", 11 * time.Second, false, 0},
		{"a", 30 * time.Second, true, 1},
		{"b", 30 * time.Second, true, 0},
	}
	for i, st := range steps {
		ok, held := s.Allow(st.kind, t0.Add(st.at))
		if ok != st.ok || held != st.wantHeld {
			t.Errorf("step %d (%s at %v): Allow = %v, %d; want %v, %d", i, st.kind, st.at, ok, held, st.ok, st.wantHeld)
		}
	}
	for i := range 5000 {
		s.Allow(fmt.Sprint("k", i), t0)
	}
	if ok, _ := s.Allow("a", t0.Add(31*time.Second)); !ok {
		t.Error("after more kinds than it remembers, a kind seen recently is still held back forever")
	}
}
