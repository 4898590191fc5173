package openaihttp_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/openaihttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stub is a GenerationService whose methods are function fields, served over real
// gRPC on loopback: it stands for the router where a test needs an answer the real
// one gives only under conditions a test cannot arrange (an auth refusal, a quota).
type stub struct {
	specdv1.UnimplementedGenerationServiceServer
	generate func(*specdv1.GenerateRequest, specdv1.GenerationService_GenerateServer) error
	complete func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error)
}

// Generate runs the generate field; without one, it streams complete's answer as a
// router would: one chunk with its prompt's log-probabilities, one with its tokens,
// the final message.
func (s *stub) Generate(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
	if s.generate != nil {
		return s.generate(r, st)
	}
	res, err := s.complete(st.Context(), r)
	if err != nil {
		return err
	}
	for _, c := range []*specdv1.TokenChunk{{PromptLogprobs: res.GetPromptLogprobs()}, {TokenIds: res.GetTokenIds(), Text: res.GetText(), Logprobs: res.GetLogprobs()}} {
		if proto.Size(c) == 0 {
			continue
		}
		if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: c}}); err != nil {
			return err
		}
	}
	return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{
		FinishReason: res.GetFinishReason(), Stats: res.GetStats(), EndLogprobs: res.GetEndLogprobs()}}})
}

func (s *stub) Complete(ctx context.Context, r *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
	return s.complete(ctx, r)
}

func (s *stub) ListModels(context.Context, *specdv1.ListModelsRequest) (*specdv1.ListModelsResponse, error) {
	return &specdv1.ListModelsResponse{Models: []*specdv1.ModelInfo{
		{Name: "big", Role: "verifier", ContextLength: 512, VocabSize: 4096},
		{Name: "small", Role: "draft"},
	}}, nil
}

// serveStub serves s over gRPC and the front door over HTTP, both on loopback, and
// returns the front door's base URL.
func serveStub(t testing.TB, s *stub, maxBody int64, dial ...grpc.DialOption) string {
	t.Helper()
	return serveStubWith(t, s, maxBody, nil, dial...)
}

// serveStubWith is serveStub with the handler set up by setup (nil: as it comes).
func serveStubWith(t testing.TB, s *stub, maxBody int64, setup func(*openaihttp.Handler), dial ...grpc.DialOption) string {
	t.Helper()
	return serveStubLogged(t, s, maxBody, setup, nil, dial...)
}

// serveStubLogged is serveStubWith with the handler logging to log.
func serveStubLogged(t testing.TB, s *stub, maxBody int64, setup func(*openaihttp.Handler), log *slog.Logger, dial ...grpc.DialOption) string {
	t.Helper()
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	specdv1.RegisterGenerationServiceServer(gs, s)
	go gs.Serve(glis)
	cc, err := services.Dial(glis.Addr().String(), dial...)
	if err != nil {
		t.Fatal(err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h := openaihttp.NewHandler(specdv1.NewGenerationServiceClient(cc), maxBody, 0, log)
		if setup != nil {
			setup(h)
		}
		if err := openaihttp.Serve(ctx, hlis, h, time.Second, nil); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		cc.Close()
		gs.Stop()
	})
	return "http://" + hlis.Addr().String() + "/v1"
}

func client(base string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{option.WithBaseURL(base), option.WithAPIKey("sk-test"), option.WithMaxRetries(0)}, opts...)...)
}

// TestErrorMapping: each gRPC status the router may answer becomes the HTTP status,
// OpenAI error type, code and parameter the OpenAI client reports, with Retry-After
// from the RetryInfo of a RESOURCE_EXHAUSTED.
func TestErrorMapping(t *testing.T) {
	var fail error
	base := serveStub(t, &stub{complete: func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
		return nil, fail
	}}, 0)
	c := client(base)
	for _, tc := range []struct {
		err                error
		status             int
		typ, code, param   string
		retryAfter, inText string
	}{
		{services.Status(services.BadField("sampling.top_p", "1.5: want (0, 1]")), 400, "invalid_request_error", "", "top_p", "", "top_p: 1.5"},
		{services.Status(services.BadField("max_tokens", "600 new tokens exceed the context")), 400, "invalid_request_error", "", "max_tokens", "", "context"},
		{services.Status(services.BadField("prompt_ids", "token 9999 is outside")), 400, "invalid_request_error", "", "prompt", "", "prompt: token 9999"},
		{status.Error(codes.FailedPrecondition, "no chat template"), 400, "invalid_request_error", "", "", "", "template"},
		{status.Error(codes.Unauthenticated, "missing API key"), 401, "authentication_error", "invalid_api_key", "", "", "API key"},
		{status.Error(codes.PermissionDenied, "key may not use model big"), 403, "permission_error", "permission_denied", "", "", "big"},
		{services.Status(fmt.Errorf("%w \"gpt-17\"", services.ErrUnknownModel)), 404, "invalid_request_error", "model_not_found", "model", "", "gpt-17"},
		{services.Status(&services.BusyError{Err: services.ErrBusy, RetryAfter: 1500 * time.Millisecond}), 429, "rate_limit_error", "rate_limit_exceeded", "", "2", "busy"},
		{services.Status(services.ErrUnavailable), 503, "server_error", "service_unavailable", "", "", "no endpoint"},
		{status.Error(codes.DeadlineExceeded, "too slow"), 504, "server_error", "timeout", "", "", "too slow"},
		{status.Error(codes.Internal, "a bug"), 500, "server_error", "", "", "", "a bug"},
	} {
		fail = tc.err
		_, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
			Model: "big", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}})
		var e *openai.Error
		if !errors.As(err, &e) {
			t.Errorf("%v: Completions.New = %v, want an *openai.Error", tc.err, err)
			continue
		}
		challenge := "" // RFC 9110: a 401 names the scheme to authenticate with
		if tc.status == http.StatusUnauthorized {
			challenge = `Bearer realm="specd"`
		}
		got := fmt.Sprintf("%d %s code=%q param=%q retry-after=%q www-authenticate=%q", e.StatusCode, e.Type, e.Code, e.Param,
			e.Response.Header.Get("Retry-After"), e.Response.Header.Get("WWW-Authenticate"))
		want := fmt.Sprintf("%d %s code=%q param=%q retry-after=%q www-authenticate=%q", tc.status, tc.typ, tc.code, tc.param, tc.retryAfter, challenge)
		if got != want || !strings.Contains(e.Message, tc.inText) {
			t.Errorf("%v: error = %s %q, want %s with %q", tc.err, got, e.Message, want, tc.inText)
		}
	}
}

// TestAuthorizationForwarded: the HTTP Authorization header reaches the router as
// the gRPC authorization metadata, for generation and for the model list alike.
func TestAuthorizationForwarded(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(ctx context.Context) {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		seen = append(seen, strings.Join(md.Get("authorization"), ","))
		mu.Unlock()
	}
	base := serveStub(t, &stub{
		complete: func(ctx context.Context, r *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
			record(ctx)
			return &specdv1.CompleteResponse{Text: "ok", FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}, nil
		},
		generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
			record(st.Context())
			return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}}})
		},
	}, 0)
	c := client(base, option.WithAPIKey("sk-secret-1"))
	params := openai.CompletionNewParams{Model: "big", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}}
	if _, err := c.Completions.New(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	s := c.Completions.NewStreaming(context.Background(), params)
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	want := "Bearer sk-secret-1"
	if len(seen) != 2 || seen[0] != want || seen[1] != want {
		t.Errorf("authorization metadata seen by the router = %q, want %q twice", seen, want)
	}
}

// TestAuthorizationNotMetadata: an Authorization header that gRPC metadata cannot
// carry (bytes outside printable ASCII, which HTTP allows in a header) is the
// client's bad credential, 401 — not the 500 of the gRPC client's refusal to send it
// — and the router is not called.
func TestAuthorizationNotMetadata(t *testing.T) {
	var calls int
	var mu sync.Mutex
	base := serveStub(t, &stub{
		complete: func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return &specdv1.CompleteResponse{Text: "ok", FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}, nil
		},
	}, 0)
	for _, auth := range []string{"Bearer sk-caf\u00e9", "Bearer\tsk-tab"} {
		for _, tc := range []struct{ method, path, body string }{
			{"POST", "/completions", `{"model":"big","prompt":"x"}`},
			{"POST", "/completions", `{"model":"big","prompt":"x","stream":true}`},
			{"GET", "/models", ""},
		} {
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", auth)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), `"authentication_error"`) || strings.Contains(string(b), "sk-") {
				t.Errorf("%s %s with Authorization %q = %d %s, want 401 authentication_error without the key", tc.method, tc.path, auth, resp.StatusCode, b)
			}
		}
	}
	if calls != 0 {
		t.Errorf("the router was called %d times, want 0", calls)
	}
}

// TestStreamErrors: a stream the router refuses before any message is an HTTP error;
// one that fails after tokens were sent keeps them and ends with an error event, not
// data: [DONE].
func TestStreamErrors(t *testing.T) {
	var midway bool
	base := serveStub(t, &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		if !midway {
			return services.Status(services.BadField("stop", "stop string 0 is empty"))
		}
		if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{5}, Text: "Once"}}}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "verifier lost")
	}}, 0)
	c := client(base)
	params := openai.CompletionNewParams{Model: "big", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}}
	s := c.Completions.NewStreaming(context.Background(), params)
	for s.Next() {
		t.Errorf("refused stream delivered %v", s.Current())
	}
	var e *openai.Error
	if !errors.As(s.Err(), &e) || e.StatusCode != 400 || e.Param != "stop" {
		t.Errorf("refused stream: err = %v, want a 400 naming stop", s.Err())
	}

	midway = true
	s = c.Completions.NewStreaming(context.Background(), params)
	var text string
	for s.Next() {
		for _, ch := range s.Current().Choices {
			text += ch.Text
		}
	}
	if text != "Once" || s.Err() == nil || !strings.Contains(s.Err().Error(), "verifier lost") {
		t.Errorf("stream failing midway: text %q, err %v; want \"Once\" and an error event naming the cause", text, s.Err())
	}
}

// TestHTTPErrors: what is wrong at the HTTP level — an unknown path, a served path with
// the wrong method (405 with Allow), a body over the limit, a body that is not JSON —
// is an OpenAI-shaped error too.
func TestHTTPErrors(t *testing.T) {
	root := strings.TrimSuffix(serveStub(t, &stub{}, 1024), "/v1")
	for _, tc := range []struct {
		method, path, body string
		status             int
		inBody             string
		allow              string // the Allow header a 405 must carry
	}{
		{"GET", "/v1/nowhere", "", 404, `"code":"unknown_url"`, ""},
		{"POST", "/tokenize/x", "", 404, `"code":"unknown_url"`, ""},
		{"GET", "/v1/completions", "", 405, `"code":"method_not_allowed"`, "POST"},
		{"PUT", "/v1/chat/completions", "{}", 405, `"type":"invalid_request_error"`, "POST"},
		{"OPTIONS", "/v1/chat/completions", "", 405, `"code":"method_not_allowed"`, "POST"},
		{"POST", "/v1/models", "{}", 405, `"code":"method_not_allowed"`, "GET, HEAD"},
		{"DELETE", "/v1/models/big", "", 405, `"code":"method_not_allowed"`, "GET, HEAD"},
		{"GET", "/tokenize", "", 405, `"code":"method_not_allowed"`, "POST"},
		{"POST", "/health", "", 405, `"code":"method_not_allowed"`, "GET, HEAD"},
		{"POST", "/v1/completions", `{"prompt":"` + strings.Repeat("a", 2000) + `"}`, 413, `"code":"request_too_large"`, ""},
		{"POST", "/v1/completions", `{"prompt":`, 400, `"param":null`, ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"n":17}`, 400, `"param":"n"`, ""},
		{"GET", "/v1/models/nope", "", 404, `"code":"model_not_found"`, ""},
		{"GET", "/v1/models/small", "", 404, `"code":"model_not_found"`, ""}, // drafts cannot be requested
		{"GET", "/v1/models/big", "", 200, `"context_length":512`, ""},
		{"POST", "/v1/completions", `{"prompt":"x","stop":"<&>","n":0}`, 400, `"message":"n: 0: want 1 to 16"`, ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"<b>","content":"x"}]}`, 400, `role \"<b>\"`, ""}, // not escaped for HTML
	} {
		req, _ := http.NewRequest(tc.method, root+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.inBody) || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s = %d %s (%s), want %d with %s", tc.method, tc.path, resp.StatusCode, b, resp.Header.Get("Content-Type"), tc.status, tc.inBody)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

// TestBodyOverLimitUnread: a request whose Content-Length is over the bound is a 413
// before its body is sent — a client that asked Expect: 100-continue is never told to
// go on, and one that did not is not made to send what it announced — and the server
// closes the connection, whose next bytes would be that body.
func TestBodyOverLimitUnread(t *testing.T) {
	addr := strings.TrimSuffix(strings.TrimPrefix(serveStub(t, &stub{}, 1024), "http://"), "/v1")
	for _, tc := range []struct{ name, path, expect string }{
		{"completions, 100-continue", "/v1/completions", "Expect: 100-continue\r\n"},
		{"chat, body announced", "/v1/chat/completions", ""},
		{"tokenize, 100-continue", "/tokenize", "Expect: 100-continue\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second)) // a server waiting for the body fails the test, not hangs it
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: specd\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n%s\r\n", tc.path, tc.expect)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), `"code":"request_too_large"`) || !resp.Close {
				t.Errorf("POST %s with a body announced over the bound = %d %s (Connection: close %v), want 413 request_too_large and the connection closed",
					tc.path, resp.StatusCode, body, resp.Close)
			}
		})
	}
}

// TestBodyTimeout: a body that does not arrive within the server's ReadTimeout is a
// 408 in OpenAI's shape, not a 400 that blames what it holds.
func TestBodyTimeout(t *testing.T) {
	// The body is read before the router is called: the handler needs no client.
	srv := httptest.NewUnstartedServer(openaihttp.NewHandler(nil, 0, 0, nil))
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a server that never answers fails the test, not hangs it
	fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: specd\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"code":"request_timeout"`) {
		t.Errorf("a body that stops coming = %d %s, want 408 request_timeout", resp.StatusCode, body)
	}
}

// TestModels: GET /v1/models lists the verifier models, in OpenAI's list shape.
func TestModels(t *testing.T) {
	before := time.Now().Unix()
	c := client(serveStub(t, &stub{}, 0))
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != "big" || page.Data[0].Object != "model" || page.Data[0].OwnedBy != "specd" {
		t.Errorf("Models.List = %+v, want only the verifier model big", page.Data)
	}
	m, err := c.Models.Get(context.Background(), "big")
	if err != nil || m.ID != "big" {
		t.Errorf("Models.Get(big) = %v, %v", m, err)
	}
	// created is a Unix time, as in OpenAI's API (vLLM and llama-server give one too):
	// 0 reads as 1970 to every client that shows it.
	if now := time.Now().Unix(); len(page.Data) == 0 || page.Data[0].Created < before || page.Data[0].Created > now || m.Created != page.Data[0].Created {
		t.Errorf("created: listed %+v, got %d; want the same Unix time in [%d, %d]", page.Data, m.Created, before, now)
	}
}

// BenchmarkFrontDoor measures what the front door adds to a request: HTTP, JSON and
// the gRPC hop to a router that answers at once (32 tokens, streamed and not).
func BenchmarkFrontDoor(b *testing.B) {
	final := &specdv1.Final{FinishReason: specdv1.FinishReason_FINISH_REASON_LENGTH, Stats: &specdv1.Stats{PromptTokens: 5, CompletionTokens: 32}}
	base := serveStub(b, &stub{
		complete: func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
			return &specdv1.CompleteResponse{Text: strings.Repeat(" word", 32), FinishReason: final.FinishReason, Stats: final.Stats}, nil
		},
		generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
			for i := range 32 {
				c := &specdv1.TokenChunk{TokenIds: []int32{int32(i)}, Positions: []uint32{uint32(5 + i)}, Text: " word"}
				if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: c}}); err != nil {
					return err
				}
			}
			return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: final}})
		},
	}, 0)
	c := client(base)
	p := openai.CompletionNewParams{Model: "big", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}, MaxTokens: openai.Int(32)}
	b.Run("complete", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Completions.New(context.Background(), p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stream", func(b *testing.B) {
		for b.Loop() {
			st := c.Completions.NewStreaming(context.Background(), p)
			for st.Next() {
			}
			if err := st.Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestTraceContinues: a client's W3C traceparent reaches the router's call, so the
// router's spans join the caller's trace.
func TestTraceContinues(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	defer otel.SetTextMapPropagator(prev)
	var got string
	base := serveStub(t, &stub{complete: func(ctx context.Context, r *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		got = strings.Join(md.Get("traceparent"), ",")
		return &specdv1.CompleteResponse{FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}, nil
	}}, 0, grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	c := client(base, option.WithHeader("traceparent", "00-"+trace+"-00f067aa0ba902b7-01"))
	if _, err := c.Completions.New(context.Background(), openai.CompletionNewParams{Model: "big",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "00-"+trace+"-") {
		t.Errorf("traceparent at the router = %q, want trace %s", got, trace)
	}
}

// TestStreamEndsCleanly: a stream that reached its final message ends as a success
// on the front door's side too, not as a call it cancelled (issue 14: healthy
// requests must not look failed in a trace).
func TestStreamEndsCleanly(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	base := serveStub(t, &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{5}, Text: "Once"}}}); err != nil {
			return err
		}
		return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}}})
	}}, 0, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp))))
	c := client(base)
	st := c.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{Model: "big",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}})
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d client spans ended, want 1", len(ended))
	}
	if s := ended[0].Status(); s.Code == otelcodes.Error {
		t.Errorf("the Generate client span ended %v %q, want no error", s.Code, s.Description)
	}
}

// TestStreamClientGoneLeavesNothing: a client that goes away mid-stream ends the
// handler, whatever its readers of the router's streams see first (the end of their
// call or the cancellation); goleak (TestMain) finds the handler otherwise. Ten rounds,
// as the readers choose between the two at random.
func TestStreamClientGoneLeavesNothing(t *testing.T) {
	base := serveStub(t, &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{5}, Text: "Once"}}}); err != nil {
			return err
		}
		<-st.Context().Done()
		return st.Context().Err()
	}}, 0)
	for range 10 {
		for _, n := range []int{1, 3} {
			ctx, cancel := context.WithCancel(context.Background())
			body := fmt.Sprintf(`{"model":"big","prompt":"x","stream":true,"n":%d}`, n)
			req, _ := http.NewRequestWithContext(ctx, "POST", base+"/completions", strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "data: ") {
				t.Fatalf("n=%d: first line %q, %v", n, line, err)
			}
			cancel()
			resp.Body.Close()
		}
	}
}

// TestStreamChoicesOneAtATime: a router that serves a request's choices one at a time
// (a verifier full of other requests, or running fewer at once than n) answers the
// second choice only once the first has ended. The first choice's output must be read
// meanwhile: unread, it fills its stream's flow-control window, its generation stops
// there, and neither choice ever ends. (The stub stands for a verifier of a model
// whose context holds that much output; the shared models' do not.) A choice refused
// after another has begun is still an HTTP error, not a stream.
func TestStreamChoicesOneAtATime(t *testing.T) {
	const chunks, size = 2000, 1000 // 2 MB per choice: past any window gRPC starts with
	slot := make(chan struct{}, 1)
	base := serveStub(t, &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		select {
		case slot <- struct{}{}:
		case <-st.Context().Done():
			return st.Context().Err()
		}
		defer func() { <-slot }()
		if r.GetSampling().GetSeed() == 8 && r.GetMaxTokens() == 1 {
			return services.Status(services.BadField("prompt", "too long"))
		}
		text := strings.Repeat("y", size)
		for range chunks {
			if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{5}, Text: text}}}); err != nil {
				return err
			}
		}
		return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{FinishReason: specdv1.FinishReason_FINISH_REASON_LENGTH}}})
	}}, 0)
	c := client(base)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	params := openai.CompletionNewParams{Model: "big", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")},
		N: openai.Int(2), Seed: openai.Int(7), MaxTokens: openai.Int(chunks)}
	s := c.Completions.NewStreaming(ctx, params)
	text := make([]int, 2)
	finished := 0
	for s.Next() {
		for _, ch := range s.Current().Choices {
			text[ch.Index] += len(ch.Text)
			if ch.FinishReason != "" {
				finished++
			}
		}
	}
	if err := s.Err(); err != nil || finished != 2 || text[0] != chunks*size || text[1] != chunks*size {
		t.Fatalf("two choices served one at a time: %d finished, %v bytes of text, err %v; want 2 of %d bytes each", finished, text, err, chunks*size)
	}

	params.MaxTokens = openai.Int(1) // the second choice (seed 8) is refused
	s = c.Completions.NewStreaming(ctx, params)
	for s.Next() {
	}
	var e *openai.Error
	if !errors.As(s.Err(), &e) || e.StatusCode != 400 || e.Param != "prompt" {
		t.Errorf("second choice refused: err = %v, want a 400 naming prompt", s.Err())
	}
}

// TestHealthUnavailable: GET /health without a usable verifier is a 503 with the error
// every other endpoint gives for UNAVAILABLE (server_error / service_unavailable, as
// docs/operations.md maps it), not a code of its own.
func TestHealthUnavailable(t *testing.T) {
	base := serveStubWith(t, &stub{}, 0, func(h *openaihttp.Handler) {
		h.SetReady(func(context.Context) error { return errors.New("no verifier is usable") })
	})
	resp, err := http.Get(strings.TrimSuffix(base, "/v1") + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), `"type":"server_error"`) || !strings.Contains(string(b), `"code":"service_unavailable"`) {
		t.Errorf("GET /health, unready = %d %s; want 503, server_error, service_unavailable", resp.StatusCode, b)
	}
}

// TestIgnoredFieldsLogged: fields an endpoint does not read are ignored, as vLLM
// ignores them, and named in one debug record per request (none when every field is
// read), so that an operator can tell why a parameter had no effect.
func TestIgnoredFieldsLogged(t *testing.T) {
	logs := &records{}
	router := &stub{complete: func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
		return &specdv1.CompleteResponse{Text: "x", FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}, nil
	}}
	base := serveStubLogged(t, router, 0, nil, slog.New(logs))
	for _, c := range []struct {
		path, body string
		want       []string // nil: no record
	}{
		{"/chat/completions", `{"model":"big","messages":[{"role":"user","content":"x"}],"max_token":5,"store":true,"metadata":{"a":"b"},"seed":1}`, []string{"max_token", "metadata", "store"}},
		{"/chat/completions", `{"model":"big","messages":[{"role":"user","content":"x"}],"logprobs":false,"parallel_tool_calls":true,"stream_options":null}`, nil},
		{"/completions", `{"model":"big","prompt":"x","messages":[],"echo":false,"suffix":""}`, []string{"messages"}},
		{"/completions", `{"model":"big","prompt":"x","max_tokens":3,"guided_regex":"x","top_k":4}`, nil},
	} {
		before := logs.len()
		res, err := http.Post(base+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("POST %s %s: %s %s", c.path, c.body, res.Status, b)
		}
		logs.mu.Lock()
		added := logs.recs[before:]
		logs.mu.Unlock()
		var got []string
		for _, rec := range added {
			rec.Attrs(func(a slog.Attr) bool {
				if a.Key == "fields" {
					got = a.Value.Any().([]string)
				}
				return true
			})
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) || (c.want == nil) != (len(added) == 0) {
			t.Errorf("POST %s %s: %d records, fields %v; want %v", c.path, c.body, len(added), got, c.want)
		}
	}
}
