package services

import (
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// Info describes a service's model and capacity.
func Info(e *Engine, role string) *speculationv1.InfoResponse {
	m := e.Model
	st := e.KV.Stats()
	active, waiting := e.Load()
	return &speculationv1.InfoResponse{
		Model: &specdv1.ModelInfo{
			Name: m.Name, Role: role, Architecture: m.Arch, Quantization: m.Quant.String(),
			ContextLength: uint32(m.Context), VocabSize: uint32(m.Vocab), TokenizerHash: m.Tok.Hash(), Parameters: m.Parameters,
		},
		KvBlocksTotal: uint64(st.Total), KvBlocksFree: uint64(st.Free + st.Cached), QueueDepth: uint32(active + waiting),
	}
}
