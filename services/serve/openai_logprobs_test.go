package serve_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TestOpenAILogprobs: the official client asks for log-probabilities — `logprobs: N`
// of the completions API, `logprobs` and `top_logprobs` of the chat API, streamed and
// not — and gets the gRPC API's numbers for the same request, in OpenAI's shapes: the
// chosen tokens' text and log-probabilities, the likeliest tokens (with the chosen one
// in the completions API's maps), text offsets, and the chat API's bytes. (JSON
// carries each float32 in its shortest form, so the client's float64 converted back
// is the same float32.)
func TestOpenAILogprobs(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t)})
	c := s.openaiClient()
	ctx := context.Background()
	const prompt, n, top = "Once upon a time there was a", 20, 3

	req := request(prompt, n, 0, 0, 0)
	req.Logprobs, req.TopLogprobs = true, top
	want, err := s.client.Complete(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(want.GetLogprobs()) != n {
		t.Fatalf("gRPC: %d logprobs for %d tokens", len(want.GetLogprobs()), n)
	}
	checkCompletion := func(name string, lp openai.CompletionChoiceLogprobs, text string) {
		t.Helper()
		if len(lp.Tokens) != n || len(lp.TokenLogprobs) != n || len(lp.TopLogprobs) != n || len(lp.TextOffset) != n {
			t.Fatalf("%s: %d tokens, %d logprobs, %d tops, %d offsets; want %d of each", name, len(lp.Tokens), len(lp.TokenLogprobs), len(lp.TopLogprobs), len(lp.TextOffset), n)
		}
		joined, offset := "", int64(0)
		for i, w := range want.GetLogprobs() {
			if lp.Tokens[i] != w.GetText() || float32(lp.TokenLogprobs[i]) != w.GetLogprob() || lp.TextOffset[i] != offset {
				t.Errorf("%s: token %d = %q %v at %d, want %q %v at %d", name, i, lp.Tokens[i], lp.TokenLogprobs[i], lp.TextOffset[i], w.GetText(), w.GetLogprob(), offset)
			}
			for j, tl := range w.GetTop() {
				// Tokens that show the same text (control tokens show none) keep the
				// likeliest's entry.
				first := slices.IndexFunc(w.GetTop(), func(x *specdv1.TopLogprob) bool { return x.GetText() == tl.GetText() })
				if v, ok := lp.TopLogprobs[i][tl.GetText()]; !ok || first == j && float32(v) != tl.GetLogprob() {
					t.Errorf("%s: token %d: top %v lacks %q at %v", name, i, lp.TopLogprobs[i], tl.GetText(), tl.GetLogprob())
				}
			}
			if _, ok := lp.TopLogprobs[i][lp.Tokens[i]]; !ok || len(lp.TopLogprobs[i]) > top+1 {
				t.Errorf("%s: token %d: top %v: want the chosen %q among at most %d", name, i, lp.TopLogprobs[i], lp.Tokens[i], top+1)
			}
			joined += lp.Tokens[i]
			offset += int64(len([]rune(lp.Tokens[i])))
		}
		if joined != text {
			t.Errorf("%s: the tokens spell %q, the text is %q", name, joined, text)
		}
	}

	p := completionParams(prompt, n, 0)
	p.Logprobs = openai.Int(top)
	resp, err := c.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	checkCompletion("completion", resp.Choices[0].Logprobs, resp.Choices[0].Text)

	st := c.Completions.NewStreaming(ctx, p)
	var merged openai.CompletionChoiceLogprobs
	var text string
	for st.Next() {
		for _, ch := range st.Current().Choices {
			text += ch.Text
			lp := ch.Logprobs
			merged.Tokens = append(merged.Tokens, lp.Tokens...)
			merged.TokenLogprobs = append(merged.TokenLogprobs, lp.TokenLogprobs...)
			merged.TopLogprobs = append(merged.TopLogprobs, lp.TopLogprobs...)
			merged.TextOffset = append(merged.TextOffset, lp.TextOffset...)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	checkCompletion("streamed completion", merged, text)

	// Chat: the gRPC API's numbers for the same messages.
	msgs := []*specdv1.ChatMessage{{Role: "user", Content: "Once upon a time"}}
	creq := &specdv1.GenerateRequest{Model: "specd-target", MaxTokens: 16, Messages: msgs, Logprobs: true, TopLogprobs: top}
	cwant, err := s.client.Complete(ctx, creq)
	if err != nil {
		t.Fatal(err)
	}
	checkChat := func(name string, got []openai.ChatCompletionTokenLogprob) {
		t.Helper()
		if len(got) != len(cwant.GetLogprobs()) || len(got) != 16 {
			t.Fatalf("%s: %d logprobs, want 16", name, len(got))
		}
		for i, w := range cwant.GetLogprobs() {
			g := got[i]
			if g.Token != string(w.GetToken()) || float32(g.Logprob) != w.GetLogprob() || string(bytesOf(g.Bytes)) != string(w.GetToken()) || len(g.TopLogprobs) != top {
				t.Fatalf("%s: token %d = %+v, want %q %v with %d top", name, i, g, w.GetToken(), w.GetLogprob(), top)
			}
			for j, tl := range w.GetTop() {
				if g.TopLogprobs[j].Token != string(tl.GetToken()) || float32(g.TopLogprobs[j].Logprob) != tl.GetLogprob() {
					t.Errorf("%s: token %d top %d = %+v, want %q %v", name, i, j, g.TopLogprobs[j], tl.GetToken(), tl.GetLogprob())
				}
			}
		}
	}
	cp := chatParams(openai.UserMessage("Once upon a time"))
	cp.Logprobs, cp.TopLogprobs = openai.Bool(true), openai.Int(top)
	cresp, err := c.Chat.Completions.New(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	checkChat("chat", cresp.Choices[0].Logprobs.Content)
	cst := c.Chat.Completions.NewStreaming(ctx, cp)
	var content []openai.ChatCompletionTokenLogprob
	for cst.Next() {
		for _, ch := range cst.Current().Choices {
			content = append(content, ch.Logprobs.Content...)
		}
	}
	if err := cst.Err(); err != nil {
		t.Fatal(err)
	}
	checkChat("streamed chat", content)

	// Without asking, logprobs stay null.
	plain, err := c.Completions.New(ctx, completionParams(prompt, 4, 0))
	if err != nil {
		t.Fatal(err)
	}
	if raw := plain.Choices[0].JSON.Logprobs.Raw(); raw != "null" {
		t.Errorf("logprobs not asked for: %s, want null", raw)
	}
}

func bytesOf(v []int64) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

// TestOpenAIEcho: echo with logprobs, as evaluation harnesses score a text (lm-eval's
// loglikelihood: a prompt of token ids, echo, logprobs 1, max_tokens 0 or 1): the
// text starts with the prompt, and token_logprobs cover the prompt's tokens — the first
// null — with the gRPC API's prompt log-probabilities, then the generated tokens'.
func TestOpenAIEcho(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	c := s.openaiClient()
	ctx := context.Background()
	const prompt = "Once upon a time there was a"
	want, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: prompt, MaxTokens: 1, Logprobs: true, TopLogprobs: 1, PromptLogprobs: true})
	if err != nil {
		t.Fatal(err)
	}
	ids := want.GetPromptIds()
	if len(want.GetPromptLogprobs()) != len(ids) || len(ids) < 3 {
		t.Fatalf("gRPC: %d prompt logprobs for %d prompt tokens", len(want.GetPromptLogprobs()), len(ids))
	}
	for _, tc := range []struct {
		name   string
		prompt openai.CompletionNewParamsPromptUnion
		max    int64
	}{
		{"text prompt, one token", openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)}, 1},
		{"token ids, scoring only", openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(ids)}, 0},
	} {
		p := openai.CompletionNewParams{Model: "specd-target", Prompt: tc.prompt, MaxTokens: openai.Int(tc.max), Temperature: openai.Float(0),
			Echo: openai.Bool(true), Logprobs: openai.Int(1)}
		resp, err := c.Completions.New(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ch := resp.Choices[0]
		// openai-go's decoder gives up on the null first entry of top_logprobs (which
		// OpenAI's legacy API sends too); the JSON is read as a client would.
		var lp struct {
			Tokens        []string             `json:"tokens"`
			TokenLogprobs []float64            `json:"token_logprobs"`
			TopLogprobs   []map[string]float64 `json:"top_logprobs"`
		}
		if err := json.Unmarshal([]byte(ch.Logprobs.RawJSON()), &lp); err != nil {
			t.Fatal(err)
		}
		n := len(ids) + int(tc.max)
		if len(lp.Tokens) != n || len(lp.TokenLogprobs) != n || len(lp.TopLogprobs) != n {
			t.Fatalf("%s: %d tokens, %d logprobs, %d tops; want %d", tc.name, len(lp.Tokens), len(lp.TokenLogprobs), len(lp.TopLogprobs), n)
		}
		if raw := ch.Logprobs.RawJSON(); !strings.Contains(raw, `"token_logprobs":[null,`) || !strings.Contains(raw, `"top_logprobs":[null,`) {
			t.Errorf("%s: the prompt's first token has a log-probability: %.200s", tc.name, raw)
		}
		for k := 1; k < len(ids); k++ {
			// A text prompt's tokens show their decoded text, as the echo shows the
			// prompt; a prompt of ids is echoed as its tokens' bytes spell it.
			w := want.GetPromptLogprobs()[k]
			shown := w.GetText()
			if tc.max == 0 {
				shown = string(w.GetToken())
			}
			if float32(lp.TokenLogprobs[k]) != w.GetLogprob() || lp.Tokens[k] != shown {
				t.Errorf("%s: prompt token %d: %q %v, want %q %v", tc.name, k, lp.Tokens[k], lp.TokenLogprobs[k], shown, w.GetLogprob())
			}
		}
		text := prompt
		if tc.max == 1 {
			text += want.GetText()
			if g := want.GetLogprobs()[0]; float32(lp.TokenLogprobs[n-1]) != g.GetLogprob() {
				t.Errorf("%s: generated token's logprob %v, want %v", tc.name, lp.TokenLogprobs[n-1], g.GetLogprob())
			}
		}
		if tc.max == 0 {
			// A prompt of ids echoes its tokens' bytes: the SentencePiece BOS and the
			// dummy-prefix space included.
			text = string(want.GetPromptLogprobs()[0].GetToken()) + " " + prompt
			if resp.Usage.CompletionTokens != 0 {
				t.Errorf("%s: usage %s, want no completion tokens", tc.name, resp.Usage.RawJSON())
			}
		}
		if ch.Text != text {
			t.Errorf("%s: text %q, want %q", tc.name, ch.Text, text)
		}
	}
}

// TestOpenAIEchoEndToken: lm-eval's loglikelihood asks for echo, logprobs and
// max_tokens 1 and reads token_logprobs[ctxlen:-1], taking the last entry for the
// generated token. When that token is the end of the text (here the BOS that ends a
// stories260K story, the end of generation for a llama2.c checkpoint, after llama2.c's own
// greedy story), the arrays still end with its entry — the log-probability the
// scoring of the prompt with it appended gives — else the harness would drop the last
// prompt token's.
func TestOpenAIEchoEndToken(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, target: testmodels.ForTest(t, "stories260K.bin")})
	ref := stories260KStopAtBOS(t, "The dog")
	prompt := append(slices.Clone(ref.PromptIDs), ref.OutputIDs...)
	ctx := context.Background()
	score, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: append(slices.Clone(prompt), s.target.Tok.BOS()), MaxTokens: 1,
		PromptLogprobs: true, TopLogprobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	end := score.GetPromptLogprobs()[len(prompt)]
	c := s.openaiClient()
	resp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(score.GetStats().GetVerifier().GetModel()), Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(prompt)},
		MaxTokens: openai.Int(1), Temperature: openai.Float(0), Echo: openai.Bool(true), Logprobs: openai.Int(1), Seed: openai.Int(1234)})
	if err != nil {
		t.Fatal(err)
	}
	ch := resp.Choices[0]
	if ch.FinishReason != "stop" {
		t.Fatalf("finish reason %q, want stop: the story does not end where llama2.c's does", ch.FinishReason)
	}
	var lp struct {
		Tokens        []string   `json:"tokens"`
		TokenLogprobs []*float64 `json:"token_logprobs"`
		TextOffset    []int      `json:"text_offset"`
	}
	if err := json.Unmarshal([]byte(ch.Logprobs.RawJSON()), &lp); err != nil {
		t.Fatal(err)
	}
	n := len(prompt) + 1
	if len(lp.Tokens) != n || len(lp.TokenLogprobs) != n || len(lp.TextOffset) != n {
		t.Fatalf("%d tokens, %d logprobs, %d offsets for a prompt of %d and its end token; want %d", len(lp.Tokens), len(lp.TokenLogprobs), len(lp.TextOffset), len(prompt), n)
	}
	// The end token (BOS, for this model) adds no text: it shows none.
	if got := lp.TokenLogprobs[n-1]; got == nil || float32(*got) != end.GetLogprob() || lp.Tokens[n-1] != "" || lp.TextOffset[n-1] != len([]rune(ch.Text)) {
		t.Errorf("last entry %q %v at %d, want the end token's %v, showing nothing at the text's end", lp.Tokens[n-1], got, lp.TextOffset[n-1], end.GetLogprob())
	}
	if resp.Usage.CompletionTokens != 0 {
		t.Errorf("usage %s: the end token is no completion token", resp.Usage.RawJSON())
	}
}

// storiesRef is a run of llama2.c on stories260K, from the shared references.
type storiesRef struct {
	Prompt    string  `json:"prompt"`
	PromptIDs []int32 `json:"prompt_ids"`
	OutputIDs []int32 `json:"output_ids"`
}

// stories260KStopAtBOS returns llama2.c's greedy story for prompt, stopped at the BOS
// that ends it (not in OutputIDs).
func stories260KStopAtBOS(t *testing.T, prompt string) storiesRef {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testmodels.ReferenceDir(t), "stories260K_llama2c_stop_at_bos.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		var r storiesRef
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Prompt == prompt {
			return r
		}
	}
	t.Fatalf("no reference for %q", prompt)
	return storiesRef{}
}

// TestOpenAIPromptBatch: a batch of prompts in one completion request, as evaluation
// harnesses send them with batch_size above 1: one choice per prompt (n each,
// prompt-major), each the gRPC API's output for its prompt alone, scored with echo,
// and usage counting every prompt once.
func TestOpenAIPromptBatch(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	c := s.openaiClient()
	ctx := context.Background()
	prompts := []string{"Once upon a time there was a", "The little dog ran", "One day, Lily"}
	var promptTokens int64
	want := make([]*specdv1.CompleteResponse, len(prompts))
	for i, p := range prompts {
		r, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: p, MaxTokens: 6, Logprobs: true, TopLogprobs: 1, PromptLogprobs: true})
		if err != nil {
			t.Fatal(err)
		}
		want[i], promptTokens = r, promptTokens+int64(len(r.GetPromptIds()))
	}
	p := openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: prompts},
		MaxTokens: openai.Int(6), Temperature: openai.Float(0), N: openai.Int(2), Echo: openai.Bool(true), Logprobs: openai.Int(1)}
	resp, err := c.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 2*len(prompts) {
		t.Fatalf("%d choices, want %d", len(resp.Choices), 2*len(prompts))
	}
	for i, ch := range resp.Choices {
		w := want[i/2]
		if ch.Index != int64(i) || ch.Text != prompts[i/2]+w.GetText() {
			t.Errorf("choice %d: index %d, text %q; want %q", i, ch.Index, ch.Text, prompts[i/2]+w.GetText())
		}
		var lp struct {
			TokenLogprobs []float64 `json:"token_logprobs"`
		}
		if err := json.Unmarshal([]byte(ch.Logprobs.RawJSON()), &lp); err != nil {
			t.Fatal(err)
		}
		if n := len(w.GetPromptIds()) + len(w.GetTokenIds()); len(lp.TokenLogprobs) != n {
			t.Fatalf("choice %d: %d logprobs, want %d", i, len(lp.TokenLogprobs), n)
		}
		if k := len(w.GetPromptIds()) - 1; float32(lp.TokenLogprobs[k]) != w.GetPromptLogprobs()[k].GetLogprob() {
			t.Errorf("choice %d: the prompt's last token %v, want %v", i, lp.TokenLogprobs[k], w.GetPromptLogprobs()[k].GetLogprob())
		}
	}
	if resp.Usage.PromptTokens != promptTokens || resp.Usage.CompletionTokens != int64(2*6*len(prompts)) {
		t.Errorf("usage %s: want %d prompt tokens (each prompt once) and %d completion tokens", resp.Usage.RawJSON(), promptTokens, 2*6*len(prompts))
	}
}

// rawChoice is a completion choice as the JSON reads, null entries kept.
type rawChoice struct {
	Index    int     `json:"index"`
	Text     string  `json:"text"`
	Finish   *string `json:"finish_reason"`
	Logprobs *struct {
		Tokens        []string             `json:"tokens"`
		TokenLogprobs []*float64           `json:"token_logprobs"`
		TopLogprobs   []map[string]float64 `json:"top_logprobs"`
		TextOffset    []int                `json:"text_offset"`
	} `json:"logprobs"`
}

// rawCompletion is a completion, or a chunk of one, as the JSON reads.
type rawCompletion struct {
	Choices []rawChoice `json:"choices"`
	Usage   *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// postCompletion posts body to the front door's /completions: the response, or with
// stream the chunks of the server-sent events merged into one response (each choice's
// text and logprob arrays concatenated in order, its finish reason, the usage chunk's
// usage), and the text of each choice's first chunk.
func postCompletion(t *testing.T, base string, body map[string]any) (rawCompletion, map[int]string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/completions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %s", resp.Status, msg)
	}
	if body["stream"] != true {
		var out rawCompletion
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out, nil
	}
	var out rawCompletion
	first := map[int]string{}
	byIndex := map[int]*rawChoice{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	done := false
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			break
		}
		var c rawCompletion
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("chunk %s: %v", line, err)
		}
		if c.Usage != nil {
			out.Usage = c.Usage
		}
		for _, ch := range c.Choices {
			m := byIndex[ch.Index]
			if m == nil {
				first[ch.Index] = ch.Text
				m = &rawChoice{Index: ch.Index}
				byIndex[ch.Index] = m
			}
			m.Text += ch.Text
			if ch.Finish != nil {
				m.Finish = ch.Finish
			}
			if lp := ch.Logprobs; lp != nil {
				if m.Logprobs == nil {
					m.Logprobs = lp
					continue
				}
				m.Logprobs.Tokens = append(m.Logprobs.Tokens, lp.Tokens...)
				m.Logprobs.TokenLogprobs = append(m.Logprobs.TokenLogprobs, lp.TokenLogprobs...)
				m.Logprobs.TopLogprobs = append(m.Logprobs.TopLogprobs, lp.TopLogprobs...)
				m.Logprobs.TextOffset = append(m.Logprobs.TextOffset, lp.TextOffset...)
			}
		}
	}
	if err := sc.Err(); err != nil || !done {
		t.Fatalf("stream ended without data: [DONE] (%v)", err)
	}
	for i := range len(byIndex) {
		if byIndex[i] == nil {
			t.Fatalf("no chunk for choice %d of %d", i, len(byIndex))
		}
		out.Choices = append(out.Choices, *byIndex[i])
	}
	return out, first
}

// TestOpenAIEchoStreamed: echo with stream: true, as vLLM serves it — the stream
// starts with the prompt (its text and, with logprobs, its tokens' log-probabilities)
// and goes on with the generation — for a text prompt, a batch of prompts with n 2,
// a prompt of token ids with max_tokens 0 (the prompt scored alone) and echo without
// logprobs: the streamed chunks merged are the response the same request gets
// unstreamed, text, tokens, log-probabilities, offsets, finish reasons and usage.
func TestOpenAIEchoStreamed(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	ctx := context.Background()
	const prompt = "Once upon a time there was a"
	ids, err := s.client.Tokenize(ctx, &specdv1.TokenizeRequest{Text: prompt, AddBos: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body map[string]any
		echo []string // each choice's echoed prompt ("": the whole unstreamed text)
	}{
		{"text prompt", map[string]any{"prompt": prompt, "max_tokens": 3, "logprobs": 2}, []string{prompt}},
		{"batch, n 2", map[string]any{"prompt": []string{prompt, "The little dog ran"}, "n": 2, "max_tokens": 2, "logprobs": 1},
			[]string{prompt, prompt, "The little dog ran", "The little dog ran"}},
		{"token ids, scoring only", map[string]any{"prompt": int64s(ids.GetTokenIds()), "max_tokens": 0, "logprobs": 1}, []string{""}},
		{"text only", map[string]any{"prompt": prompt, "max_tokens": 4}, []string{prompt}},
		{"split characters", map[string]any{"prompt": "東京 😀 and a dog", "max_tokens": 6, "logprobs": 3}, []string{"東京 😀 and a dog"}},
		{"token ids with a control token amid them", map[string]any{"prompt": int64s(slices.Concat(ids.GetTokenIds(), []int32{2, 1}, ids.GetTokenIds()[1:])),
			"max_tokens": 5, "logprobs": 2}, []string{"<s> " + prompt + "</s><s> " + prompt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"model": "specd-target", "temperature": 0, "echo": true}
			for k, v := range tc.body {
				body[k] = v
			}
			want, _ := postCompletion(t, s.http, body)
			body["stream"], body["stream_options"] = true, map[string]any{"include_usage": true}
			got, first := postCompletion(t, s.http, body)
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if string(gj) != string(wj) {
				t.Errorf("streamed, merged:\n%s\nwant the unstreamed response's:\n%s", gj, wj)
			}
			if len(want.Choices) != len(tc.echo) {
				t.Fatalf("%d choices, want %d", len(want.Choices), len(tc.echo))
			}
			for i, ch := range want.Choices {
				// Every token is at its text_offset in the text, as vLLM's offsets index it.
				if lp := ch.Logprobs; lp != nil {
					r := []rune(ch.Text)
					for k, tok := range lp.Tokens {
						off, tr := lp.TextOffset[k], []rune(tok)
						if off+len(tr) > len(r) || string(r[off:off+len(tr)]) != tok {
							t.Errorf("choice %d: token %d %q is not at its text_offset %d in %q", i, k, tok, off, ch.Text)
						}
					}
				}
				// (These prompts are short enough for one piece of log-probabilities.)
				if p := cmp.Or(tc.echo[i], ch.Text); first[i] != p || !strings.HasPrefix(ch.Text, p) {
					t.Errorf("choice %d: first chunk %q, want the echoed prompt %q alone", i, first[i], p)
				}
			}
		})
	}
}
