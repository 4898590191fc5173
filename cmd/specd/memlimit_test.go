package main

import (
	"context"
	"math"
	"runtime/debug"
	"testing"
	"time"
)

// TestLimitMemoryNested checks that calls of limitMemory whose contexts overlap (the
// serving parts of one process, or specd up run twice by one test binary) keep the
// settings while any of them runs, and restore those from before the first when the
// last one ends, in whichever order they end. Each call used to restore what it found,
// so the second's "previous" settings were the first's: GOGC 50 and a limit of the
// footprint plus 64 MiB outlived both, and the first to end lifted them under the
// second. The calls share one release loop, which ends with the last of them (each
// call used to run its own: specd up ran three).
func TestLimitMemoryNested(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	gc0 := debug.SetGCPercent(100)
	defer debug.SetGCPercent(gc0)
	lim0 := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(lim0)
	settings := func() (gc int, limit int64) {
		gc = debug.SetGCPercent(-1)
		debug.SetGCPercent(gc)
		return gc, debug.SetMemoryLimit(-1)
	}
	loops := func() int {
		memSettings.Lock()
		defer memSettings.Unlock()
		return memSettings.loops
	}

	ctx1, cancel1 := context.WithCancel(t.Context())
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	limitMemory(ctx1, nil)
	limitMemory(ctx2, nil)
	if gc, limit := settings(); gc != gcPercent || limit == math.MaxInt64 {
		t.Fatalf("while serving: GOGC %d, limit %d; want %d and a limit", gc, limit, gcPercent)
	}
	if n := loops(); n != 1 {
		t.Fatalf("two calls run %d release loops, want 1", n)
	}
	cancel1()
	time.Sleep(200 * time.Millisecond) // the first call's end has been seen
	if gc, limit := settings(); gc != gcPercent || limit == math.MaxInt64 {
		t.Fatalf("after the first call ended, while the second serves: GOGC %d, limit %d; want %d and a limit", gc, limit, gcPercent)
	}
	cancel2()
	time.Sleep(200 * time.Millisecond) // the second call's end has been seen
	deadline := time.Now().Add(5 * time.Second)
	for {
		gc, limit := settings()
		n := loops()
		if gc == 100 && limit == math.MaxInt64 && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after both calls ended: GOGC %d, limit %d, %d release loops; want 100, none and none (as before them)", gc, limit, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
