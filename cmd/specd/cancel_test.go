package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
)

// TestClientCancelIsNoDraftRefusal: clients that cancel speculating requests end their
// draft streams with them; the verifier takes that as the requests ending, not as the
// draft refusing their sessions. (A cancelled draft stream ends CANCELLED, a status
// and no context error: four Node clients cancelling after their first tokens logged
// "draft refused the session, decoding plainly" four times, and each request's span
// got a refusal event.)
func TestClientCancelIsNoDraftRefusal(t *testing.T) {
	addr, logs := startUpLogged(t, "", "--log-level", "info")
	cc, err := services.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := specdv1.NewGenerationServiceClient(cc)
	const streams = 4
	errs := make(chan error, streams)
	for i := range streams {
		go func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			seed := uint64(i)
			st, err := c.Generate(ctx, &specdv1.GenerateRequest{Prompt: fmt.Sprintf("Once upon a time %d", i), IgnoreEos: true,
				Sampling: &specdv1.SamplingParams{Temperature: 1, Seed: &seed}, Speculation: &specdv1.SpeculationOptions{Gamma: 4}})
			for tokens := 0; err == nil && tokens < 3; {
				var msg *specdv1.GenerateResponse
				msg, err = st.Recv()
				tokens += len(msg.GetChunk().GetTokenIds())
			}
			if err != nil {
				errs <- fmt.Errorf("request %d before its cancel: %w", i, err)
				return
			}
			cancel()
			for err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != codes.Canceled {
				errs <- fmt.Errorf("request %d after its cancel: %w, want CANCELLED", i, err)
				return
			}
			errs <- nil
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The verifier ends each draft stream after the cancel reaches it: give it time.
	time.Sleep(500 * time.Millisecond)
	for _, line := range strings.Split(logs(), "\n") {
		if strings.Contains(line, "draft refused") || strings.Contains(line, "draft unavailable") {
			t.Errorf("a client's cancel logged as the draft's doing: %s", line)
		}
	}
}
