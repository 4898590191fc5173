package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"
)

// Spin budgets before parking. A worker keeps spinning this long after a job for the next
// one, which in a decode step follows within microseconds; the caller spins this long for
// the last chunk of a job before sleeping on it.
const (
	workerSpin = 100 * time.Microsecond
	callerSpin = 200 * time.Microsecond
)

// Pool is a persistent set of worker goroutines that run parallel loops and matrix
// products. It is created once and reused: a job is handed over through atomics, with no
// goroutine, channel send or allocation per chunk. Workers spin briefly between jobs and
// then park.
//
// A Pool runs one job at a time and owns scratch buffers for MatMul (the quantized
// activations): it must not be used from two goroutines at once. Give each concurrent
// caller its own Pool.
type Pool struct {
	threads int

	// The atomics the threads share sit on cache lines of their own, so that spinning on
	// them does not contend with the job's other fields.
	_ cpu.CacheLinePad
	// state packs the job generation (bits 32-63), its number of chunks (16-31) and the
	// next unclaimed chunk (0-15), so that a worker reading it late can neither claim a
	// chunk of a later job nor misjudge how many chunks a job has.
	state atomic.Uint64
	_     cpu.CacheLinePad
	done  atomic.Int64 // chunks of the current job finished
	_     cpu.CacheLinePad
	fn    func(chunk int)

	callerSleeping atomic.Int32
	callerWake     chan struct{}
	workers        []*poolWorker
	closed         atomic.Bool
	wg             sync.WaitGroup

	// For's job, read by forChunk (a method value made once, so For does not allocate).
	forFn       func(lo, hi int)
	forN        int
	forChunks   int
	forChunkFn  func(chunk int)
	mm          matmulState
	mmChunkFunc func(chunk int)
	prepFunc    func(lo, hi int)
}

type poolWorker struct {
	sleeping atomic.Int32
	wake     chan struct{}
}

// NewPool starts a pool that runs jobs on threads goroutines: the caller's plus threads-1
// workers. threads < 1 means 1. With one thread every job runs inline on the caller, with
// no synchronisation at all.
func NewPool(threads int) *Pool {
	threads = max(threads, 1)
	p := &Pool{threads: threads, callerWake: make(chan struct{}, 1)}
	p.forChunkFn = p.forChunk
	p.mmChunkFunc = p.mmChunk
	p.prepFunc = p.prepTokens
	for range threads - 1 {
		w := &poolWorker{wake: make(chan struct{}, 1)}
		p.workers = append(p.workers, w)
		p.wg.Add(1)
		go p.work(w)
	}
	return p
}

// Threads returns the number of goroutines that run a job, the caller's included.
func (p *Pool) Threads() int { return p.threads }

// Close stops the workers and waits for them to exit. The pool must be idle; it must not
// be used afterwards. Close is idempotent.
func (p *Pool) Close() {
	if p.closed.Swap(true) {
		return
	}
	gen := uint32(p.state.Load() >> 32)
	p.state.Store(uint64(gen+1) << 32)
	p.wakeWorkers()
	p.wg.Wait()
}

// For calls fn on disjoint ranges [lo,hi) covering [0,n), in parallel on the pool. Ranges
// are handed out dynamically, so a faster thread takes more of them. It returns when every
// call has returned.
func (p *Pool) For(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if p.threads == 1 || n == 1 {
		fn(0, n)
		return
	}
	p.forFn, p.forN, p.forChunks = fn, n, min(n, 8*p.threads)
	p.run(p.forChunks, p.forChunkFn)
	p.forFn = nil
}

func (p *Pool) forChunk(c int) {
	lo := c * p.forN / p.forChunks
	hi := (c + 1) * p.forN / p.forChunks
	p.forFn(lo, hi)
}

// maxChunks bounds the chunks of one job, which the state word counts in 16 bits.
const maxChunks = 1<<16 - 1

// run executes fn(0..nchunks-1) across the pool and returns when all have finished.
func (p *Pool) run(nchunks int, fn func(chunk int)) {
	if p.threads == 1 || nchunks == 1 {
		for c := range nchunks {
			fn(c)
		}
		return
	}
	if nchunks > maxChunks {
		panic("kernels: too many chunks in one pool job")
	}
	p.fn = fn
	p.done.Store(0)
	gen := uint32(p.state.Load()>>32) + 1
	p.state.Store(uint64(gen)<<32 | uint64(nchunks)<<16) // publishes fn
	p.wakeWorkers()
	p.drain(gen)
	p.awaitDone(int64(nchunks))
	p.fn = nil
}

// drain claims and runs chunks of generation gen until none is left.
func (p *Pool) drain(gen uint32) {
	for {
		s := p.state.Load()
		if uint32(s>>32) != gen {
			return
		}
		c, n := int64(s&maxChunks), int64(s>>16&maxChunks)
		if c >= n {
			return
		}
		if !p.state.CompareAndSwap(s, s+1) {
			continue
		}
		// The job cannot change until this chunk is done, so fn is the job's.
		p.fn(int(c))
		if p.done.Add(1) == n && p.callerSleeping.CompareAndSwap(1, 0) {
			p.callerWake <- struct{}{}
		}
	}
}

func (p *Pool) awaitDone(n int64) {
	start := time.Now()
	for i := 1; p.done.Load() != n; i++ {
		if i%256 != 0 {
			continue
		}
		if time.Since(start) < callerSpin {
			runtime.Gosched()
			continue
		}
		p.callerSleeping.Store(1)
		if p.done.Load() == n {
			if !p.callerSleeping.CompareAndSwap(1, 0) {
				<-p.callerWake // the last worker saw us asleep and is sending
			}
			return
		}
		<-p.callerWake
		return
	}
}

func (p *Pool) wakeWorkers() {
	for _, w := range p.workers {
		if w.sleeping.CompareAndSwap(1, 0) {
			w.wake <- struct{}{}
		}
	}
}

func (p *Pool) work(w *poolWorker) {
	defer p.wg.Done()
	// The pool starts at generation 0. Reading the state here instead would let a worker
	// that starts late miss a Close (or a job) published before it ran.
	var seen uint32
	for {
		gen := p.awaitGen(w, seen)
		if p.closed.Load() {
			return
		}
		seen = gen
		p.drain(gen)
	}
}

// awaitGen waits, spinning and then parked, for a generation other than seen.
func (p *Pool) awaitGen(w *poolWorker, seen uint32) uint32 {
	start := time.Now()
	for i := 1; ; i++ {
		if gen := uint32(p.state.Load() >> 32); gen != seen {
			return gen
		}
		if i%256 == 0 {
			if time.Since(start) > workerSpin {
				break
			}
			runtime.Gosched()
		}
	}
	w.sleeping.Store(1)
	if gen := uint32(p.state.Load() >> 32); gen != seen {
		if !w.sleeping.CompareAndSwap(1, 0) {
			<-w.wake // the caller saw us asleep and is sending
		}
		return gen
	}
	<-w.wake
	return uint32(p.state.Load() >> 32)
}
