package services

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
)

// Engines is the bounded set of compute slots of one loaded model. Each slot owns a
// kernels.Pool and a model.State, so sessions in different slots run in parallel and
// never share scratch memory. A session waits for a free slot in a bounded queue; when
// the queue is full it fails at once with ErrBusy.
type Engines struct {
	Model    *model.Model
	KV       *kvcache.Pool
	slots    chan *model.State
	all      []*model.State
	pools    []*kernels.Pool
	maxQueue int32
	waiting  atomic.Int32
	active   atomic.Int32
	load     atomic.Pointer[func() (int, int)] // SetLoad's; nil: the slots'
}

// EngineConfig sizes Engines.
type EngineConfig struct {
	Threads  int       // kernel threads per slot
	Slots    int       // sessions computing at once; 0: none (a scheduler of the service's own runs the model)
	Queue    int       // sessions allowed to wait for a slot
	KVBudget int64     // bytes of KV cache shared by all sessions
	KVType   ggml.Type // ggml.F32 or ggml.F16
	MaxBlock int       // largest forward block (prefill is split into blocks of this size)
}

// NewEngines prepares cfg.Slots slots for m.
func NewEngines(m *model.Model, cfg EngineConfig) (*Engines, error) {
	if cfg.Slots < 0 || cfg.Threads < 1 || cfg.Queue < 0 {
		return nil, fmt.Errorf("engines: slots %d, threads %d, queue %d", cfg.Slots, cfg.Threads, cfg.Queue)
	}
	kv, err := m.NewKVPool(cfg.KVBudget, cfg.KVType)
	if err != nil {
		return nil, err
	}
	e := &Engines{Model: m, KV: kv, slots: make(chan *model.State, cfg.Slots), maxQueue: int32(cfg.Queue)}
	// Fault in the KV memory of a full context per slot and warm every slot, so that
	// the first requests do not pay for page faults (see model.State.Warm); the
	// service reports SERVING only after this.
	kv.Reserve(cfg.Slots * m.Context)
	for range cfg.Slots {
		p := kernels.NewPool(cfg.Threads)
		st := m.NewState(p, kv.NewSeq(), max(cfg.MaxBlock, 1))
		e.pools = append(e.pools, p)
		e.all = append(e.all, st)
		err := st.Warm()
		switch {
		case errors.Is(err, kvcache.ErrExhausted):
			// A budget too small for a warm-up block still serves short requests;
			// they pay for the page faults themselves.
		case err != nil:
			e.Close()
			return nil, fmt.Errorf("engines: warm-up: %w", err)
		}
		e.slots <- st
	}
	return e, nil
}

// Acquire waits for a free slot and returns its state with an empty sequence, and the
// function that releases both (freeing the sequence's KV blocks at once). It fails with
// ErrBusy when the wait queue is full, or with ctx's error.
func (e *Engines) Acquire(ctx context.Context) (*model.State, func(), error) {
	select {
	case st := <-e.slots:
		return e.ready(st), e.releaser(st), nil
	default:
	}
	if e.waiting.Add(1) > e.maxQueue {
		e.waiting.Add(-1)
		return nil, nil, fmt.Errorf("%w: %d sessions running, %d waiting", ErrBusy, cap(e.slots), e.maxQueue)
	}
	defer e.waiting.Add(-1)
	select {
	case st := <-e.slots:
		return e.ready(st), e.releaser(st), nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

func (e *Engines) ready(st *model.State) *model.State {
	e.active.Add(1)
	st.Seq.Release()
	return st
}

func (e *Engines) releaser(st *model.State) func() {
	var once atomic.Bool
	return func() {
		if once.Swap(true) {
			return
		}
		st.Seq.Release()
		e.active.Add(-1)
		e.slots <- st
	}
}

// Load reports sessions running and waiting.
func (e *Engines) Load() (active, waiting int) {
	if f := e.load.Load(); f != nil {
		return (*f)()
	}
	return int(e.active.Load()), int(e.waiting.Load())
}

// SetLoad makes Load report f's figures: those of a service that runs the model with a
// scheduler of its own instead of the slots.
func (e *Engines) SetLoad(f func() (running, waiting int)) { e.load.Store(&f) }

// Close stops the kernel pools. No session may be running.
func (e *Engines) Close() {
	for _, p := range e.pools {
		p.Close()
	}
}
