package ollamahttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/quota"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/ollamahttp"
	"github.com/specd-dev/specd/services/openaihttp"
	"github.com/specd-dev/specd/toolcall"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stub is a GenerationService whose Generate is a function field, served over real
// gRPC on loopback: it stands for the router where a test needs an answer the real one
// gives only under conditions a test cannot arrange (a quota, a tool call in a model's
// reply, a refusal mid-stream). Tests against the real router are in services/serve.
type stub struct {
	specdv1.UnimplementedGenerationServiceServer
	generate func(*specdv1.GenerateRequest, specdv1.GenerationService_GenerateServer) error
	mu       sync.Mutex
	reqs     []*specdv1.GenerateRequest // every Generate request, in order
}

func (s *stub) Generate(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
	return s.generate(r, st)
}

func (s *stub) requests() []*specdv1.GenerateRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*specdv1.GenerateRequest(nil), s.reqs...)
}

func (s *stub) ListModels(context.Context, *specdv1.ListModelsRequest) (*specdv1.ListModelsResponse, error) {
	return &specdv1.ListModelsResponse{Models: []*specdv1.ModelInfo{
		{Name: "big", Role: "verifier", Architecture: "llama", Quantization: "q8_0", ContextLength: 512, VocabSize: 4096, Parameters: 25_698_816},
		{Name: "small", Role: "draft"},
	}}, nil
}

// Tokenize makes one id per byte, after a BOS (1) when asked: enough to check what
// the front door does with the ids.
func (s *stub) Tokenize(_ context.Context, r *specdv1.TokenizeRequest) (*specdv1.TokenizeResponse, error) {
	var ids []int32
	if r.GetAddBos() {
		ids = append(ids, 1)
	}
	for _, b := range []byte(r.GetText()) {
		ids = append(ids, int32(b))
	}
	return &specdv1.TokenizeResponse{TokenIds: ids}, nil
}

// reply answers with the text in pieces (a chunk each, one token per piece, with its
// log-probability -i-0.5 when asked, and the top ones) and a final message with stats
// and finish reason fr.
func reply(fr specdv1.FinishReason, pieces ...string) func(*specdv1.GenerateRequest, specdv1.GenerationService_GenerateServer) error {
	return func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		for i, p := range pieces {
			ch := &specdv1.TokenChunk{TokenIds: []int32{int32(100 + i)}, Text: p}
			if r.GetLogprobs() {
				lp := &specdv1.TokenLogprob{Logprob: -float32(i) - 0.5, Token: []byte(p), Text: p}
				for j := range r.GetTopLogprobs() {
					lp.Top = append(lp.Top, &specdv1.TopLogprob{TokenId: int32(j), Logprob: float32(-int(j)), Token: []byte{'a' + byte(j)}})
				}
				ch.Logprobs = []*specdv1.TokenLogprob{lp}
			}
			if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: ch}}); err != nil {
				return err
			}
		}
		return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{FinishReason: fr, Stats: &specdv1.Stats{
			PromptTokens: 7, CompletionTokens: uint32(len(pieces)), TimeToFirstToken: durationpb.New(30 * time.Millisecond),
			QueueWait: durationpb.New(10 * time.Millisecond), TotalDuration: durationpb.New(100 * time.Millisecond)}}}})
	}
}

// serve serves s over gRPC and the Ollama front door (set up by setup, nil: as it
// comes) over HTTP, both on loopback, and returns the front door's base URL.
func serve(t testing.TB, s *stub, setup func(*ollamahttp.Handler)) string {
	t.Helper()
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	specdv1.RegisterGenerationServiceServer(gs, s)
	go gs.Serve(glis)
	cc, err := services.Dial(glis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		h := ollamahttp.NewHandler(specdv1.NewGenerationServiceClient(cc), 0, 0, nil)
		if setup != nil {
			setup(h)
		}
		if err := openaihttp.Serve(ctx, hlis, h, time.Second, nil); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		cc.Close()
		gs.Stop()
	})
	return "http://" + hlis.Addr().String()
}

// post sends body to base+path and returns the status, the headers and the lines of
// the answer, each decoded as a JSON object.
func post(t *testing.T, base, path, body string) (int, http.Header, []map[string]any) {
	t.Helper()
	resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %q is not a JSON object: %v", path, sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, lines
}

// TestGenerateStreamed: the default answer is a stream of JSON lines, one per piece of
// text, the last done with done_reason and the statistics in nanoseconds; stream
// false is one object with the whole text. Either way the model is echoed as named.
func TestGenerateStreamed(t *testing.T) {
	s := &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_LENGTH, "Once", "", " upon", " a")}
	base := serve(t, s, nil)
	code, hd, lines := post(t, base, "/api/generate", `{"model":"big:latest","prompt":"x"}`)
	if code != 200 || hd.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", code, hd.Get("Content-Type"))
	}
	var text []string
	for _, l := range lines[:len(lines)-1] {
		if l["done"] != false || l["model"] != "big:latest" {
			t.Errorf("line %v: want done false, model big:latest", l)
		}
		text = append(text, l["response"].(string))
	}
	if got := strings.Join(text, "|"); got != "Once| upon| a" {
		t.Errorf("pieces %q, want Once| upon| a (no line for the empty piece)", got)
	}
	last := lines[len(lines)-1]
	want := map[string]any{"done": true, "done_reason": "length", "response": "", "prompt_eval_count": 7.0, "eval_count": 4.0,
		"total_duration": 100e6, "prompt_eval_duration": 20e6, "eval_duration": 70e6, "load_duration": 0.0}
	for k, v := range want {
		if last[k] != v {
			t.Errorf("last line %s = %v, want %v", k, last[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, last["created_at"].(string)); err != nil {
		t.Errorf("created_at: %v", err)
	}

	code, _, lines = post(t, base, "/api/generate", `{"model":"big","prompt":"x","stream":false}`)
	if code != 200 || len(lines) != 1 || lines[0]["response"] != "Once upon a" || lines[0]["done"] != true || lines[0]["model"] != "big" {
		t.Errorf("unstreamed: %d %v", code, lines)
	}
}

// TestGenerateRequests: what reaches the router for a generation — the prompt as the
// user's message (and the system message) unless raw, Ollama's default sampling, and
// the options mapped.
func TestGenerateRequests(t *testing.T) {
	s := &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_EOS, "ok")}
	base := serve(t, s, nil)
	_, _, lines := post(t, base, "/api/generate", `{"model":"big","prompt":"hi","system":"be brief","stream":false}`)
	if lines[0]["done_reason"] != "stop" || lines[0]["context"] != nil {
		t.Errorf("templated: %v: want done_reason stop and no context", lines[0])
	}
	_, _, lines = post(t, base, "/api/generate", `{"model":"big","prompt":"hi","raw":true,"stream":false,"options":{"temperature":0,"seed":5,"num_predict":9,"stop":["\n"]}}`)
	if lines[0]["response"] != "ok" || lines[0]["context"] != nil {
		t.Errorf("raw: %v: want no context, as Ollama gives none in raw mode", lines[0])
	}
	_, _, lines = post(t, base, "/api/generate", `{"model":"big","prompt":"hi","context":[1,7],"stream":false}`)
	if code := lines[0]["error"]; code == nil || !strings.HasPrefix(code.(string), "context: big renders prompts with its chat template") {
		t.Errorf("context for a model with a chat template: %v, want a 400 about context", lines[0])
	}
	reqs := s.requests()
	tmpl, raw := reqs[0], reqs[1]
	if len(tmpl.GetMessages()) != 2 || tmpl.Messages[0].GetRole() != "system" || tmpl.Messages[0].GetContent() != "be brief" ||
		tmpl.Messages[1].GetRole() != "user" || tmpl.Messages[1].GetContent() != "hi" || tmpl.GetPrompt() != "" {
		t.Errorf("templated request: %v", tmpl)
	}
	sp := tmpl.GetSampling()
	if sp.GetTemperature() != 0.8 || sp.GetTopK() != 40 || sp.GetTopP() != 0.9 || sp.Seed != nil || sp.RepetitionPenalty != nil || tmpl.GetMaxTokens() != 0 {
		t.Errorf("default sampling %v max_tokens %d: want Ollama's (0.8, top_k 40, top_p 0.9), no seed, no limit", sp, tmpl.GetMaxTokens())
	}
	if len(raw.GetMessages()) != 0 || raw.GetPrompt() != "hi" || raw.GetSampling().GetTemperature() != 0 ||
		raw.GetSampling().GetSeed() != 5 || raw.GetMaxTokens() != 9 || fmt.Sprint(raw.GetStop()) != "[\n]" {
		t.Errorf("raw request: %v", raw)
	}
}

// TestGenerateNoTemplate: for a model without a chat template the prompt is used as
// it is, after the ids of its context, as Ollama's default template makes it, and the
// answer gives the whole sequence back as its context; a system message then has
// nowhere to go (400).
func TestGenerateNoTemplate(t *testing.T) {
	s := &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		if len(r.GetMessages()) > 0 {
			return status.Error(codes.FailedPrecondition, "model has no chat template: model big has no tokenizer.chat_template")
		}
		return reply(specdv1.FinishReason_FINISH_REASON_EOS, "plain")(r, st)
	}}
	base := serve(t, s, nil)
	code, _, lines := post(t, base, "/api/generate", `{"model":"big","prompt":"hi","stream":false}`)
	ctx, _ := json.Marshal(lines[0]["context"])
	if code != 200 || lines[0]["response"] != "plain" || string(ctx) != "[1,104,105,100]" {
		t.Fatalf("%d %v: want the text and the context [1,104,105,100] (BOS, the prompt's ids, the output's)", code, lines)
	}
	if r := s.requests()[1]; fmt.Sprint(r.GetPromptIds()) != "[1 104 105]" || len(r.GetMessages()) != 0 {
		t.Errorf("second request %v, want the prompt's ids", r)
	}
	code, _, lines = post(t, base, "/api/generate", `{"model":"big","prompt":"!","context":[1,104,105,100],"stream":false}`)
	ctx, _ = json.Marshal(lines[0]["context"])
	if code != 200 || string(ctx) != "[1,104,105,100,33,100]" {
		t.Errorf("with a context: %d %v, want the context [1,104,105,100,33,100] (no second BOS)", code, lines)
	}
	code, _, lines = post(t, base, "/api/generate", `{"model":"big","prompt":"hi","system":"s","stream":false}`)
	if code != 400 || !strings.HasPrefix(lines[0]["error"].(string), "system: ") {
		t.Errorf("with a system message: %d %v, want 400 naming system", code, lines)
	}
	code, _, lines = post(t, base, "/api/chat", `{"model":"big","messages":[{"role":"user","content":"hi"}]}`)
	if code != 400 || !strings.Contains(lines[0]["error"].(string), "no chat template") {
		t.Errorf("chat: %d %v, want 400 saying there is no chat template", code, lines)
	}
}

// TestNumPredictBeyondContext: a num_predict the context has no room for after the
// prompt runs to the full context, as Ollama's does, rather than failing.
func TestNumPredictBeyondContext(t *testing.T) {
	s := &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		if r.GetMaxTokens() > 0 {
			return services.Status(&services.FieldError{Field: "max_tokens", Msg: fmt.Sprintf("%d new tokens after a prompt of 3 exceed the context of 512", r.GetMaxTokens())})
		}
		return reply(specdv1.FinishReason_FINISH_REASON_CONTEXT, "full")(r, st)
	}}
	base := serve(t, s, nil)
	code, _, lines := post(t, base, "/api/generate", `{"model":"big","prompt":"x","raw":true,"stream":false,"options":{"num_predict":1000}}`)
	if code != 200 || lines[0]["done_reason"] != "length" || lines[0]["response"] != "full" {
		t.Errorf("%d %v: want the output to the full context, done_reason length", code, lines)
	}
}

// TestLoad: an empty prompt, or no messages, is Ollama's call to load the model (with
// keep_alive 0, to unload it): one done line with done_reason "load" ("unload"),
// nothing generated; for a model not served, a 404.
func TestLoad(t *testing.T) {
	s := &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_EOS, "never")}
	base := serve(t, s, nil)
	for _, tc := range []struct{ path, body, reason string }{
		{"/api/generate", `{"model":"big"}`, "load"},
		{"/api/generate", `{"model":"big:latest","keep_alive":"5m"}`, "load"},
		{"/api/generate", `{"model":"big","keep_alive":-1}`, "load"},
		{"/api/chat", `{"model":"big","messages":[]}`, "load"},
		// keep_alive 0 with nothing to generate is Ollama's call to unload.
		{"/api/generate", `{"model":"big:latest","keep_alive":0}`, "unload"},
		{"/api/generate", `{"model":"big","keep_alive":"0s","system":"s"}`, "unload"},
		{"/api/chat", `{"model":"big","keep_alive":0}`, "unload"},
	} {
		code, _, lines := post(t, base, tc.path, tc.body)
		if code != 200 || len(lines) != 1 || lines[0]["done"] != true || lines[0]["done_reason"] != tc.reason {
			t.Errorf("%s %s: %d %v, want one done line with done_reason %s", tc.path, tc.body, code, lines, tc.reason)
		}
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("%d generations for load calls", n)
	}
	code, _, lines := post(t, base, "/api/generate", `{"model":"other"}`)
	if code != 404 || lines[0]["error"] != "model 'other' not found" {
		t.Errorf("unknown model: %d %v", code, lines)
	}
}

// TestErrorMapping: each gRPC status the router may answer becomes the HTTP status and
// Ollama-shaped error a client reports, with Retry-After from a RetryInfo and the
// gRPC field renamed as the client set it.
func TestErrorMapping(t *testing.T) {
	var fail error
	base := serve(t, &stub{generate: func(*specdv1.GenerateRequest, specdv1.GenerationService_GenerateServer) error { return fail }}, nil)
	busy, _ := status.New(codes.ResourceExhausted, "verifier busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	quotaErr, _ := status.New(codes.ResourceExhausted, "key k: "+quota.ErrRate.Error()).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
	for _, tc := range []struct {
		err    error
		status int
		retry  string
		msg    string
	}{
		{services.Status(&services.FieldError{Field: "sampling.top_p", Msg: "1.5: want (0, 1]"}), 400, "", "options.top_p: 1.5: want (0, 1]"},
		{status.Error(codes.NotFound, "unknown model"), 404, "", "model 'big' not found"},
		{busy.Err(), 503, "2", "server busy, please try again: verifier busy"},
		{quotaErr.Err(), 429, "3", "key k: " + quota.ErrRate.Error()},
		{status.Error(codes.Unauthenticated, "no key"), 401, "", "no key"},
		{status.Error(codes.PermissionDenied, "not this model"), 403, "", "not this model"},
		{status.Error(codes.Unavailable, "no verifier"), 503, "", "no verifier"},
		{status.Error(codes.DeadlineExceeded, "slow"), 504, "", "slow"},
		{status.Error(codes.Internal, "bug"), 500, "", "bug"},
	} {
		fail = tc.err
		for _, stream := range []string{"true", "false"} {
			code, hd, lines := post(t, base, "/api/generate", `{"model":"big","prompt":"x","stream":`+stream+`}`)
			if code != tc.status || hd.Get("Retry-After") != tc.retry || len(lines) != 1 || lines[0]["error"] != tc.msg {
				t.Errorf("%v (stream %s): %d Retry-After %q %v; want %d %q {error: %q}", tc.err, stream, code, hd.Get("Retry-After"), lines, tc.status, tc.retry, tc.msg)
			}
			challenge := "" // RFC 9110: a 401 names the scheme to authenticate with
			if tc.status == http.StatusUnauthorized {
				challenge = `Bearer realm="specd"`
			}
			if got := hd.Get("WWW-Authenticate"); got != challenge {
				t.Errorf("%v (stream %s): WWW-Authenticate %q, want %q", tc.err, stream, got, challenge)
			}
		}
	}
}

// TestStreamErrorMidway: an error after the stream began is a last line {"error": …},
// as Ollama sends one.
func TestStreamErrorMidway(t *testing.T) {
	base := serve(t, &stub{generate: func(_ *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{5}, Text: "Once"}}})
		return status.Error(codes.Unavailable, "verifier lost")
	}}, nil)
	code, _, lines := post(t, base, "/api/chat", `{"model":"big","messages":[{"role":"user","content":"x"}]}`)
	if code != 200 || len(lines) != 2 || lines[0]["message"].(map[string]any)["content"] != "Once" || lines[1]["error"] != "verifier lost" {
		t.Errorf("%d %v", code, lines)
	}
}

// TestStreamClientGoneLeavesNothing: a client that goes away mid-stream ends the
// handler and the router's stream; goleak (TestMain) finds either otherwise.
func TestStreamClientGoneLeavesNothing(t *testing.T) {
	ended := make(chan struct{}, 10)
	base := serve(t, &stub{generate: func(_ *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		defer func() { ended <- struct{}{} }()
		if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{5}, Text: "Once"}}}); err != nil {
			return err
		}
		<-st.Context().Done()
		return st.Context().Err()
	}}, nil)
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/generate", strings.NewReader(`{"model":"big","prompt":"x"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.Contains(line, `"Once"`) {
			t.Fatalf("first line %q, %v", line, err)
		}
		cancel()
		resp.Body.Close()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("the router's stream did not end 5 s after the client went away")
		}
	}
}

// hermesCall is a reply with one call in Hermes's syntax, after some content.
var hermesCall = []string{"Let me look.", "\n<tool_call>\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"}

const toolsBody = `{"model":"big","messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`

// TestToolCalls: a reply with calls is a message with tool_calls, each with an id and
// its arguments as an object, streamed (the content as it comes, the calls in one line before the last)
// and not; the tools reach the router; a server with no parser refuses tools.
func TestToolCalls(t *testing.T) {
	s := &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_EOS, hermesCall...)}
	base := serve(t, s, func(h *ollamahttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	wantCall := `[{"function":{"arguments":{"city":"Paris"},"index":0,"name":"get_weather"}}]` // keys sorted, as json.Marshal writes a map

	code, _, lines := post(t, base, "/api/chat", toolsBody+`,"stream":false}`)
	msg := lines[0]["message"].(map[string]any)
	calls, _ := json.Marshal(withoutIDs(t, msg["tool_calls"]))
	if code != 200 || msg["content"] != "Let me look." || string(calls) != wantCall || lines[0]["done_reason"] != "stop" {
		t.Errorf("unstreamed: %d %v: want content %q and calls %s", code, lines, "Let me look.", wantCall)
	}
	tools := s.requests()[0].GetTools()
	if len(tools) != 1 || tools[0].GetFunction().GetName() != "get_weather" || !strings.Contains(tools[0].GetFunction().GetParameters(), `"city"`) {
		t.Errorf("tools sent %v", tools)
	}

	code, _, lines = post(t, base, "/api/chat", toolsBody+`}`)
	var content string
	var got []any
	for _, l := range lines[:len(lines)-1] {
		m := l["message"].(map[string]any)
		content += m["content"].(string)
		if tc, ok := m["tool_calls"].([]any); ok {
			got = append(got, tc...)
		}
	}
	calls, _ = json.Marshal(withoutIDs(t, got))
	if code != 200 || content != "Let me look." || string(calls) != wantCall || lines[len(lines)-1]["done"] != true {
		t.Errorf("streamed: %d content %q calls %s; want %q and %s", code, content, calls, "Let me look.", wantCall)
	}

	plain := serve(t, s, nil)
	code, _, lines = post(t, plain, "/api/chat", toolsBody+`}`)
	if code != 400 || !strings.HasPrefix(lines[0]["error"].(string), "tools: big does not support tools") {
		t.Errorf("without a parser: %d %v", code, lines)
	}
}

// withoutIDs checks that each of calls (tool_calls decoded) has an id as Ollama gives
// one, "call_" and 8 letters or digits, each its own, and returns them without.
func withoutIDs(t *testing.T, calls any) any {
	t.Helper()
	list, _ := calls.([]any)
	seen := map[string]bool{}
	for _, c := range list {
		m := c.(map[string]any)
		id, _ := m["id"].(string)
		if !regexp.MustCompile(`^call_[a-z0-9]{8}$`).MatchString(id) || seen[id] {
			t.Errorf("tool call %v: id %q, want a fresh call_XXXXXXXX", m, id)
		}
		seen[id] = true
		delete(m, "id")
	}
	return calls
}

// TestToolCallsBroken: a streamed reply whose call turns out malformed after it began
// ends with an error line, so that no client takes a call the reply does not have.
func TestToolCallsBroken(t *testing.T) {
	base := serve(t, &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_EOS, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": ", "oops")}, func(h *ollamahttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	code, _, lines := post(t, base, "/api/chat", toolsBody+`}`)
	last := lines[len(lines)-1]
	if code != 200 || last["error"] == nil || !strings.Contains(last["error"].(string), "malformed") {
		t.Errorf("%d %v: want an error line last", code, lines)
	}
	for _, l := range lines {
		if m, ok := l["message"].(map[string]any); ok && m["tool_calls"] != nil {
			t.Errorf("a broken call was sent: %v", l)
		}
	}
}

// TestChatMessages: roles, tool calls with object arguments and tool results reach
// the router as the chat template reads them.
func TestChatMessages(t *testing.T) {
	s := &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_EOS, "ok")}
	base := serve(t, s, func(h *ollamahttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	body := `{"model":"big","stream":false,"messages":[{"role":"System","content":"s"},{"role":"user","content":"u"},
		{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},
		{"role":"tool","content":"42","tool_name":"f"}],"format":"json"}`
	if code, _, lines := post(t, base, "/api/chat", body); code != 200 {
		t.Fatalf("%d %v", code, lines)
	}
	r := s.requests()[0]
	ms := r.GetMessages()
	if len(ms) != 4 || ms[0].GetRole() != "system" || ms[2].GetToolCalls()[0].GetFunction().GetArguments() != `{"a":1}` ||
		ms[3].GetRole() != "tool" || ms[3].GetName() != "f" || ms[3].GetContent() != "42" {
		t.Errorf("messages %v", ms)
	}
	if r.GetResponseFormat().GetType() != specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT {
		t.Errorf("format json: response format %v", r.GetResponseFormat())
	}
}

// TestModels: /api/tags, /api/ps and /api/show describe the verifiers' models by
// names a client can send back; /api/show of another is a 404.
func TestModels(t *testing.T) {
	base := serve(t, &stub{}, func(h *ollamahttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	get := func(path string) map[string]any {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		return m
	}
	for _, path := range []string{"/api/tags", "/api/ps"} {
		ms := get(path)["models"].([]any)
		if len(ms) != 1 {
			t.Fatalf("%s: %v, want the one verifier model", path, ms)
		}
		m := ms[0].(map[string]any)
		d := m["details"].(map[string]any)
		if m["name"] != "big:latest" || m["model"] != "big:latest" || d["family"] != "llama" || d["parameter_size"] != "25.7M" ||
			d["quantization_level"] != "Q8_0" || d["format"] != "gguf" {
			t.Errorf("%s: %v", path, m)
		}
		if path == "/api/ps" {
			// Loaded for as long as specd runs: Ollama's expiry of a model kept
			// forever (keep_alive -1), some 292 years on.
			exp, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["expires_at"]))
			if err != nil || exp.Before(time.Now().AddDate(290, 0, 0)) {
				t.Errorf("/api/ps expires_at %v (%v), want Ollama's for a model kept loaded", m["expires_at"], err)
			}
		}
	}
	if v := get("/api/version")["version"]; v != ollamahttp.Version {
		t.Errorf("version %v", v)
	}
	for _, name := range []string{"big", "big:latest"} {
		code, _, lines := post(t, base, "/api/show", `{"model":"`+name+`"}`)
		info, _ := lines[0]["model_info"].(map[string]any)
		caps, _ := json.Marshal(lines[0]["capabilities"])
		if code != 200 || info["llama.context_length"] != 512.0 || info["general.parameter_count"] != 25698816.0 || string(caps) != `["completion","tools"]` {
			t.Errorf("show %s: %d %v", name, code, lines)
		}
	}
	if code, _, lines := post(t, base, "/api/show", `{"model":"big:q4"}`); code != 404 || lines[0]["error"] != "model 'big:q4' not found" {
		t.Errorf("show big:q4: %d %v", code, lines)
	}
	if code, _, lines := post(t, base, "/api/pull", `{"model":"big:latest","stream":false}`); code != 200 || lines[0]["status"] != "success" {
		t.Errorf("pull of a model served: %d %v", code, lines)
	}
	if code, _, _ := post(t, base, "/api/pull", `{"model":"llama3"}`); code != 501 {
		t.Errorf("pull of another: %d, want 501", code)
	}
}

// TestRoutes: the root probe clients use ("Ollama is running", HEAD too), and every
// endpoint specd cannot serve answering in Ollama's shape: 501 saying why, 405 for a
// wrong method, 404 for anything else — JSON a client can read, never a page.
func TestRoutes(t *testing.T) {
	base := serve(t, &stub{}, nil)
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, base+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "Ollama is running"
		if method == "HEAD" {
			want = ""
		}
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s /: %d %q", method, resp.StatusCode, body)
		}
	}
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string // the Allow header a 405 must carry
	}{
		{"POST", "/api/embed", 501, ""}, {"POST", "/api/embeddings", 501, ""}, {"POST", "/api/create", 501, ""}, {"POST", "/api/copy", 501, ""},
		{"DELETE", "/api/delete", 501, ""}, {"POST", "/api/push", 501, ""}, {"HEAD", "/api/blobs/sha256:00", 501, ""},
		{"GET", "/api/generate", 405, "POST"}, {"POST", "/api/tags", 405, "GET, HEAD"}, {"DELETE", "/api/version", 405, "GET, HEAD"},
		{"GET", "/api/nothing", 404, ""},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		derr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status || tc.method != "HEAD" && (derr != nil || e.Error == "") {
			t.Errorf("%s %s: %d %+v %v, want %d with an error", tc.method, tc.path, resp.StatusCode, e, derr, tc.status)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

// TestBodyAndAuthorization: a body over the bound is a 413 and an Authorization header
// gRPC metadata cannot carry a 401, both in Ollama's shape.
func TestBodyAndAuthorization(t *testing.T) {
	base := serve(t, &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_EOS, "ok")}, nil)
	big := `{"model":"big","prompt":"` + strings.Repeat("x", openaihttp.DefaultMaxBodyBytes) + `"}`
	code, _, lines := post(t, base, "/api/generate", big)
	if code != http.StatusRequestEntityTooLarge || len(lines) != 1 || lines[0]["error"] == nil {
		t.Errorf("large body: %d %v", code, lines)
	}
	req, _ := http.NewRequest("POST", base+"/api/generate", strings.NewReader(`{"model":"big","prompt":"x"}`))
	req.Header.Set("Authorization", "Bearer \x80key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || e.Error == "" {
		t.Errorf("bad Authorization: %d %+v", resp.StatusCode, e)
	}
}

// TestLogprobs: each token's log-probability, and the likeliest at its position,
// come with the text that carries it, streamed (a line for a token whose text is held
// back too) and not; without logprobs, none.
func TestLogprobs(t *testing.T) {
	s := &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_EOS, "Once", "", " upon")}
	base := serve(t, s, nil)
	want := `[{"token":"Once","logprob":-0.5,"bytes":[79,110,99,101],"top_logprobs":[{"token":"a","logprob":0,"bytes":[97]},{"token":"b","logprob":-1,"bytes":[98]}]},` +
		`{"token":"","logprob":-1.5,"top_logprobs":[{"token":"a","logprob":0,"bytes":[97]},{"token":"b","logprob":-1,"bytes":[98]}]},` +
		`{"token":" upon","logprob":-2.5,"bytes":[32,117,112,111,110],"top_logprobs":[{"token":"a","logprob":0,"bytes":[97]},{"token":"b","logprob":-1,"bytes":[98]}]}]`
	var v any
	json.Unmarshal([]byte(want), &v)
	norm, _ := json.Marshal(v) // keys in the order a decoded object is written
	want = string(norm)
	for _, path := range []string{"/api/generate", "/api/chat"} {
		body := `{"model":"big","prompt":"x","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":2`
		_, _, lines := post(t, base, path, body+`,"stream":false}`)
		got, _ := json.Marshal(lines[0]["logprobs"])
		if string(got) != want {
			t.Errorf("%s unstreamed: logprobs %s, want %s", path, got, want)
		}
		_, _, lines = post(t, base, path, body+`}`)
		var all []any
		for _, l := range lines {
			if lp, ok := l["logprobs"].([]any); ok {
				all = append(all, lp...)
			}
		}
		got, _ = json.Marshal(all)
		if string(got) != want || len(lines) != 4 {
			t.Errorf("%s streamed: %d lines, logprobs %s, want 4 lines and %s", path, len(lines), got, want)
		}
		_, _, lines = post(t, base, path, `{"model":"big","prompt":"x","messages":[{"role":"user","content":"x"}],"top_logprobs":2,"stream":false}`)
		if lines[0]["logprobs"] != nil {
			t.Errorf("%s without logprobs: %v", path, lines[0])
		}
	}
}

// TestModelNamesCaseBlind: a model is named case-blind, its tag "latest" too, as
// Ollama matches names; the router is asked for the model by its own name, and the
// answer echoes the name as the client sent it. Another name is still a 404.
func TestModelNamesCaseBlind(t *testing.T) {
	s := &stub{generate: reply(specdv1.FinishReason_FINISH_REASON_EOS, "ok")}
	base := serve(t, s, nil)
	for _, name := range []string{"BIG", "Big:LATEST"} {
		code, _, lines := post(t, base, "/api/generate", `{"model":"`+name+`","prompt":"x","raw":true,"stream":false}`)
		if code != 200 || lines[0]["model"] != name || lines[0]["response"] != "ok" {
			t.Errorf("generate %s: %d %v", name, code, lines)
		}
		if code, _, lines := post(t, base, "/api/show", `{"model":"`+name+`"}`); code != 200 {
			t.Errorf("show %s: %d %v", name, code, lines)
		}
		if code, _, lines := post(t, base, "/api/pull", `{"model":"`+name+`","stream":false}`); code != 200 || lines[0]["status"] != "success" {
			t.Errorf("pull %s: %d %v", name, code, lines)
		}
	}
	for _, r := range s.requests() {
		if r.GetModel() != "big" {
			t.Errorf("the router was asked for model %q, want big", r.GetModel())
		}
	}
	if code, _, lines := post(t, base, "/api/generate", `{"model":"BIGGER","prompt":"x"}`); code != 404 || lines[0]["error"] != "model 'BIGGER' not found" {
		t.Errorf("generate BIGGER: %d %v", code, lines)
	}
}
