package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// memHeadroom is what a serving process may use beyond its footprint once loaded and
// warmed up (weights, KV budgets, scratch): requests in flight, gRPC buffers, garbage.
const memHeadroom = 64 << 20

// Release after load: every releaseEvery, a process that allocated more than
// releaseAfter since it last gave memory back, and less than idleAlloc in the last
// period, gives its free memory back to the system.
const (
	releaseEvery = 2 * time.Second
	releaseAfter = 32 << 20
	idleAlloc    = 1 << 20
)

// limitMemory sets the Go runtime's soft memory limit to the process's footprint now
// plus memHeadroom, unless GOMEMLIMIT sets one, and then, until ctx ends, gives memory
// back to the system when the process goes idle after work. Call it once every model is
// loaded and warmed up. The KV caches are Go memory allocated up front, so with the
// default GC target the heap could grow to twice them before a collection; with the
// limit the collector runs as the footprint nears it. The runtime returns freed pages
// slowly on its own; after a burst of requests the idle check returns them at once, so
// the process goes back to its baseline. When ctx ends the previous limit is restored.
func limitMemory(ctx context.Context, log *slog.Logger) {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	prev := debug.SetMemoryLimit(-1)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.FreeOSMemory()
		metrics.Read(s)
		base := int64(s[0].Value.Uint64() - s[1].Value.Uint64())
		debug.SetMemoryLimit(base + memHeadroom)
		if log != nil {
			log.Info("memory limit set", "footprint_bytes", base, "limit_bytes", base+memHeadroom)
		}
	}
	go func() {
		t := time.NewTicker(releaseEvery)
		defer t.Stop()
		defer debug.SetMemoryLimit(prev)
		metrics.Read(s)
		released, last := s[2].Value.Uint64(), s[2].Value.Uint64()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			metrics.Read(s)
			now := s[2].Value.Uint64()
			if now-last < idleAlloc && now-released > releaseAfter {
				debug.FreeOSMemory()
				released = now
			}
			last = now
		}
	}()
}
