package services

import (
	"fmt"
	"sync/atomic"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
)

// Engine is one loaded model and the KV cache pool that its service's scheduler
// (verifier.Scheduler or draft.Scheduler) computes with; the scheduler owns the kernel
// threads and batches every session into its passes.
type Engine struct {
	Model *model.Model
	KV    *kvcache.Pool
	load  atomic.Pointer[func() (int, int)] // SetLoad's; nil: idle
}

// EngineConfig sizes an Engine and the scheduler that uses it.
type EngineConfig struct {
	Threads  int       // kernel threads of the scheduler's passes
	KVBudget int64     // bytes of KV cache shared by all sessions
	KVType   ggml.Type // ggml.F32 or ggml.F16
	MaxBlock int       // most context tokens one pass feeds (prefill is split into chunks)
}

// NewEngine allocates m's KV pool under cfg's budget.
func NewEngine(m *model.Model, cfg EngineConfig) (*Engine, error) {
	if cfg.Threads < 1 || cfg.MaxBlock < 1 {
		return nil, fmt.Errorf("engine: threads %d, max block %d: want both ≥ 1", cfg.Threads, cfg.MaxBlock)
	}
	kv, err := m.NewKVPool(cfg.KVBudget, cfg.KVType)
	if err != nil {
		return nil, err
	}
	return &Engine{Model: m, KV: kv}, nil
}

// Load reports sessions running and waiting, as SetLoad's function reports them.
func (e *Engine) Load() (running, waiting int) {
	if f := e.load.Load(); f != nil {
		return (*f)()
	}
	return 0, 0
}

// SetLoad makes Load report f's figures: those of the scheduler that runs the model.
func (e *Engine) SetLoad(f func() (running, waiting int)) { e.load.Store(&f) }
