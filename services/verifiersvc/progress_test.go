package verifiersvc_test

import (
	"errors"
	"io"
	"testing"
	"time"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services/verifiersvc"
	"google.golang.org/protobuf/proto"
)

// TestProgressAsFinalStats: the progress a verifier sends with its chunks only grows,
// reaches the router before the request ends (so a failover can carry it over), and
// the progress sent with the final message counts what the final stats report.
func TestProgressAsFinalStats(t *testing.T) {
	checkLeaks(t)
	draft := startDraft(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Drafts: router.NewStatic(router.Endpoint{Address: draft, Role: router.Draft}),
		Engine: verifiersvc.EngineConfig{Threads: 1}})
	// A just-started draft on a busy machine may first propose after a request has
	// ended (see TestRealDraftProposalsPass): try a few times.
	for try := 1; ; try++ {
		st, err := client.Generate(ctx, &speculationv1.GenerateRequest{DraftAddress: draft, Request: &specdv1.GenerateRequest{
			Prompt: "Once upon a time", MaxTokens: 64, Speculation: &specdv1.SpeculationOptions{Gamma: 4}}})
		if err != nil {
			t.Fatal(err)
		}
		var last, final *speculationv1.Progress
		var stats *specdv1.Stats
		early := 0 // chunks whose progress counted verified rounds
		for {
			msg, err := st.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			p := msg.GetProgress()
			if f := msg.GetFinal(); f != nil {
				stats, final = f.GetStats(), p
				if p == nil {
					t.Fatal("the final message carries no progress")
				}
			} else if p != nil && p.GetRounds() > 0 {
				early++
			}
			if p == nil {
				continue
			}
			if last != nil && (p.GetRounds() < last.GetRounds() || p.GetDraftedTokens() < last.GetDraftedTokens() ||
				p.GetAcceptedTokens() < last.GetAcceptedTokens() || p.GetRoundTrips() < last.GetRoundTrips()) {
				t.Fatalf("progress went back: %v after %v", p, last)
			}
			if last != nil && proto.Equal(p, last) && msg.GetFinal() == nil {
				t.Errorf("a chunk repeats the progress already sent: %v", p)
			}
			last = p
		}
		want := &speculationv1.Progress{
			Rounds: stats.GetRounds(), DraftedTokens: stats.GetDraftedTokens(), AcceptedTokens: stats.GetAcceptedTokens(),
			LookupTokens: stats.GetLookupTokens(), LookupAcceptedTokens: stats.GetLookupAcceptedTokens(),
			Fallbacks: stats.GetFallbacks(), DraftRefusals: stats.GetDraftRefusals(),
			RoundTrips: final.GetRoundTrips(), RoundTripTotal: final.GetRoundTripTotal(), QueueWait: stats.GetQueueWait(),
		}
		if !proto.Equal(final, want) {
			t.Fatalf("final progress %v, want the final stats' counts %v", final, want)
		}
		if n := final.GetRoundTrips(); n > 0 {
			if mean := final.GetRoundTripTotal().AsDuration() / time.Duration(n); mean != stats.GetMeanRoundTrip().AsDuration() {
				t.Errorf("round trips: %d summing %v, a mean of %v; the stats report %v", n, final.GetRoundTripTotal().AsDuration(), mean, stats.GetMeanRoundTrip().AsDuration())
			}
		}
		if stats.GetRounds() >= 2 {
			if early == 0 {
				t.Errorf("%d rounds verified, but no chunk before the final message reported one", stats.GetRounds())
			}
			return
		}
		if try == 40 {
			t.Fatalf("fewer than two rounds verified in %d requests", try)
		}
	}
}
