package serve_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TestStopAfterToolCallExact: stop_after_tool_call ends the text with the token that
// closes the first call's JSON, for both syntaxes, text before the call or not, and
// speculation does not change where (identical tokens with and without it, greedy and
// seeded: Leviathan et al. 2023, section 2.3, exactness); a max_tokens that cuts the
// first call ends at the length. Under 16 concurrent requests — these and prefills
// (continue_final_message) — every output is the one it has alone.
func TestStopAfterToolCallExact(t *testing.T) {
	s := startStackWith(t, stackOptions{chat: qwenChat(t)})
	ctx := context.Background()
	tools := []*specdv1.Tool{{Type: "function", Function: &specdv1.FunctionDefinition{Name: "get_weather",
		Parameters: `{"type": "object", "properties": {"city": {"type": "string"}}}`}}}
	hermes := `<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "[a-zA-Z ]{1,12}"\}\}\n</tool_call>`
	llama := `\{"name": "get_weather", "parameters": \{"city": "[a-zA-Z ]{1,12}"\}\}`
	var reqs []*specdv1.GenerateRequest
	for _, c := range []struct{ syntax, regex string }{
		{"hermes", hermes + "\n" + hermes},
		{"hermes", `(Let me see\.|Checking\.)\n` + hermes + "\n" + hermes},
		{"llama3_json", llama + "; " + llama},
	} {
		seeds := uint64(3) // greedy, then seeded sampling
		if testing.Short() {
			seeds = 2
		}
		for seed := range seeds {
			sp := &specdv1.SamplingParams{}
			if seed > 0 {
				sp = &specdv1.SamplingParams{Temperature: 1, Seed: &seed}
			}
			reqs = append(reqs, &specdv1.GenerateRequest{Model: "specd-target", MaxTokens: 200, Sampling: sp, StopAfterToolCall: c.syntax,
				Messages: []*specdv1.ChatMessage{{Role: "user", Content: "How warm is it in Paris?"}}, Tools: tools,
				ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: c.regex}})
		}
	}
	type out struct {
		ids    []int32
		text   string
		finish specdv1.FinishReason
	}
	run := func(req *specdv1.GenerateRequest) (out, error) {
		r, err := s.client.Complete(ctx, req)
		return out{r.GetTokenIds(), r.GetText(), r.GetFinishReason()}, err
	}
	solo := make([]out, len(reqs))
	for i, req := range reqs {
		spec, err := run(req)
		if err != nil {
			t.Fatal(err)
		}
		plain := proto.Clone(req).(*specdv1.GenerateRequest)
		plain.Speculation = &specdv1.SpeculationOptions{Disabled: true}
		want, err := run(plain)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(spec.ids, want.ids) || spec.finish != want.finish {
			t.Errorf("%s %q: speculating %v (%v), plainly %v (%v)", req.StopAfterToolCall, req.GetResponseFormat().GetRegex(), spec.ids, spec.finish, want.ids, want.finish)
		}
		if spec.finish != specdv1.FinishReason_FINISH_REASON_TOOL_CALL {
			t.Errorf("%s: finish %v after %q, want TOOL_CALL", req.StopAfterToolCall, spec.finish, spec.text)
		}
		// Cut inside the first call: the length ends it.
		short := proto.Clone(req).(*specdv1.GenerateRequest)
		short.MaxTokens = uint32(len(spec.ids) - 2)
		cut, err := run(short)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cut.ids, spec.ids[:short.MaxTokens]) || cut.finish != specdv1.FinishReason_FINISH_REASON_LENGTH {
			t.Errorf("%s, max_tokens %d: %v (%v), want %v (length)", req.StopAfterToolCall, short.MaxTokens, cut.ids, cut.finish, spec.ids[:short.MaxTokens])
		}
		solo[i] = spec
	}

	// Prefills beside them, each alone first.
	for i, prefill := range []string{"Once upon a time", "The dragon", "In a land far away", "Hello, my name is"} {
		seed := uint64(i)
		reqs = append(reqs, &specdv1.GenerateRequest{Model: "specd-target", MaxTokens: 24, ContinueFinalMessage: true,
			Sampling: &specdv1.SamplingParams{Temperature: 0.8, Seed: &seed}, Logprobs: true,
			Messages: []*specdv1.ChatMessage{{Role: "user", Content: "Tell me a story."}, {Role: "assistant", Content: prefill}}})
		o, err := run(reqs[len(reqs)-1])
		if err != nil {
			t.Fatal(err)
		}
		solo = append(solo, o)
	}
	for len(reqs) < 16 {
		reqs, solo = append(reqs, reqs[len(reqs)%9]), append(solo, solo[len(solo)%9])
	}
	var wg sync.WaitGroup
	errs := make([]error, len(reqs))
	for i, req := range reqs {
		wg.Go(func() {
			got, err := run(req)
			switch {
			case err != nil:
				errs[i] = err
			case !slices.Equal(got.ids, solo[i].ids) || got.text != solo[i].text || got.finish != solo[i].finish:
				errs[i] = fmt.Errorf("request %d concurrently: %q (%v), alone %q (%v)", i, got.text, got.finish, solo[i].text, solo[i].finish)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
