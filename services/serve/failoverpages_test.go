package serve_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
)

// TestClientGoneDuringFailover (issue 12, point 4): the verifier serving a request is
// killed mid-stream and the router resumes the request on the other one; the client
// goes at once, or once the first resumed tokens reach it. The surviving verifier
// frees every KV block the resumed request held and runs or queues nothing
// (kv_blocks_free and queue_depth back where they were), and it stopped computing
// when the client went: its prefix cache holds no more of the request than was
// computed by then.
func TestClientGoneDuringFailover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after int // resumed tokens the client reads before it goes
	}{{"at the failover", 0}, {"after resumed tokens", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			s, victim, text := twoVerifiers(t)
			const n = 200
			prompt := s.target.Tok.Encode(text, true)
			want := s.plainIDs(t, prompt, n, sample.Params{})
			if len(want) != n {
				t.Fatalf("plain decoding ends after %d tokens; the test needs %d", len(want), n)
			}
			cc, err := services.Dial(s.verifier)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			survivor := speculationv1.NewVerifierServiceClient(cc)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := s.client.Generate(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, Speculation: &specdv1.SpeculationOptions{Gamma: 4}})
			if err != nil {
				t.Fatal(err)
			}
			got, killedAt := 0, -1
			for {
				msg, err := st.Recv()
				if err != nil {
					t.Fatalf("after %d tokens: %v", got, err)
				}
				if msg.GetFinal() != nil {
					t.Fatal("the request ended before the client went")
				}
				got += len(msg.GetChunk().GetTokenIds())
				if killedAt < 0 && got >= 10 {
					victim.kill(t)
					killedAt = got
				}
				if killedAt >= 0 && got-killedAt >= tc.after {
					break
				}
			}
			cancel()
			for {
				if _, err := st.Recv(); err != nil {
					if status.Code(err) != codes.Canceled {
						t.Fatalf("after the client went: %v, want CANCELED", err)
					}
					break
				}
			}
			var last *speculationv1.InfoResponse
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if last, err = survivor.Info(context.Background(), &speculationv1.InfoRequest{}); err != nil {
					t.Fatal(err)
				}
				if last.GetKvBlocksFree() == last.GetKvBlocksTotal() && last.GetQueueDepth() == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("surviving verifier: %d of %d KV blocks free, %d requests running or queued 10 s after the client went",
						last.GetKvBlocksFree(), last.GetKvBlocksTotal(), last.GetQueueDepth())
				}
			}
			// The whole sequence the request would have computed, asked of the survivor
			// (the router's only verifier now).
			r, err := s.generate(context.Background(), &specdv1.GenerateRequest{PromptIds: slices.Concat(prompt, want[:n-1]), MaxTokens: 1,
				Speculation: &specdv1.SpeculationOptions{Disabled: true}})
			if err != nil {
				t.Fatal(err)
			}
			// Not to its end: the client may read late on a loaded machine, so the
			// bound is loose; a verifier that ignores the client's going computes all.
			if c := int(r.final.GetStats().GetCachedPromptTokens()); c >= len(prompt)+n-10 {
				t.Errorf("the resumed request went on after its client went: %d of the %d positions it would have computed are cached", c, len(prompt)+n-1)
			}
		})
	}
}
