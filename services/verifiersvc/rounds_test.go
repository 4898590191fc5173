package verifiersvc_test

import (
	"context"
	"io"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/telemetry"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// TestRoundSpansAfterManyStaleRounds: a verifier times each draft round from its
// arrival to its verdict, for the round's span, however many rounds came and went
// unverified before it. A draft sends 70 rounds the verifier drops as stale (proposed
// far ahead of it), then one with a wrong first token, which draws a rollback, and
// answers that verdict at once with a fresh round of the verifier's own tokens: the span of that round carries
// its round trip, from the verdict to the round's arrival.
func TestRoundSpansAfterManyStaleRounds(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "specd-verifier", Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	tel.TracerProvider.RegisterSpanProcessor(spans)
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	fake := &fakeDraft{}
	draft := startFakeDraft(t, fake)
	cfg := verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}), Engine: verifiersvc.EngineConfig{Threads: 1}}
	ctx, client := startVerifierWith(t, 32<<20, func(w *serve.Worker) { w.Tel = tel }, cfg)
	const n, stale, vocab = 60, 70, 4096 // vocab: specd-target-q8_0.gguf's
	req := func(spec *specdv1.SpeculationOptions) *speculationv1.GenerateRequest {
		return &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: n, Speculation: spec}}
	}
	want, _, err := generateAll(ctx, client, req(&specdv1.SpeculationOptions{Disabled: true}))
	if err != nil {
		t.Fatal(err)
	}
	fake.speculate = func(start *speculationv1.Start, stream speculationv1.DraftService_SpeculateServer) error {
		ctxLen := uint32(len(start.GetContextIds()))
		propose := func(p *speculationv1.Proposal) error {
			return stream.Send(&speculationv1.SpeculateResponse{Kind: &speculationv1.SpeculateResponse_Proposal{Proposal: p}})
		}
		for r := range uint64(stale) {
			if err := propose(&speculationv1.Proposal{Round: r + 1, StartPosition: ctxLen + 1000, Tokens: []int32{1}}); err != nil {
				return nil
			}
		}
		if err := propose(&speculationv1.Proposal{Round: stale + 1, StartPosition: ctxLen, Tokens: []int32{(want[0] + 1) % vocab}}); err != nil {
			return nil
		}
		msg, err := stream.Recv()
		if err != nil {
			return nil
		}
		v := msg.GetVerdict()
		at := v.GetPosition() + uint32(len(v.GetTokens()))
		if err := propose(&speculationv1.Proposal{Round: stale + 2, BaseSeq: v.GetSeq(), StartPosition: at, Tokens: want[at-ctxLen:]}); err != nil {
			return nil
		}
		for {
			if _, err := stream.Recv(); err != nil {
				return nil
			}
		}
	}
	if _, stats, err := generateAll(ctx, client, req(&specdv1.SpeculationOptions{Gamma: 8})); err != nil || stats.GetRounds() == 0 {
		t.Fatalf("with the draft: stats %v, err %v; want its fresh round verified", stats, err)
	}
	found := false
	for _, s := range spans.Ended() {
		if s.Name() != "speculation.round" {
			continue
		}
		attrs := map[string]float64{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.AsFloat64() + float64(a.Value.AsInt64())
		}
		if attrs["specd.round"] != stale+2 {
			continue
		}
		found = true
		if rtt := attrs["specd.round_trip_seconds"]; rtt <= 0 {
			t.Errorf("round %d, fresh after a verdict: round trip %v s, want the time from the verdict to its arrival", stale+2, rtt)
		}
	}
	if !found {
		t.Fatalf("no span of round %d", stale+2)
	}
}
