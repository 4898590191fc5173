package serve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/specd-dev/specd/internal/testkeys"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/auth"
	"github.com/specd-dev/specd/toolcall"
)

// ollamaBase is the root of the stack's Ollama API: the front door's, without /v1.
func (s *stack) ollamaBase() string { return strings.TrimSuffix(s.http, "/v1") }

// ollamaAnswer is what the tests read of an /api/generate or /api/chat answer.
type ollamaAnswer struct {
	Response string `json:"response"`
	Message  struct {
		Content   string `json:"content"`
		ToolCalls []struct {
			Function struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"message"`
	Done               bool    `json:"done"`
	DoneReason         string  `json:"done_reason"`
	Context            []int32 `json:"context"`
	Error              string  `json:"error"`
	PromptEvalCount    int     `json:"prompt_eval_count"`
	EvalCount          int     `json:"eval_count"`
	TotalDuration      int64   `json:"total_duration"`
	PromptEvalDuration int64   `json:"prompt_eval_duration"`
	EvalDuration       int64   `json:"eval_duration"`
}

// text is the answer's text, of a generation or a chat.
func (a ollamaAnswer) text() string { return a.Response + a.Message.Content }

// ollamaPost sends body to the stack's Ollama API at path and returns the status and
// the lines of the answer (one unstreamed; each of a stream).
func ollamaPost(t *testing.T, s *stack, path, body string) (int, []ollamaAnswer) {
	t.Helper()
	resp, err := http.Post(s.ollamaBase()+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []ollamaAnswer
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var a ollamaAnswer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, a)
	}
	return resp.StatusCode, out
}

// joined is a stream's text and its last line, checking that only the last is done.
func joined(t *testing.T, lines []ollamaAnswer) (string, ollamaAnswer) {
	t.Helper()
	if len(lines) == 0 {
		t.Fatal("no lines")
	}
	var text string
	for i, l := range lines {
		if l.Error != "" || l.Done != (i == len(lines)-1) {
			t.Fatalf("line %d of %d: %+v", i, len(lines), l)
		}
		text += l.text()
	}
	return text, lines[len(lines)-1]
}

// TestOllamaGenerate: /api/generate on the real stack — router, verifier and draft on
// loopback — gives what the gRPC API and the OpenAI endpoint give for the same prompt,
// greedy and seeded, streamed and not, with the statistics of the request; a raw
// prompt's context continues it; format constrains it; and a model without a chat
// template takes a templated prompt as it is.
func TestOllamaGenerate(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	ctx := context.Background()
	const prompt = "Once upon a time there was a"
	want, err := s.client.Complete(ctx, request(prompt, 24, 0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	c := s.openaiClient()
	oai, err := c.Completions.New(ctx, completionParams(prompt, 24, 0))
	if err != nil {
		t.Fatal(err)
	}
	if oai.Choices[0].Text != want.GetText() {
		t.Fatalf("the OpenAI endpoint gave %q, the gRPC API %q", oai.Choices[0].Text, want.GetText())
	}
	greedy := `{"model":"specd-target:latest","prompt":"` + prompt + `","options":{"temperature":0,"num_predict":24}`

	t.Run("greedy, as the gRPC API and the OpenAI endpoint", func(t *testing.T) {
		for _, body := range []string{greedy + `,"raw":true,"stream":false}`, greedy + `,"stream":false}`} {
			code, lines := ollamaPost(t, s, "/api/generate", body)
			if code != 200 || len(lines) != 1 || lines[0].Response != want.GetText() || lines[0].DoneReason != "length" {
				t.Errorf("%s: %d %+v, want %q, done_reason length", body, code, lines, want.GetText())
				continue
			}
			a := lines[0]
			if a.EvalCount != 24 || a.PromptEvalCount != int(want.GetStats().GetPromptTokens()) || a.TotalDuration <= 0 || a.EvalDuration <= 0 ||
				a.PromptEvalDuration <= 0 || a.PromptEvalDuration+a.EvalDuration > a.TotalDuration {
				t.Errorf("%s: stats %+v", body, a)
			}
		}
	})

	t.Run("streamed", func(t *testing.T) {
		for _, raw := range []string{"true", "false"} {
			code, lines := ollamaPost(t, s, "/api/generate", greedy+`,"raw":`+raw+`}`)
			text, last := joined(t, lines)
			if code != 200 || text != want.GetText() || len(lines) < 3 || last.DoneReason != "length" || last.EvalCount != 24 {
				t.Errorf("raw %s: %d: %q over %d lines, last %+v; want %q", raw, code, text, len(lines), last, want.GetText())
			}
			// A model without a chat template takes the prompt as it is, and the answer
			// has the context; a raw one has none, as in Ollama.
			wantCtx := append(slices.Clone(want.GetPromptIds()), want.GetTokenIds()...)
			if raw == "true" {
				wantCtx = nil
			}
			if !slices.Equal(last.Context, wantCtx) {
				t.Errorf("raw %s: context %v, want %v", raw, last.Context, wantCtx)
			}
		}
	})

	t.Run("context continues a prompt", func(t *testing.T) {
		first := append(slices.Clone(want.GetPromptIds()), want.GetTokenIds()...)
		ctxJSON, _ := json.Marshal(first)
		code, lines := ollamaPost(t, s, "/api/generate", `{"model":"specd-target","prompt":" And then","stream":false,"context":`+string(ctxJSON)+`,"options":{"temperature":0,"num_predict":16}}`)
		tok, err := s.client.Tokenize(ctx, &specdv1.TokenizeRequest{Text: " And then"})
		if err != nil {
			t.Fatal(err)
		}
		g, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: append(first, tok.GetTokenIds()...), MaxTokens: 16})
		if err != nil {
			t.Fatal(err)
		}
		if code != 200 || lines[0].Response != g.GetText() || !slices.Equal(lines[0].Context, append(append(first, tok.GetTokenIds()...), g.GetTokenIds()...)) {
			t.Errorf("%d %+v, want %q and the whole sequence as the context", code, lines, g.GetText())
		}
	})

	t.Run("seeded, as the gRPC API", func(t *testing.T) {
		seed, topP := uint64(1234), float32(0.95)
		g, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: "The king said", MaxTokens: 24,
			Sampling: &specdv1.SamplingParams{Temperature: 0.9, TopP: &topP, TopK: 40, Seed: &seed}})
		if err != nil {
			t.Fatal(err)
		}
		body := `{"model":"specd-target","prompt":"The king said","raw":true,"options":{"temperature":0.9,"top_p":0.95,"seed":1234,"num_predict":24}`
		_, lines := ollamaPost(t, s, "/api/generate", body+`,"stream":false}`)
		text, _ := joined(t, ollamaStream(t, s, "/api/generate", body+`}`))
		if lines[0].Response != g.GetText() || text != g.GetText() {
			t.Errorf("seed 1234: %q and streamed %q, the gRPC API %q", lines[0].Response, text, g.GetText())
		}
	})

	t.Run("logprobs, as the gRPC API's", func(t *testing.T) {
		g, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: prompt, MaxTokens: 8, Logprobs: true, TopLogprobs: 3})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(s.ollamaBase()+"/api/generate", "application/json", strings.NewReader(`{"model":"specd-target","prompt":"`+prompt+`","raw":true,"stream":false,"logprobs":true,"top_logprobs":3,"options":{"temperature":0,"num_predict":8}}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			Logprobs []struct {
				Token       string  `json:"token"`
				Logprob     float32 `json:"logprob"`
				TopLogprobs []struct {
					Token   string  `json:"token"`
					Logprob float32 `json:"logprob"`
				} `json:"top_logprobs"`
			} `json:"logprobs"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got.Logprobs) != len(g.GetLogprobs()) {
			t.Fatalf("%d logprobs (%v), want %d", len(got.Logprobs), err, len(g.GetLogprobs()))
		}
		for i, lp := range g.GetLogprobs() {
			o := got.Logprobs[i]
			if o.Token != string(lp.GetToken()) || o.Logprob != lp.GetLogprob() || len(o.TopLogprobs) != 3 || o.TopLogprobs[0].Logprob != lp.GetTop()[0].GetLogprob() {
				t.Errorf("token %d: %+v, want %q %v top %v", i, o, lp.GetToken(), lp.GetLogprob(), lp.GetTop())
			}
		}
	})

	t.Run("format", func(t *testing.T) {
		schema := `{"type":"object","properties":{"age":{"type":"integer"},"name":{"type":"string"}},"required":["age","name"]}`
		for _, format := range []string{`"json"`, schema} {
			_, lines := ollamaPost(t, s, "/api/generate", `{"model":"specd-target","prompt":"The data is","stream":false,"format":`+format+`,"options":{"temperature":0,"num_predict":-1}}`)
			var v map[string]any
			if err := json.Unmarshal([]byte(lines[0].Response), &v); err != nil || lines[0].DoneReason != "stop" {
				t.Errorf("format %s: %q (%s) is no JSON object: %v", format, lines[0].Response, lines[0].DoneReason, err)
				continue
			}
			if format == schema {
				if _, ok := v["age"].(float64); !ok {
					t.Errorf("format %s: %q has no integer age", format, lines[0].Response)
				}
				if _, ok := v["name"].(string); !ok {
					t.Errorf("format %s: %q has no string name", format, lines[0].Response)
				}
			}
		}
	})

	t.Run("num_predict beyond the context runs to its end", func(t *testing.T) {
		code, lines := ollamaPost(t, s, "/api/generate", `{"model":"specd-target","prompt":"`+prompt+`","raw":true,"stream":false,"options":{"temperature":0,"num_predict":1000,"stop":["never"]}}`)
		if code != 200 || lines[0].DoneReason == "" || lines[0].PromptEvalCount+lines[0].EvalCount > 512 {
			t.Errorf("%d %+v", code, lines)
		}
	})

	t.Run("one listener for both APIs", func(t *testing.T) {
		for _, tc := range []struct {
			method, path string
			status       int
			body         string
		}{
			{"GET", "/", 200, "Ollama is running"},
			{"GET", "/api/version", 200, `"version"`},
			{"GET", "/v1/models", 200, `"specd-target"`},
			{"GET", "/health", 200, `"ok"`},
			{"POST", "/", 404, `"unknown_url"`}, // the OpenAI API's answer to what neither serves
		} {
			req, _ := http.NewRequest(tc.method, s.ollamaBase()+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			_, err = io.Copy(&b, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tc.status || !strings.Contains(b.String(), tc.body) {
				t.Errorf("%s %s: %d %q %v, want %d with %s", tc.method, tc.path, resp.StatusCode, b.String(), err, tc.status, tc.body)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			body   string
			status int
			prefix string
		}{
			{`{"model":"llama3","prompt":"x"}`, 404, "model 'llama3' not found"},
			{`{"model":"specd-target","prompt":"x","options":{"num_ctx":256}}`, 400, "options.num_ctx: 256"},
			{`{"model":"specd-target","prompt":"x","options":{"repeat_penalty":1.1}}`, 400, "options.repeat_penalty"},
			{`{"model":"specd-target","prompt":"x","format":{"type":"object","patternProperties":{"a":{}}}}`, 400, "format"},
			{`{"model":"specd-target","prompt":"x","system":"be brief"}`, 400, "system: specd-target has no chat template"},
		} {
			code, lines := ollamaPost(t, s, "/api/generate", tc.body)
			if code != tc.status || len(lines) != 1 || !strings.HasPrefix(lines[0].Error, tc.prefix) {
				t.Errorf("%s: %d %+v, want %d %q…", tc.body, code, lines, tc.status, tc.prefix)
			}
		}
	})
}

// ollamaStream is ollamaPost for a streamed answer.
func ollamaStream(t *testing.T, s *stack, path, body string) []ollamaAnswer {
	t.Helper()
	code, lines := ollamaPost(t, s, path, body)
	if code != 200 {
		t.Fatalf("%s %s: %d %+v", path, body, code, lines)
	}
	return lines
}

// TestOllamaChat: /api/chat with the model's chat template gives what the OpenAI
// endpoint gives for the same messages, streamed and not; a constrained reply in
// Llama 3.1's JSON call syntax comes back as a tool call with its arguments an object;
// /api/show says the model takes tools.
func TestOllamaChat(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true, chat: qwenChat(t), tools: toolcall.Llama3JSON})
	ctx := context.Background()
	c := s.openaiClient()
	resp, err := c.Chat.Completions.New(ctx, chatParams(openai.SystemMessage("You tell short stories."), openai.UserMessage("Once upon a time")))
	if err != nil {
		t.Fatal(err)
	}
	want := resp.Choices[0].Message.Content
	body := `{"model":"specd-target","messages":[{"role":"system","content":"You tell short stories."},{"role":"user","content":"Once upon a time"}],"options":{"temperature":0,"num_predict":16}`
	_, lines := ollamaPost(t, s, "/api/chat", body+`,"stream":false}`)
	if len(lines) != 1 || lines[0].Message.Content != want || lines[0].DoneReason != "length" || lines[0].EvalCount != 16 {
		t.Errorf("unstreamed: %+v, want %q", lines, want)
	}
	text, last := joined(t, ollamaStream(t, s, "/api/chat", body+`}`))
	if text != want || last.DoneReason != "length" || last.PromptEvalCount != lines[0].PromptEvalCount {
		t.Errorf("streamed: %q, last %+v; want %q", text, last, want)
	}
	// Generate's templated prompt is the chat of one user message.
	code, glines := ollamaPost(t, s, "/api/generate", `{"model":"specd-target","system":"You tell short stories.","prompt":"Once upon a time","stream":false,"options":{"temperature":0,"num_predict":16}}`)
	if code != 200 || glines[0].Response != want {
		t.Errorf("templated generate: %d %+v, want %q", code, glines, want)
	}

	// The deprecated context cannot go before a rendering of the model's template.
	code, glines = ollamaPost(t, s, "/api/generate", `{"model":"specd-target","prompt":"Once upon a time","context":[1,2,3]}`)
	if code != 400 || !strings.HasPrefix(glines[0].Error, "context: ") {
		t.Errorf("context with a chat template: %d %+v, want a 400 about context", code, glines)
	}

	// A call constrained to Llama 3.1's syntax by a schema: the parser finds it.
	call := `{"type":"object","properties":{"name":{"const":"get_weather"},"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},"required":["name","parameters"]}`
	tools := `"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
	tbody := `{"model":"specd-target","messages":[{"role":"user","content":"Weather in Paris?"}],` + tools + `,"format":` + call + `,"options":{"temperature":0}`
	for _, stream := range []string{"false", "true"} {
		code, lines := ollamaPost(t, s, "/api/chat", tbody+`,"stream":`+stream+`}`)
		var calls []string
		for _, l := range lines {
			for _, c := range l.Message.ToolCalls {
				var args map[string]any
				if err := json.Unmarshal(c.Function.Arguments, &args); err != nil {
					t.Errorf("stream %s: arguments %s are no object: %v", stream, c.Function.Arguments, err)
				}
				if _, ok := args["city"].(string); !ok {
					t.Errorf("stream %s: arguments %s have no string city", stream, c.Function.Arguments)
				}
				calls = append(calls, c.Function.Name)
			}
		}
		if code != 200 || strings.Join(calls, ",") != "get_weather" || !lines[len(lines)-1].Done {
			t.Errorf("stream %s: %d calls %v in %+v, want one get_weather", stream, code, calls, lines)
		}
	}

	r, err := http.Post(s.ollamaBase()+"/api/show", "application/json", strings.NewReader(`{"model":"specd-target:latest"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var show struct {
		Capabilities []string       `json:"capabilities"`
		ModelInfo    map[string]any `json:"model_info"`
	}
	if err := json.NewDecoder(r.Body).Decode(&show); err != nil || r.StatusCode != 200 || !slices.Contains(show.Capabilities, "tools") ||
		show.ModelInfo["llama.context_length"] != 512.0 {
		t.Errorf("show: %d %+v (%v), want tools among the capabilities and the context length 512", r.StatusCode, show, err)
	}
}

// TestOllamaCancelFreesRequest: an Ollama client that goes away mid-stream cancels
// the router's call, and the verifier frees the request's KV blocks.
func TestOllamaCancelFreesRequest(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	cc, err := services.Dial(s.verifier)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.ollamaBase()+"/api/generate",
		strings.NewReader(`{"model":"specd-target","prompt":"Once upon a time there was a","raw":true,"options":{"temperature":0,"num_predict":400,"stop":["never"]}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	info, err := speculationv1.NewVerifierServiceClient(cc).Info(context.Background(), &speculationv1.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetQueueDepth() == 0 || info.GetKvBlocksFree() == info.GetKvBlocksTotal() {
		t.Fatalf("mid-stream the verifier reports queue %d and %d of %d KV blocks free: the request is not running", info.GetQueueDepth(), info.GetKvBlocksFree(), info.GetKvBlocksTotal())
	}
	cancel()
	waitIdle(t, cc)
}

// TestOllamaAPIKeys: API keys hold on Ollama's API as on gRPC: without the key a 401,
// with it (as ollama's clients send it, Authorization: Bearer) the answer.
func TestOllamaAPIKeys(t *testing.T) {
	const key = "specd_ollama-secret-for-tests"
	path := filepath.Join(t.TempDir(), "keys.txt")
	testkeys.Write(t, path, testkeys.Line("app", key, ""), 0)
	keys, err := auth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := startStackWith(t, stackOptions{http: true, keys: keys, apiKey: key})
	for _, tc := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer specd_not-a-key", 401}, {"Bearer " + key, 200}} {
		for _, r := range []struct{ method, path, body string }{
			{"POST", "/api/generate", `{"model":"specd-target","prompt":"Once","stream":false,"options":{"num_predict":2}}`},
			{"GET", "/api/tags", ""},
		} {
			req, _ := http.NewRequest(r.method, s.ollamaBase()+r.path, strings.NewReader(r.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Error string }
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != tc.status || (tc.status != 200) != (e.Error != "") {
				t.Errorf("%s %s with %q: %d %+v, want %d", r.method, r.path, tc.auth, resp.StatusCode, e, tc.status)
			}
		}
	}
}
