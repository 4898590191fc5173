package kvcache

import (
	"errors"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
)

func pool(t *testing.T, typ ggml.Type, blocks int) *Pool {
	t.Helper()
	cfg := Config{Layers: 2, KVDim: 4, BlockTokens: 4, Type: typ}
	cfg.Budget = int64(blocks * 2 * 2 * 4 * 4 * typ.BlockBytes())
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// at returns the key and value of (layer, pos), read through BlockKV.
func at(s *Seq, layer, pos int) (k, v []float32) {
	cfg := s.Pool().Config()
	bt, kv := cfg.BlockTokens, cfg.KVDim
	kb, vb := make([]float32, bt*kv), make([]float32, bt*kv)
	bk, bv := s.BlockKV(layer, pos/bt, kb, vb)
	r := pos % bt * kv
	return bk[r : r+kv], bv[r : r+kv]
}

func fill(s *Seq, from, to int) {
	for pos := from; pos < to; pos++ {
		for l := range 2 {
			k := []float32{float32(pos), float32(l), 1, 2}
			v := []float32{-float32(pos), float32(l), 3, 4}
			s.Put(l, pos, k, v)
		}
	}
}

func TestGrowTruncateAndBudget(t *testing.T) {
	p := pool(t, ggml.F32, 3) // 3 blocks of 4 positions
	s := p.NewSeq()
	if err := s.Grow(10); err != nil {
		t.Fatal(err)
	}
	fill(s, 0, 10)
	if got := p.Stats().Used; got != 3 {
		t.Fatalf("10 positions use %d blocks, want 3", got)
	}
	if err := s.Grow(3); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Grow past the budget = %v, want ErrExhausted", err)
	}
	if s.Len() != 10 || s.Blocks() != 3 {
		t.Fatalf("a failed Grow changed the sequence: len %d, blocks %d", s.Len(), s.Blocks())
	}
	s.Truncate(5) // drops the third block at once
	if s.Len() != 5 || p.Stats().Used != 2 {
		t.Fatalf("after Truncate(5): len %d, %d blocks used", s.Len(), p.Stats().Used)
	}
	if k, _ := at(s, 1, 4); k[0] != 4 || k[1] != 1 {
		t.Fatalf("key (1, 4) = %v after truncation", k)
	}
	other := p.NewSeq()
	if err := other.Grow(4); err != nil {
		t.Fatalf("a freed block is not reusable: %v", err)
	}
	s.Release()
	other.Release()
	if st := p.Stats(); st.Used != 0 || st.Free != st.Total {
		t.Fatalf("after Release: %+v", st)
	}
}

func TestForkSharesThenCopiesOnWrite(t *testing.T) {
	p := pool(t, ggml.F32, 8)
	a := p.NewSeq()
	if err := a.Grow(6); err != nil {
		t.Fatal(err)
	}
	fill(a, 0, 6)
	b := a.Fork(6)
	if used := p.Stats().Used; used != 2 {
		t.Fatalf("a fork copied blocks: %d used, want 2", used)
	}
	// b appends into the shared, partly filled second block: it gets its own copy.
	if err := b.Grow(1); err != nil {
		t.Fatal(err)
	}
	b.Put(0, 6, []float32{99, 0, 0, 0}, []float32{98, 0, 0, 0})
	if used := p.Stats().Used; used != 3 {
		t.Fatalf("copy-on-write: %d blocks used, want 3", used)
	}
	if err := a.Grow(1); err != nil {
		t.Fatal(err)
	}
	a.Put(0, 6, []float32{7, 0, 0, 0}, []float32{7, 0, 0, 0})
	ka, _ := at(a, 0, 6)
	kb, _ := at(b, 0, 6)
	if ka[0] != 7 || kb[0] != 99 {
		t.Fatalf("forks see each other's writes: a %v, b %v", ka, kb)
	}
	for pos := range 6 {
		k, _ := at(a, 1, pos)
		_, v := at(b, 1, pos)
		if k[0] != float32(pos) || v[0] != -float32(pos) {
			t.Fatalf("shared prefix differs at %d", pos)
		}
	}
	a.Release()
	b.Release()
	if p.Stats().Used != 0 {
		t.Fatalf("blocks leaked: %+v", p.Stats())
	}
}

func TestF16Entries(t *testing.T) {
	p := pool(t, ggml.F16, 2)
	s := p.NewSeq()
	if err := s.Grow(5); err != nil {
		t.Fatal(err)
	}
	fill(s, 0, 5)
	if k, _ := at(s, 1, 3); k[0] != 3 || k[1] != 1 || k[3] != 2 {
		t.Fatalf("key (1, 3) from an F16 pool = %v", k)
	}
	kb, vb := make([]float32, 16), make([]float32, 16)
	k, v := s.BlockKV(0, 1, kb, vb)
	if k[0] != 4 || v[0] != -4 {
		t.Fatalf("BlockKV row 0 of block 1 = %v / %v, want position 4", k[:4], v[:4])
	}
	hk, hv := s.BlockHalves(0, 1)
	for i := range hk {
		if kernels.FP16ToFP32(hk[i]) != k[i] || kernels.FP16ToFP32(hv[i]) != v[i] {
			t.Fatalf("BlockHalves(0, 1)[%d] = %#04x / %#04x, BlockKV has %v / %v", i, hk[i], hv[i], k[i], v[i])
		}
	}
	if hk, hv := pool(t, ggml.F32, 1).NewSeq().BlockHalves(0, 0); hk != nil || hv != nil {
		t.Fatalf("BlockHalves of an F32 pool = %v, %v, want nil", hk, hv)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Layers: 0, KVDim: 4, Budget: 1 << 20},
		{Layers: 1, KVDim: 4, Budget: 10},
		{Layers: 1, KVDim: 4, Budget: 1 << 20, Type: ggml.Q8_0},
	} {
		if _, err := NewPool(c); err == nil {
			t.Errorf("NewPool(%+v) accepted a bad configuration", c)
		}
	}
}

// TestBudgetBeyondMemory checks that a budget the system cannot map is an error naming
// it: a typo of a few zeros in --kv-budget, 128 TiB here, more than a 47-bit address
// space holds, so that no overcommit setting maps it (with the default heuristic, any
// budget well above RAM is refused). The whole budget is mapped up front; the Go heap,
// the fallback for a refused mapping, ended the process with "out of memory", where
// the pool used to allocate its blocks as they were used.
func TestBudgetBeyondMemory(t *testing.T) {
	// Blocks of 64 MiB (Llama 2 7B's shape), so that the per-block tables stay small.
	_, err := NewPool(Config{Layers: 32, KVDim: 4096, Budget: 1 << 47})
	if err == nil || !strings.Contains(err.Error(), "140737488355328") {
		t.Fatalf("NewPool of a 128 TiB budget = %v, want an error naming the budget", err)
	}
}

func TestReserve(t *testing.T) {
	for _, typ := range []ggml.Type{ggml.F32, ggml.F16} {
		p := pool(t, typ, 3)
		if got := p.Reserve(5); got != 2 {
			t.Fatalf("%v: Reserve(5 positions) gave %d blocks storage, want 2", typ, got)
		}
		if st := p.Stats(); st.Used != 0 || st.Free != 3 {
			t.Fatalf("%v: Reserve changed occupancy: %+v", typ, st)
		}
		if got := p.Reserve(100); got != 3 {
			t.Fatalf("%v: Reserve past the budget gave %d blocks, want the 3 the budget holds", typ, got)
		}
		s := p.NewSeq()
		if err := s.Grow(12); err != nil {
			t.Fatalf("%v: reserved blocks are not usable: %v", typ, err)
		}
		fill(s, 0, 12)
		if k, v := at(s, 1, 9); k[0] != 9 || v[0] != -9 {
			t.Fatalf("%v: (1, 9) = %v, %v in a reserved block", typ, k, v)
		}
		if err := s.Grow(1); !errors.Is(err, ErrExhausted) {
			t.Fatalf("%v: Grow past the budget after Reserve = %v, want ErrExhausted", typ, err)
		}
		s.Release()
	}
}

// TestPoolOutsideHeap checks that a pool's blocks are not Go heap objects: a cache of
// 64 MiB in the heap would raise the collector's heap goal by as much, letting that much
// garbage build up in a serving process before a collection.
func TestPoolOutsideHeap(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := heap()
	p, err := NewPool(Config{Layers: 8, KVDim: 256, Budget: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Reserve(1 << 20); got != p.Stats().Total {
		t.Fatalf("Reserve made %d blocks, want all %d", got, p.Stats().Total)
	}
	s := p.NewSeq()
	if err := s.Grow(70); err != nil {
		t.Fatal(err)
	}
	k := []float32{1, 2, 3, 4}
	s.Put(7, 69, append(k, make([]float32, 252)...), make([]float32, 256))
	if kk, _ := s.BlockKV(7, 1, nil, nil); kk[5*256+2] != 3 {
		t.Fatalf("key read back as %v", kk[5*256:5*256+4])
	}
	if grew := int64(heap()) - int64(before); grew > 1<<20 {
		t.Fatalf("the Go heap grew by %d bytes for a 64 MiB pool", grew)
	}
	runtime.KeepAlive(s)
}
