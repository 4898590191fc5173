package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// memHeadroom is how far the Go runtime's memory may grow beyond its footprint once
// loaded and warmed up: requests in flight, gRPC buffers, garbage. The KV caches, packed
// weights and pass scratch are outside it (kernels.Mem).
const memHeadroom = 64 << 20

// Release after load: every releaseEvery, a process that allocated more than
// releaseAfter since it last gave memory back, and less than idleAlloc in the last
// period, gives its free memory back to the system.
const (
	releaseEvery = 2 * time.Second
	releaseAfter = 32 << 20
	idleAlloc    = 1 << 20
)

// gcPercent is the garbage collector's target (GOGC) in serving processes unless GOGC
// is set. The KV caches, packed weights and pass scratch live outside the Go heap
// (kernels.Mem), so what remains is small (about 15 MiB under 64 streams) and a
// collection is cheap; at the default 100 the heap doubled that under load, half of it
// garbage. At 50, a burst of 64 streams peaked 6–8 MiB lower (docs/benchmarks.md).
const gcPercent = 50

// memSettings is what limitMemory's calls share: the limit and target from before the
// first of the calls running, restored when the last of them ends, in whatever order
// they end, and the one release loop that runs while any of them does (specd up's
// three serving parts each call limitMemory; three loops would each free the same
// memory).
var memSettings struct {
	sync.Mutex
	calls     int   // calls whose contexts have not ended
	prevLimit int64 // the memory limit before the first
	prevGC    int   // GOGC before the first, when it set it (setGC)
	setGC     bool
	stop      chan struct{} // closed when the last call ends: the release loop returns
	loops     int           // release loops running (tests)
}

// limitMemory sets the Go runtime's soft memory limit to the process's footprint now
// plus memHeadroom, unless GOMEMLIMIT sets one, and the collector's target to gcPercent
// unless GOGC sets one; then, until ctx ends, it gives memory back to the system when the
// process goes idle after work. Call it once every model is loaded and warmed up. The
// runtime returns freed pages slowly on its own; after a burst of requests the idle
// check returns them at once, so the process goes back to its baseline. When the
// contexts of every call end, the limit and target from before the first are restored.
func limitMemory(ctx context.Context, log *slog.Logger) {
	m := &memSettings
	m.Lock()
	if m.calls == 0 {
		m.prevLimit = debug.SetMemoryLimit(-1)
		m.setGC = os.Getenv("GOGC") == ""
		if m.setGC {
			m.prevGC = debug.SetGCPercent(gcPercent)
		}
		m.stop = make(chan struct{})
		m.loops++
		go releaseLoop(m.stop)
	}
	m.calls++
	if os.Getenv("GOMEMLIMIT") == "" {
		s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
		debug.FreeOSMemory()
		metrics.Read(s)
		base := int64(s[0].Value.Uint64() - s[1].Value.Uint64())
		debug.SetMemoryLimit(base + memHeadroom)
		if log != nil {
			log.Info("memory limit set", "footprint_bytes", base, "limit_bytes", base+memHeadroom)
		}
	}
	m.Unlock()
	go func() {
		<-ctx.Done()
		m.Lock()
		defer m.Unlock()
		if m.calls--; m.calls == 0 {
			debug.SetMemoryLimit(m.prevLimit)
			if m.setGC {
				debug.SetGCPercent(m.prevGC)
			}
			close(m.stop)
		}
	}()
}

// releaseLoop gives free memory back to the system, every releaseEvery, once the process
// has allocated releaseAfter since it last did and less than idleAlloc in the last
// period, until stop is closed.
func releaseLoop(stop <-chan struct{}) {
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	defer func() {
		memSettings.Lock()
		memSettings.loops--
		memSettings.Unlock()
	}()
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	released, last := s[0].Value.Uint64(), s[0].Value.Uint64()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		metrics.Read(s)
		now := s[0].Value.Uint64()
		if now-last < idleAlloc && now-released > releaseAfter {
			debug.FreeOSMemory()
			released = now
		}
		last = now
	}
}
