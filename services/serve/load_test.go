package serve_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
)

// TestConcurrentEqualsSolo (issue 12, point 2): 32 requests sent at once through
// router, draft and verifier — greedy and seeded, with filters and penalties,
// speculative at fixed and adaptive γ and plain, of lengths from 8 to 48 tokens, many
// sharing a prompt — each commit exactly what plain decoding of it alone commits
// (`specd run`), and the log-probabilities of a token are the same under load as in a
// request alone. Seeded requests are in coupled mode, whose tokens are plain
// decoding's; rejection mode is exact in distribution only.
func TestConcurrentEqualsSolo(t *testing.T) {
	s := startStack(t)
	ps := benchPrompts(t)
	const clients = 32
	maxN := 48
	if testing.Short() {
		maxN = 24
	}
	type job struct {
		name string
		req  *specdv1.GenerateRequest
		want []int32
		got  result
		err  error
	}
	coupled := specdv1.VerificationMode_VERIFICATION_MODE_COUPLED
	jobs := make([]*job, clients)
	for i := range jobs {
		text := ps[i%8].Prompt // four requests per prompt: the prefix cache is shared too
		n := 8 + (i*7)%(maxN-7)
		var sp sample.Params
		so := &specdv1.SpeculationOptions{}
		switch i % 4 {
		case 0: // greedy, adaptive γ
			sp = sample.Params{TopP: 1}
		case 1: // seeded with every filter, γ 4
			sp = sample.Params{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.02, Seed: uint64(100 + i)}
			so = &specdv1.SpeculationOptions{Gamma: 4, Mode: coupled}
		case 2: // seeded with penalties, adaptive γ
			sp = sample.Params{Temperature: 1, TopP: 1, Seed: uint64(100 + i), RepetitionPenalty: 1.1, FrequencyPenalty: 0.2, PresencePenalty: 0.1}
			so = &specdv1.SpeculationOptions{Mode: coupled}
		case 3: // plain: greedy or seeded
			sp = sample.Params{TopP: 1}
			if i%8 == 7 {
				sp = sample.Params{Temperature: 0.7, TopP: 0.9, Seed: uint64(100 + i)}
			}
			so = &specdv1.SpeculationOptions{Disabled: true}
		}
		req := &specdv1.GenerateRequest{Prompt: text, MaxTokens: uint32(n), Sampling: services.SamplingToProto(sp), Speculation: so}
		if i%5 == 0 {
			req.Logprobs, req.TopLogprobs = true, 2
		}
		jobs[i] = &job{name: fmt.Sprintf("request %d (%s, %d tokens, %+v, %v)", i, ps[i%8].ID, n, sp, so), req: req, want: s.plain(t, text, n, sp)}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, j := range jobs {
		wg.Go(func() {
			<-start
			j.got, j.err = s.generate(context.Background(), j.req)
		})
	}
	close(start)
	wg.Wait()
	drafted := 0
	for _, j := range jobs {
		if j.err != nil {
			t.Errorf("%s: %v", j.name, j.err)
			continue
		}
		drafted += int(j.got.final.GetStats().GetDraftedTokens())
		if !slices.Equal(j.got.ids, j.want) {
			t.Errorf("%s under load:\n got %v\nwant %v (alone, plain)", j.name, j.got.ids, j.want)
		}
	}
	if drafted == 0 {
		t.Error("no draft token was judged under load: speculation went untested")
	}
	// Log-probabilities under load equal those of the same request alone.
	for _, j := range jobs {
		if !j.req.GetLogprobs() || j.err != nil {
			continue
		}
		alone, err := s.generate(context.Background(), j.req)
		if err != nil {
			t.Fatalf("%s alone: %v", j.name, err)
		}
		if len(alone.logprobs) != len(j.got.logprobs) || len(alone.logprobs) == 0 {
			t.Errorf("%s: %d log-probabilities under load, %d alone", j.name, len(j.got.logprobs), len(alone.logprobs))
			continue
		}
		for k, a := range alone.logprobs {
			b := j.got.logprobs[k]
			if a.GetLogprob() != b.GetLogprob() || len(a.GetTop()) != len(b.GetTop()) {
				t.Errorf("%s token %d: logprobs %v under load, %v alone", j.name, k, b, a)
				continue
			}
			for m := range a.GetTop() {
				if a.GetTop()[m].GetTokenId() != b.GetTop()[m].GetTokenId() || a.GetTop()[m].GetLogprob() != b.GetTop()[m].GetLogprob() {
					t.Errorf("%s token %d: top logprobs %v under load, %v alone", j.name, k, b.GetTop(), a.GetTop())
					break
				}
			}
		}
	}
}
