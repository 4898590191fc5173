package openaihttp

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/toolcall"
)

// DefaultMaxBodyBytes bounds a request body when Handler.MaxBodyBytes is 0: far
// more than any prompt a model's context holds, far less than memory.
const DefaultMaxBodyBytes = 4 << 20

// Handler serves the OpenAI-compatible API over a router client.
type Handler struct {
	client  specdv1.GenerationServiceClient // the router's public API; every request is one call of it
	maxBody int64                           // bound of a request body; larger is 413
	stall   time.Duration                   // longest one write to a client may wait (sendStallWriter)
	log     *slog.Logger                    // requests that fail on the server's side, and at debug the fields a request had ignored; nil: none
	ready   func(context.Context) error     // GET /health's check (SetReady); nil: always ready
	tools   toolcall.Syntax                 // how replies write tool calls (SetToolParser); 0: tools are refused
	mux     *http.ServeMux
	started int64 // Unix time the handler was made: the models' created time
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a handler over client; maxBody bounds request bodies (0:
// DefaultMaxBodyBytes); sendStall bounds how long one write to a client that stopped
// reading may wait (0: services.DefaultSendStallTimeout); log records requests that
// fail on the server's side (nil: none).
func NewHandler(client specdv1.GenerationServiceClient, maxBody int64, sendStall time.Duration, log *slog.Logger) *Handler {
	h := &Handler{client: client, maxBody: cmp.Or(maxBody, DefaultMaxBodyBytes), stall: cmp.Or(sendStall, services.DefaultSendStallTimeout),
		log: log, mux: http.NewServeMux(), started: time.Now().Unix()}
	h.mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) { h.generate(w, r, ParseCompletion) })
	h.mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		h.generate(w, r, func(b []byte) (*Call, error) { return ParseChatTools(b, h.tools) })
	})
	h.mux.HandleFunc("GET /v1/models", h.models)
	h.mux.HandleFunc("GET /v1/models/{model...}", h.model)
	h.mux.HandleFunc("POST /tokenize", h.tokenize)
	h.mux.HandleFunc("POST /detokenize", h.detokenize)
	h.mux.HandleFunc("GET /health", h.health)
	h.mux.HandleFunc("/", other)
	return h
}

// methods are the paths served (a path under /v1/models/ is a model's), and the
// methods each takes: a request with another is 405. GET serves HEAD too, as
// net/http.ServeMux routes it.
var methods = map[string]string{"/v1/completions": "POST", "/v1/chat/completions": "POST", "/v1/models": "GET, HEAD",
	"/v1/models/": "GET, HEAD", "/tokenize": "POST", "/detokenize": "POST", "/health": "GET, HEAD"}

// other answers what no endpoint does, in OpenAI's shape (a client gets JSON it can
// read, never a page): a served path with the wrong method is 405 with Allow, as
// RFC 9110 asks and vLLM answers, anything else 404.
func other(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	allow, ok := methods[p]
	if !ok && strings.HasPrefix(p, "/v1/models/") {
		allow, ok = methods["/v1/models/"], true
	}
	if ok {
		w.Header().Set("Allow", allow)
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Type: TypeInvalidRequest, Code: "method_not_allowed",
			Message: fmt.Sprintf("%s %s: this endpoint takes %s", r.Method, p, allow)})
		return
	}
	writeError(w, &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: "unknown_url",
		Message: fmt.Sprintf("unknown URL: %s %s (this server serves POST /v1/completions, POST /v1/chat/completions, GET /v1/models, POST /tokenize, POST /detokenize and GET /health)", r.Method, p)})
}

// SetToolParser makes chat completions accept tools and find the calls in replies
// written in syntax (vLLM's --tool-call-parser); 0, the default, refuses tools unless
// tool_choice is "none". Call it before serving.
func (h *Handler) SetToolParser(syntax toolcall.Syntax) { h.tools = syntax }

// ServeHTTP routes a request to its endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(WithSendStall(w, h.stall), r)
}

// WithSendStall is w with each write given stall to go out (see sendStallWriter); 0
// is services.DefaultSendStallTimeout.
func WithSendStall(w http.ResponseWriter, stall time.Duration) http.ResponseWriter {
	return &sendStallWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: cmp.Or(stall, services.DefaultSendStallTimeout)}
}

// sendStallWriter gives each write to the client (and the flush after it) stall to
// go out: a client that stopped reading — the connection's buffers full — would
// otherwise hold the handler, and the goroutines reading its generations, for as long
// as it stays connected. Past it the write fails, the request's context ends and the
// server closes the connection. (The router's own send-stall timeout ends the
// generations' streams too, once the handler has stopped reading them.)
type sendStallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (w *sendStallWriter) Write(b []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.stall)) // unsupported (a test recorder): no deadline
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer (Flush, deadlines).
func (w *sendStallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Outgoing is the context of the router call for r: cancelled when the client goes
// away, carrying the client's credentials as gRPC metadata and, when the client sent
// a W3C traceparent, its trace (so the router's spans continue the caller's) — unless
// r's context has a span already (telemetry.HTTPHandler's, itself the caller's child),
// which the call is then made under. An Authorization header that gRPC metadata cannot
// carry — HTTP allows bytes outside printable ASCII in it, gRPC does not, and no API
// key has them — is a 401.
func Outgoing(r *http.Request) (context.Context, *Error) {
	ctx := r.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	if a := r.Header.Get("Authorization"); a != "" {
		if strings.IndexFunc(a, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0 {
			return nil, &Error{Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: "invalid_api_key",
				Message: "the Authorization header has characters outside printable ASCII: want \"Bearer <key>\""}
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
	}
	return ctx, nil
}

// generate serves one generation endpoint, parse being its request decoder.
func (h *Handler) generate(w http.ResponseWriter, r *http.Request, parse func([]byte) (*Call, error)) {
	body, e := h.readBody(w, r)
	if e != nil {
		writeError(w, e)
		return
	}
	c, err := parse(body)
	if err != nil {
		writeError(w, fromStatus(err, nil))
		return
	}
	if h.log != nil && h.log.Enabled(r.Context(), slog.LevelDebug) {
		// Unknown fields are ignored, as vLLM ignores them: say which, for whoever
		// wonders why a parameter had no effect.
		if f := Ignored(body, c.Chat); len(f) > 0 {
			h.log.DebugContext(r.Context(), "openai front door: request fields ignored", "path", r.URL.Path, "fields", f)
		}
	}
	id, created := newID(c.Chat), time.Now().Unix()
	// The id a client sees finds the request's trace (the HTTP span's, when there is one).
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("gen_ai.response.id", id))
	ctx, aerr := Outgoing(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if !c.Stream {
		res, err := h.complete(ctx, c)
		if err != nil {
			h.fail(w, r, fromStatus(err, c))
			return
		}
		if c.Chat {
			writeJSON(w, http.StatusOK, chatCompletion(c, id, created, res))
		} else {
			writeJSON(w, http.StatusOK, completion(c, id, created, res))
		}
		return
	}
	h.stream(ctx, w, r, c, id, created)
}

// complete runs c's choices side by side, one stream each (see collect), and returns
// their results in order; the first failure cancels the others and is the answer.
func (h *Handler) complete(ctx context.Context, c *Call) ([]*specdv1.CompleteResponse, error) {
	if c.N == 1 {
		res, err := h.collect(ctx, c.Req)
		return []*specdv1.CompleteResponse{res}, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := make([]*specdv1.CompleteResponse, c.N)
	var wg sync.WaitGroup
	for i := range c.N {
		wg.Go(func() {
			res, err := h.collect(ctx, c.Choice(i))
			if err != nil {
				cancel(err) // the first cause is kept
				return
			}
			out[i] = res
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// stream answers with server-sent events, the chunks of every choice in the order
// they come. The status is chosen when each choice's first message or an error has
// arrived, so a refused request is an HTTP error, not a stream; an error after that is
// sent as an error event, and the stream ends without data: [DONE]. So does a stream
// in which a choice's tool calls broke after they were sent (chunker.toolError), once
// every choice has ended.
//
// Each choice's stream is opened and read by a goroutine of its own from the start,
// and what comes before the status is chosen is held here: a router that serves the
// choices one after another (a verifier with no room for them all) starts the later
// ones only once the earlier ones have ended, and an earlier one whose output nobody
// read would stop at its stream's flow-control window and never end.
func (h *Handler) stream(ctx context.Context, w http.ResponseWriter, r *http.Request, c *Call, id string, created int64) {
	if c.Model == "" {
		// Chunks go out before the final message names the verifier's model: name the
		// router's only one in them, as the unstreamed response names it.
		c.Model = h.onlyModel(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	events := make(chan event)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs first: ends the gRPC streams, and the readers see it and stop
	for i := range c.N {
		wg.Go(func() { h.readChoice(ctx, i, c.Choice(i), events) })
	}
	var held []event
	started := make([]bool, c.N)
	for n := 0; n < c.N; {
		var ev event
		select {
		case ev = <-events:
		case <-ctx.Done():
			return // the client has gone
		}
		if ev.err != nil {
			h.fail(w, r, fromStatus(ev.err, c))
			return
		}
		if !started[ev.i] {
			started[ev.i] = true
			n++
		}
		held = append(held, ev)
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(v any) error {
		b, err := Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}
	k := newChunker(c, id, created)
	finals := make([]*specdv1.Final, c.N)
	for done := 0; done < c.N; {
		var ev event
		if len(held) > 0 {
			ev, held = held[0], held[1:]
		} else {
			select {
			case ev = <-events:
			case <-ctx.Done():
				return // the client has gone: the readers stop without a word
			}
		}
		if ev.err != nil {
			if ctx.Err() != nil {
				return
			}
			e := fromStatus(ev.err, c)
			h.logFailure(r, e)
			send(e.body())
			return
		}
		switch e := ev.msg.GetEvent().(type) {
		case *specdv1.GenerateResponse_Chunk:
			for _, v := range k.chunk(ev.i, e.Chunk) {
				if err := send(v); err != nil {
					return // the client has gone; cancel ends the calls
				}
			}
		case *specdv1.GenerateResponse_Final:
			finals[ev.i] = e.Final
			done++
			for _, v := range k.final(c, ev.i, e.Final) {
				if err := send(v); err != nil {
					return
				}
			}
		}
	}
	if c.IncludeUsage {
		if err := send(k.usage(finals)); err != nil {
			return
		}
	}
	if e := k.toolError(); e != nil {
		h.logFailure(r, e)
		send(e.body())
		return
	}
	if _, err := io.WriteString(w, "data: [DONE]\n\n"); err == nil {
		rc.Flush()
	}
}

// collect runs req as a Generate stream and gathers it into the response Complete
// gives. The stream's messages each stay under the gRPC message limits, while
// Complete's one message may not: a long prompt's log-probabilities with many
// likeliest tokens each, which an echo asks for, can exceed them (Complete refuses
// them), and an HTTP response has no such limit.
func (h *Handler) collect(ctx context.Context, req *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
	st, err := h.client.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &specdv1.CompleteResponse{}
	var text strings.Builder
	for {
		msg, err := Next(st)
		if err != nil {
			return nil, err
		}
		if f := msg.GetFinal(); f != nil {
			out.Text, out.FinishReason, out.Stats, out.EndLogprobs = text.String(), f.GetFinishReason(), f.GetStats(), f.GetEndLogprobs()
			return out, nil
		}
		c := msg.GetChunk()
		out.TokenIds = append(out.TokenIds, c.GetTokenIds()...)
		out.Logprobs = append(out.Logprobs, c.GetLogprobs()...)
		out.PromptLogprobs = append(out.PromptLogprobs, c.GetPromptLogprobs()...)
		text.WriteString(c.GetText())
	}
}

// Next receives st's next message. After the final message, the stream's last, it
// reads the stream's end (io.EOF, with the OK status) before returning, so that the
// call ends as a success rather than cancelled when the caller then ends it — in
// traces and metrics alike. A stream that ends without a final message is an error.
func Next(st specdv1.GenerationService_GenerateClient) (*specdv1.GenerateResponse, error) {
	msg, err := st.Recv()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the router ended the stream without a final message")
	}
	if err != nil {
		return nil, err
	}
	if msg.GetFinal() != nil {
		st.Recv()
	}
	return msg, nil
}

// event is what the reader of choice i's stream passes on: a message, or the error
// that ended the stream.
type event struct {
	i   int
	msg *specdv1.GenerateResponse
	err error
}

// readChoice opens choice i's stream with req and passes its messages to events, up to
// its final message or the error that ends it; it stops without a word when ctx ends.
func (h *Handler) readChoice(ctx context.Context, i int, req *specdv1.GenerateRequest, events chan<- event) {
	pass := func(ev event) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	st, err := h.client.Generate(ctx, req)
	if err != nil {
		pass(event{i: i, err: err})
		return
	}
	for {
		msg, err := Next(st)
		if err != nil {
			pass(event{i: i, err: err})
			return
		}
		if !pass(event{i: i, msg: msg}) || msg.GetFinal() != nil {
			return
		}
	}
}

// fail answers with e, logging it if the server failed.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, e *Error) {
	h.logFailure(r, e)
	writeError(w, e)
}

func (h *Handler) logFailure(r *http.Request, e *Error) {
	if h.log != nil && e.Status >= 500 {
		h.log.WarnContext(r.Context(), "openai front door: request failed", "path", r.URL.Path, "status", e.Status, "err", e.Message)
	}
}

// models serves GET /v1/models: the models that can be requested (the verifiers').
func (h *Handler) models(w http.ResponseWriter, r *http.Request) {
	list, err := h.list(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// model serves GET /v1/models/{model}.
func (h *Handler) model(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	list, err := h.list(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for _, m := range list.Data {
		if m.ID == name {
			writeJSON(w, http.StatusOK, m)
			return
		}
	}
	writeError(w, &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: "model_not_found", Param: "model",
		Message: fmt.Sprintf("the model %q is not served here", name)})
}

// list asks the router for its models.
func (h *Handler) list(r *http.Request) (*ModelList, *Error) {
	ctx, aerr := Outgoing(r)
	if aerr != nil {
		return nil, aerr
	}
	resp, err := h.client.ListModels(ctx, &specdv1.ListModelsRequest{})
	if err != nil {
		return nil, fromStatus(err, nil)
	}
	list := modelList(resp)
	for i := range list.Data {
		list.Data[i].Created = h.started
	}
	return list, nil
}

// modelList is the OpenAI list of the models a client can request: the verifiers'.
// onlyModel returns the name of the verifier model the router serves when it serves
// one, the one a request naming none is sent to; else (several, none, or the list
// refused) "".
func (h *Handler) onlyModel(ctx context.Context) string {
	resp, err := h.client.ListModels(ctx, &specdv1.ListModelsRequest{})
	if err != nil {
		return ""
	}
	name := ""
	for _, m := range resp.GetModels() {
		if m.GetRole() != "verifier" || m.GetName() == name {
			continue
		}
		if name != "" {
			return ""
		}
		name = m.GetName()
	}
	return name
}

func modelList(resp *specdv1.ListModelsResponse) *ModelList {
	out := &ModelList{Object: "list", Data: []Model{}}
	seen := map[string]bool{}
	for _, m := range resp.GetModels() {
		if m.GetRole() != "verifier" || seen[m.GetName()] {
			continue
		}
		seen[m.GetName()] = true
		out.Data = append(out.Data, Model{ID: m.GetName(), Object: "model", OwnedBy: "specd", Specd: &ModelInfo{
			Architecture: m.GetArchitecture(), Quantization: m.GetQuantization(), ContextLength: int(m.GetContextLength()),
			VocabSize: int(m.GetVocabSize()), Parameters: m.GetParameters()}})
	}
	return out
}

// newID is a fresh response id: "cmpl-" or "chatcmpl-" and 24 random hex digits.
func newID(chat bool) string {
	var b [12]byte
	rand.Read(b[:])
	if chat {
		return "chatcmpl-" + hex.EncodeToString(b[:])
	}
	return "cmpl-" + hex.EncodeToString(b[:])
}

// newToolCallID is a fresh tool call id: "call_" and 24 random hex digits.
func newToolCallID() string {
	var b [12]byte
	rand.Read(b[:])
	return "call_" + hex.EncodeToString(b[:])
}

// Marshal encodes v as JSON on one line, leaving <, > and & as they are (as OpenAI's
// API does) rather than escaping them for HTML.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":{"message":"encoding the response failed","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// writeError answers with e, and its retry hint as Retry-After in whole seconds
// (rounded up, at least 1).
func writeError(w http.ResponseWriter, e *Error) {
	SetErrorHeaders(w.Header(), e.Status, e.RetryAfter)
	writeJSON(w, e.Status, e.body())
}

// Challenge is the WWW-Authenticate of a 401, which RFC 9110 requires: a key goes in
// Authorization as a bearer token (RFC 6750).
const Challenge = `Bearer realm="specd"`

// SetErrorHeaders sets the headers an error answer with code carries: a 401's
// challenge, and retryAfter (> 0) as Retry-After in whole seconds, rounded up.
func SetErrorHeaders(h http.Header, code int, retryAfter time.Duration) {
	if code == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", Challenge)
	}
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
}
