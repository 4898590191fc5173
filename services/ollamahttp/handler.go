package ollamahttp

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/chat"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services/openaihttp"
	"github.com/specd-dev/specd/toolcall"
)

// Version is what GET /api/version reports: the release of Ollama whose API this
// front door follows (docs/api.md of that release), for clients that check it before
// using a feature (structured outputs, tools, done_reason "load").
const Version = "0.12.11"

// Handler serves Ollama's API over a router client.
type Handler struct {
	client  specdv1.GenerationServiceClient // the router's public API
	maxBody int64                           // bound of a request body; larger is 413
	stall   time.Duration                   // longest one write to a client may wait
	log     *slog.Logger                    // requests that fail on the server's side; nil: none
	tools   toolcall.Syntax                 // how replies write tool calls (SetToolParser); 0: tools are refused
	mux     *http.ServeMux
	started time.Time // when the handler was made: the models' modified_at
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a handler over client; maxBody bounds request bodies (0:
// openaihttp.DefaultMaxBodyBytes); sendStall bounds how long one write to a client
// that stopped reading may wait (0: the services default); log records requests that
// fail on the server's side (nil: none).
func NewHandler(client specdv1.GenerationServiceClient, maxBody int64, sendStall time.Duration, log *slog.Logger) *Handler {
	h := &Handler{client: client, maxBody: cmp.Or(maxBody, openaihttp.DefaultMaxBodyBytes), stall: sendStall, log: log,
		mux: http.NewServeMux(), started: time.Now().UTC()}
	h.mux.HandleFunc("POST /api/generate", func(w http.ResponseWriter, r *http.Request) { h.generate(w, r, ParseGenerate) })
	h.mux.HandleFunc("POST /api/chat", func(w http.ResponseWriter, r *http.Request) {
		h.generate(w, r, func(b []byte) (*Call, error) { return ParseChat(b, h.tools) })
	})
	h.mux.HandleFunc("GET /api/tags", h.tags)
	h.mux.HandleFunc("POST /api/show", h.show)
	h.mux.HandleFunc("GET /api/ps", h.ps)
	h.mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": Version})
	})
	h.mux.HandleFunc("POST /api/pull", h.pull)
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { // HEAD too
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Ollama is running")
	})
	h.mux.HandleFunc("/api/", h.other)
	return h
}

// SetToolParser makes chat requests accept tools and find the calls in replies
// written in syntax; 0, the default, refuses tools. Call it before serving.
func (h *Handler) SetToolParser(syntax toolcall.Syntax) { h.tools = syntax }

// ServeHTTP routes a request to its endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(openaihttp.WithSendStall(w, h.stall), r)
}

// Routes are the patterns (net/http.ServeMux) this handler answers on a listener it
// shares: Ollama's /api/ and the probe of its root.
var Routes = []string{"/api/", "GET /{$}"}

// refused are Ollama's endpoints that specd cannot serve, and why.
var refused = map[string]string{
	"/api/embed":      "specd does not compute embeddings",
	"/api/embeddings": "specd does not compute embeddings",
	"/api/create":     "specd does not create models: convert or quantize with `specd quantize` and restart the verifier with -m",
	"/api/copy":       "specd does not copy models: its models are the files its verifiers load",
	"/api/delete":     "specd does not delete models over its API",
	"/api/push":       "specd does not push models",
	"/api/blobs/":     "specd does not store blobs: its models are the files its verifiers load",
}

// methods are the endpoints served, and the methods each takes: a request with
// another is 405. GET serves HEAD too, as net/http.ServeMux routes it.
var methods = map[string]string{"/api/generate": "POST", "/api/chat": "POST", "/api/tags": "GET, HEAD", "/api/show": "POST",
	"/api/ps": "GET, HEAD", "/api/version": "GET, HEAD", "/api/pull": "POST"}

// other answers what no endpoint does: Ollama's endpoints specd cannot serve with 501
// saying why, a served endpoint with the wrong method with 405, anything else with a
// 404 in Ollama's shape (a client gets JSON it can read, never an HTML page).
func (h *Handler) other(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	for prefix, why := range refused {
		if p == prefix || strings.HasSuffix(prefix, "/") && strings.HasPrefix(p, prefix) {
			writeError(w, &Error{Status: http.StatusNotImplemented, Message: fmt.Sprintf("%s %s: %s", r.Method, p, why)})
			return
		}
	}
	if m, ok := methods[p]; ok {
		w.Header().Set("Allow", m)
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Message: fmt.Sprintf("%s %s: want %s", r.Method, p, m)})
		return
	}
	writeError(w, &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("unknown URL: %s %s (Ollama's API here: POST /api/generate, POST /api/chat, GET /api/tags, POST /api/show, GET /api/ps, GET /api/version)", r.Method, p)})
}

// generate serves /api/generate or /api/chat, parse being its request decoder.
func (h *Handler) generate(w http.ResponseWriter, r *http.Request, parse func([]byte) (*Call, error)) {
	body, oe := openaihttp.ReadBody(w, r, h.maxBody)
	if oe != nil {
		writeError(w, fromOpenAI(oe))
		return
	}
	c, err := parse(body)
	if err != nil {
		writeError(w, fromStatus(err, ""))
		return
	}
	ctx, oe := openaihttp.Outgoing(r)
	if oe != nil {
		writeError(w, fromOpenAI(oe))
		return
	}
	m, e := h.find(ctx, c.Model)
	if e == nil {
		c.Req.Model = m.GetName() // the router's spelling of the name the client sent
		e = c.opts.window(int(m.GetContextLength()), c.Req.Sampling)
	}
	if e != nil {
		h.fail(w, r, e)
		return
	}
	if c.Load {
		// The model is loaded for as long as specd runs: answer as Ollama does once it
		// has loaded one, or (keep_alive 0) once it has unloaded it, which here frees
		// nothing a request holds.
		now, reason := time.Now().UTC(), "load"
		if c.Unload {
			reason = "unload"
		}
		if c.Chat {
			writeJSON(w, http.StatusOK, &ChatResponse{Model: c.Model, CreatedAt: now, Message: Message{Role: "assistant"}, Done: true, DoneReason: reason})
		} else {
			writeJSON(w, http.StatusOK, &GenerateResponse{Model: c.Model, CreatedAt: now, Done: true, DoneReason: reason})
		}
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the router's stream, however the answer ends
	st, first, err := h.open(ctx, c)
	if err != nil {
		h.fail(w, r, fromStatus(err, c.Model))
		return
	}
	a := newAnswer(c)
	if !c.Stream {
		res, err := a.collect(st, first)
		if err != nil {
			h.fail(w, r, fromStatus(err, c.Model))
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(v any) error {
		b, err := openaihttp.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
		return rc.Flush()
	}
	for msg := first; ; {
		lines, e := a.lines(msg)
		for _, l := range lines {
			if err := send(l); err != nil {
				return // the client has gone; cancel ends the call
			}
		}
		if e != nil {
			h.logFailure(r, e)
			send(errorBody{Error: e.Message})
			return
		}
		if msg.GetFinal() != nil {
			return
		}
		if msg, err = openaihttp.Next(st); err != nil {
			if ctx.Err() == nil {
				e := fromStatus(err, c.Model)
				h.logFailure(r, e)
				send(errorBody{Error: e.Message})
			}
			return
		}
	}
}

// open starts c's generation and returns its stream with the first message, so that
// a request the router refuses is an HTTP error, not a stream. A templated generation
// for a model without a chat template is the prompt as it is, after its context, as
// Ollama's default template ("{{ .Prompt }}") makes it (see plain) — with a system
// message that has nowhere to go, a 400. A context before a prompt the model's chat
// template renders is a 400: the verifier renders the template, and the ids cannot go
// before its rendering.
func (h *Handler) open(ctx context.Context, c *Call) (specdv1.GenerationService_GenerateClient, *specdv1.GenerateResponse, error) {
	actx, cancel := context.WithCancel(ctx)
	st, first, err := h.start(actx, c.Req)
	switch {
	case err == nil && len(c.Context) > 0:
		cancel() // the model renders the prompt with its template: no room for the ids
		return nil, nil, badRequest("context", "%s renders prompts with its chat template, before which specd cannot put token ids: keep the conversation with /api/chat (or send raw: true with the whole text)", c.Model)
	case err != nil && !c.Chat && !c.Raw && noTemplate(err):
		cancel()
		if c.System != "" {
			return nil, nil, badRequest("system", "%s has no chat template to put a system message in: send raw: true with the whole prompt", c.Model)
		}
		if err := h.plain(ctx, c); err != nil {
			return nil, nil, err
		}
		actx, cancel = context.WithCancel(ctx)
		st, first, err = h.start(actx, c.Req)
	}
	if err != nil && c.Req.MaxTokens > 0 && overflows(err) {
		// num_predict beyond what the context has room for after the prompt: Ollama
		// generates until the context is full, and so does specd with no limit.
		cancel()
		c.Req.MaxTokens = 0
		actx, cancel = context.WithCancel(ctx)
		st, first, err = h.start(actx, c.Req)
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	context.AfterFunc(ctx, cancel) // the stream lives as long as the request
	return st, first, nil
}

// overflows reports whether err is the verifier's refusal of a max_tokens that does
// not fit in the context after the prompt.
func overflows(err error) bool {
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		return false
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField() == "max_tokens" && strings.Contains(st.Message(), "exceed the context")
		}
	}
	return false
}

// start opens a Generate stream with req and receives its first message.
func (h *Handler) start(ctx context.Context, req *specdv1.GenerateRequest) (specdv1.GenerationService_GenerateClient, *specdv1.GenerateResponse, error) {
	st, err := h.client.Generate(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	first, err := openaihttp.Next(st)
	if err != nil {
		return nil, nil, err
	}
	return st, first, nil
}

// noTemplate reports whether err is the verifier's refusal of messages for a model
// without a chat template (chat.ErrNoTemplate).
func noTemplate(err error) bool {
	st := status.Convert(err)
	return st.Code() == codes.FailedPrecondition && strings.Contains(st.Message(), chat.ErrNoTemplate.Error())
}

// plain makes the prompt of a templated generation for a model without a chat
// template: the ids of its context, then its prompt as the router tokenizes a text
// prompt (with the BOS the vocabulary asks for when no context comes before it;
// Tokenize with add_bos gives the ids a text prompt gets), so that the answer's
// context is exactly the sequence. Ollama detokenizes a context and tokenizes it again
// with the prompt; the ids themselves are the conversation it stands for.
func (h *Handler) plain(ctx context.Context, c *Call) error {
	ids := c.Context
	if c.Prompt != "" || len(ids) == 0 {
		resp, err := h.client.Tokenize(ctx, &specdv1.TokenizeRequest{Model: c.Req.Model, Text: c.Prompt, AddBos: len(c.Context) == 0})
		if err != nil {
			return err
		}
		ids = append(append([]int32(nil), c.Context...), resp.GetTokenIds()...)
	}
	if len(ids) == 0 {
		return badRequest("prompt", "empty, and the model's vocabulary adds no BOS to start it")
	}
	c.Req.Messages, c.Req.ChatTemplateKwargs, c.Req.PromptIds, c.plain = nil, "", ids, true
	return nil
}

// find returns the verifier model the client named (see ModelName); an error is a 404
// naming it as the client did, or the router's refusal.
func (h *Handler) find(ctx context.Context, name string) (*specdv1.ModelInfo, *Error) {
	resp, err := h.client.ListModels(ctx, &specdv1.ListModelsRequest{})
	if err != nil {
		return nil, fromStatus(err, name)
	}
	var vs []*specdv1.ModelInfo
	for _, m := range resp.GetModels() {
		if m.GetRole() == "verifier" {
			vs = append(vs, m)
		}
	}
	if m := match(vs, name); m != nil {
		return m, nil
	}
	return nil, notFound(name)
}

// fail answers with e, logging it if the server failed.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, e *Error) {
	h.logFailure(r, e)
	writeError(w, e)
}

func (h *Handler) logFailure(r *http.Request, e *Error) {
	if h.log != nil && e.Status >= 500 && e.Status != http.StatusNotImplemented {
		h.log.WarnContext(r.Context(), "ollama front door: request failed", "path", r.URL.Path, "status", e.Status, "err", e.Message)
	}
}

// writeJSON answers with v as one line of JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := openaihttp.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// writeError answers with e, and the headers an error carries (a 401's challenge,
// the retry hint as Retry-After).
func writeError(w http.ResponseWriter, e *Error) {
	openaihttp.SetErrorHeaders(w.Header(), e.Status, e.RetryAfter)
	writeJSON(w, e.Status, errorBody{Error: e.Message})
}

// readJSON reads r's body (at most the handler's bound) into v.
func (h *Handler) readJSON(w http.ResponseWriter, r *http.Request, v any) *Error {
	body, oe := openaihttp.ReadBody(w, r, h.maxBody)
	if oe != nil {
		return fromOpenAI(oe)
	}
	if err := decode(body, v); err != nil {
		return fromStatus(err, "")
	}
	return nil
}
