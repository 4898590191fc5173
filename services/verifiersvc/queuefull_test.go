package verifiersvc_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/specd-dev/specd/services/verifiersvc"
	"github.com/specd-dev/specd/verifier"
)

// TestQueueFullOnlyWhenFull (issue 12, point 4: RESOURCE_EXHAUSTED only when the
// budget and the queue are truly full): with room to run eight requests and a queue of
// one, a burst of eight requests that arrive together is served whole — none refused
// because the queue filled up before the engine's next step admitted what it held.
func TestQueueFullOnlyWhenFull(t *testing.T) {
	checkLeaks(t)
	ctx, client := startVerifier(t, verifiersvc.Config{Engine: verifiersvc.EngineConfig{Threads: 1,
		Sched: verifier.Config{MaxRunning: 9, MaxQueue: 1}}})
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, 8)
		start := make(chan struct{})
		for i := range errs {
			wg.Go(func() {
				<-start
				errs[i] = generatePlain(ctx, client, fmt.Sprintf("Story %d of round %d. Once upon a time", i, round), 24)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, request %d of 8 with room for 9: %v", round, i, err)
			}
		}
	}
}
