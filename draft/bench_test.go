package draft

import (
	"fmt"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/spec"
)

// BenchmarkDrafting measures drafting throughput (tokens drafted per second) of n
// greedy sessions, γ = 4, each at position 100: batched (a pass drafts a token of every
// session) against one at a time (a pass per token of each session, as the service
// drafted before the scheduler). Each iteration drafts one round of every session, then
// a verdict rolls every session back to its context, so positions stay put.
//
//	go test ./draft -run '^$' -bench Drafting -benchtime 200x
func BenchmarkDrafting(b *testing.B) {
	m, pool := loadDraft(b)
	const gamma, ctxLen = 4, 100
	ctx := make([]int32, ctxLen)
	for i := range ctx {
		ctx[i] = int32(100 + i%300)
	}
	opt := spec.Options{Gamma: gamma, MaxPosition: m.Context}
	// reset rolls s back to its context plus one token that differs from what it holds.
	reset := func(s *Session, seq uint64) spec.Verdict {
		t := int32(7)
		if s.seq[ctxLen] == t {
			t = 8
		}
		return spec.Verdict{Round: s.round, Seq: seq, Position: ctxLen, Tokens: []int32{t}, Rollback: true}
	}
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("sessions=%d/alone", n), func(b *testing.B) {
			kv, err := m.NewKVPool(int64(n+1)*8<<20, ggml.F32)
			if err != nil {
				b.Fatal(err)
			}
			st := m.NewState(pool, nil, 64)
			ss := make([]*Session, n)
			for i := range ss {
				st.Seq = kv.NewSeq()
				if ss[i], err = NewSession(st, ctx, opt); err != nil {
					b.Fatal(err)
				}
			}
			tokens, seq := 0, uint64(0)
			for b.Loop() {
				seq++
				for _, s := range ss {
					st.Seq = s.kv
					p, ok, err := s.Draft(nil)
					if err != nil || !ok {
						b.Fatalf("Draft: ok %v, err %v", ok, err)
					}
					tokens += len(p.Tokens)
					if err := s.Apply(reset(s, seq)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
		})
		b.Run(fmt.Sprintf("sessions=%d/batched", n), func(b *testing.B) {
			kv, err := m.NewKVPool(int64(n+1)*8<<20, ggml.F32)
			if err != nil {
				b.Fatal(err)
			}
			sc := NewScheduler(m.NewBatch(pool, 64+n), kv, Config{Depth: 1, Prefill: 64})
			for i := range n {
				if err := sc.Start(uint64(i), ctx, opt); err != nil {
					b.Fatal(err)
				}
			}
			tokens, seq := 0, uint64(0)
			for b.Loop() {
				seq++
				for done := 0; done < n; {
					sc.Step()
					for _, o := range sc.Ready(0) {
						if o.Err != nil {
							b.Fatal(o.Err)
						}
						tokens += len(o.Proposal.Tokens)
						done++
					}
				}
				for _, e := range sc.all {
					if err := sc.Apply(e.id, reset(e.s, seq)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
