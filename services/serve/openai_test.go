package serve_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/openaihttp"
)

// openaiClient is the official OpenAI client pointed at the stack's front door, with
// retries off so that each error is the server's first answer.
func (s *stack) openaiClient() openai.Client {
	return openai.NewClient(option.WithBaseURL(s.http), option.WithAPIKey("sk-unused"), option.WithMaxRetries(0))
}

func completionParams(prompt string, maxTokens int64, temp float64) openai.CompletionNewParams {
	return openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		MaxTokens: openai.Int(maxTokens), Temperature: openai.Float(temp)}
}

// specdUsage decodes the extra usage.specd field of a response's usage.
func specdUsage(t *testing.T, u openai.CompletionUsage) openaihttp.SpecdUsage {
	t.Helper()
	f, ok := u.JSON.ExtraFields["specd"]
	if !ok {
		t.Fatalf("usage has no specd field: %s", u.RawJSON())
	}
	var su openaihttp.SpecdUsage
	if err := json.Unmarshal([]byte(f.Raw()), &su); err != nil {
		t.Fatalf("usage.specd %s: %v", f.Raw(), err)
	}
	return su
}

// streamed runs a streamed completion and returns its text, its finish reasons in
// order, the usage of its last chunk and how many chunks carried choices.
func streamed(t *testing.T, c openai.Client, p openai.CompletionNewParams) (text string, finishes []string, usage openai.CompletionUsage, chunks int) {
	t.Helper()
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := c.Completions.NewStreaming(context.Background(), p)
	var last openai.Completion
	for st.Next() {
		last = st.Current()
		if len(last.Choices) > 0 {
			chunks++
			if last.Usage.TotalTokens != 0 {
				t.Errorf("a chunk with choices carries usage %s", last.Usage.RawJSON())
			}
		}
		for _, ch := range last.Choices {
			text += ch.Text
			if ch.FinishReason != "" {
				finishes = append(finishes, string(ch.FinishReason))
			}
		}
	}
	if err := st.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(last.Choices) != 0 {
		t.Errorf("last chunk has %d choices, want 0 (the usage chunk)", len(last.Choices))
	}
	return text, finishes, last.Usage, chunks
}

// TestOpenAICompletions: the official OpenAI client against `specd up`'s front door —
// real router, verifier and draft on loopback — gets what the gRPC API gives for the
// same request, streamed and not, with usage and speculation statistics, stop strings,
// seeds, and OpenAI-shaped errors naming the parameter.
func TestOpenAICompletions(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	c := s.openaiClient()
	ctx := context.Background()
	const prompt = "Once upon a time there was a"

	want, err := s.client.Complete(ctx, request(prompt, 24, 0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("greedy, as the gRPC API", func(t *testing.T) {
		resp, err := c.Completions.New(ctx, completionParams(prompt, 24, 0))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Text != want.GetText() || resp.Choices[0].FinishReason != "length" {
			t.Fatalf("choices = %+v, want one with text %q and finish length", resp.Choices, want.GetText())
		}
		u, ws := resp.Usage, want.GetStats()
		if u.PromptTokens != int64(ws.GetPromptTokens()) || u.CompletionTokens != 24 || u.TotalTokens != u.PromptTokens+24 {
			t.Errorf("usage = %s, want %d prompt and 24 completion tokens", u.RawJSON(), ws.GetPromptTokens())
		}
		su := specdUsage(t, u)
		if su.AcceptedTokens > su.DraftedTokens || su.Verifier != s.verifier || su.TotalMS <= 0 {
			t.Errorf("usage.specd = %+v: want accepted ≤ drafted, verifier %s, a total time", su, s.verifier)
		}
		if resp.Model != "specd-target" || resp.Object != "text_completion" || !strings.HasPrefix(resp.ID, "cmpl-") {
			t.Errorf("model %q, object %q, id %q", resp.Model, resp.Object, resp.ID)
		}
	})

	t.Run("streamed, with usage", func(t *testing.T) {
		text, finishes, u, chunks := streamed(t, c, completionParams(prompt, 24, 0))
		if text != want.GetText() || strings.Join(finishes, ",") != "length" || chunks < 2 {
			t.Errorf("stream: text %q over %d chunks, finishes %v; want %q and one length", text, chunks, finishes, want.GetText())
		}
		if u.CompletionTokens != 24 || u.PromptTokens != int64(want.GetStats().GetPromptTokens()) {
			t.Errorf("usage chunk = %s", u.RawJSON())
		}
		specdUsage(t, u)
	})

	t.Run("stop", func(t *testing.T) {
		full := want.GetText()
		stop := full[len(full)/2 : len(full)/2+3]
		cut := full[:strings.Index(full, stop)]
		p := completionParams(prompt, 24, 0)
		p.Stop = openai.CompletionNewParamsStopUnion{OfStringArray: []string{"never in this text", stop}}
		resp, err := c.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Text != cut || resp.Choices[0].FinishReason != "stop" {
			t.Errorf("stop %q: text %q finish %s, want %q stop", stop, resp.Choices[0].Text, resp.Choices[0].FinishReason, cut)
		}
		text, finishes, _, _ := streamed(t, c, p)
		if text != cut || strings.Join(finishes, ",") != "stop" {
			t.Errorf("streamed with stop %q: text %q finishes %v, want %q stop", stop, text, finishes, cut)
		}
	})

	t.Run("seed reproduces", func(t *testing.T) {
		p := completionParams("The king said", 24, 0.9)
		p.Seed = openai.Int(1234)
		p.TopP = openai.Float(0.95)
		a, err := c.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		text, _, _, _ := streamed(t, c, p)
		if a.Choices[0].Text != b.Choices[0].Text || text != a.Choices[0].Text {
			t.Errorf("seed 1234 gave %q, %q and streamed %q; want the same text", a.Choices[0].Text, b.Choices[0].Text, text)
		}
		seed := uint64(1234)
		topP := float32(0.95)
		g, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: "The king said", MaxTokens: 24,
			Sampling: &specdv1.SamplingParams{Temperature: 0.9, TopP: &topP, Seed: &seed}})
		if err != nil {
			t.Fatal(err)
		}
		if g.GetText() != a.Choices[0].Text {
			t.Errorf("seed 1234 over HTTP gave %q, over gRPC %q", a.Choices[0].Text, g.GetText())
		}
	})

	t.Run("token ids", func(t *testing.T) {
		p := completionParams("", 24, 0)
		p.Prompt = openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(want.GetPromptIds())}
		resp, err := c.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Text != want.GetText() {
			t.Errorf("prompt as ids: %q, want %q", resp.Choices[0].Text, want.GetText())
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			edit   func(*openai.CompletionNewParams)
			status int
			param  string
			code   string
		}{
			{"temperature above 2", func(p *openai.CompletionNewParams) { p.Temperature = openai.Float(3) }, 400, "temperature", ""},
			{"top_p above 1 (the router's check)", func(p *openai.CompletionNewParams) { p.TopP = openai.Float(1.5) }, 400, "top_p", ""},
			{"beyond the context (the verifier's check)", func(p *openai.CompletionNewParams) { p.MaxTokens = openai.Int(600) }, 400, "max_tokens", ""},
			{"token id outside the vocabulary", func(p *openai.CompletionNewParams) {
				p.Prompt = openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{1, 99999}}
			}, 400, "prompt", ""},
			{"n = 17", func(p *openai.CompletionNewParams) { p.N = openai.Int(17) }, 400, "n", ""},
			{"unknown model", func(p *openai.CompletionNewParams) { p.Model = "gpt-17" }, 404, "model", "model_not_found"},
		} {
			p := completionParams(prompt, 8, 0)
			tc.edit(&p)
			_, err := c.Completions.New(ctx, p)
			var e *openai.Error
			if !errors.As(err, &e) || e.StatusCode != tc.status || e.Param != tc.param || e.Code != tc.code || e.Type != "invalid_request_error" {
				t.Errorf("%s: %v, want %d invalid_request_error param %q code %q", tc.name, err, tc.status, tc.param, tc.code)
			}
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != "specd-target" {
			t.Errorf("models = %+v, want the verifier's model alone", page.Data)
		}
		_, err = c.Models.Get(ctx, "specd-draft")
		var e *openai.Error
		if !errors.As(err, &e) || e.StatusCode != 404 {
			t.Errorf("Models.Get(draft) = %v, want 404: a draft cannot be requested", err)
		}
	})
}

func int64s(ids []int32) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

// TestOpenAICancelFreesRequest: an HTTP client that goes away mid-stream cancels the
// router's call, and the verifier frees the request's KV blocks.
func TestOpenAICancelFreesRequest(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	c := s.openaiClient()
	cc, err := services.Dial(s.verifier)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := c.Completions.NewStreaming(ctx, completionParams("Once upon a time there was a", 400, 0))
	if !st.Next() {
		t.Fatalf("no first chunk: %v", st.Err())
	}
	info, err := speculationv1.NewVerifierServiceClient(cc).Info(context.Background(), &speculationv1.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetQueueDepth() == 0 || info.GetKvBlocksFree() == info.GetKvBlocksTotal() {
		t.Fatalf("mid-stream the verifier reports queue %d and %d of %d KV blocks free: the request is not running", info.GetQueueDepth(), info.GetKvBlocksFree(), info.GetKvBlocksTotal())
	}
	cancel()
	for st.Next() {
	}
	st.Close()
	waitIdle(t, cc)
}

// TestOpenAIStreamNamesModel: a request that names no model is answered by the
// router's choice, and every chunk of its stream says which model that is, as the
// unstreamed response does and OpenAI's API always does (the chunks said "").
func TestOpenAIStreamNamesModel(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t)})
	c := s.openaiClient()
	ctx := context.Background()
	p := completionParams("Once upon a time", 4, 0)
	p.Model = ""
	st := c.Completions.NewStreaming(ctx, p)
	n := 0
	for st.Next() {
		n++
		if m := st.Current().Model; m != s.target.Name {
			t.Errorf("completion chunk %d: model %q, want %q", n, m, s.target.Name)
		}
	}
	if err := st.Err(); err != nil || n == 0 {
		t.Fatalf("completion stream: %d chunks, %v", n, err)
	}
	cs := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		MaxTokens: openai.Int(4)})
	acc := openai.ChatCompletionAccumulator{}
	for cs.Next() {
		acc.AddChunk(cs.Current())
		if m := cs.Current().Model; m != s.target.Name {
			t.Errorf("chat chunk: model %q, want %q", m, s.target.Name)
		}
	}
	if err := cs.Err(); err != nil || acc.Model != s.target.Name {
		t.Errorf("chat stream: accumulated model %q, %v; want %q", acc.Model, err, s.target.Name)
	}
}
