package openaihttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TokenizeRequest is the body of POST /tokenize, as vLLM's server takes it: a text
// prompt (chat messages are not supported: their template is rendered by the verifier
// as a generation runs).
type TokenizeRequest struct {
	Model            string          `json:"model"`
	Prompt           *string         `json:"prompt"`
	AddSpecialTokens *bool           `json:"add_special_tokens"` // BOS (and EOS) as the vocabulary asks; default true
	ReturnTokenStrs  bool            `json:"return_token_strs"`
	Messages         json.RawMessage `json:"messages"`
}

// TokenizeResponse is the answer of POST /tokenize. MaxModelLen is the model's
// context length (omitted when the request names no model and several are served).
type TokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len,omitempty"`
	Tokens      []int32  `json:"tokens"`
	TokenStrs   []string `json:"token_strs,omitempty"` // the vocabulary's pieces ("Ġworld", "▁the"), with return_token_strs
}

// DetokenizeRequest is the body of POST /detokenize, as vLLM's server takes it.
// Special tokens show as their text unless SkipSpecialTokens (as Hugging Face's
// decode does by default).
type DetokenizeRequest struct {
	Model             string   `json:"model"`
	Tokens            *[]int32 `json:"tokens"`
	SkipSpecialTokens bool     `json:"skip_special_tokens"`
}

// DetokenizeResponse is the answer of POST /detokenize.
type DetokenizeResponse struct {
	Prompt string `json:"prompt"`
}

// tokenize serves POST /tokenize with the router's Tokenize.
func (h *Handler) tokenize(w http.ResponseWriter, r *http.Request) {
	var req TokenizeRequest
	ctx, e := h.readRequest(w, r, &req)
	switch {
	case e != nil:
	case len(req.Messages) > 0 && string(req.Messages) != "null":
		e = badParam("messages", "not supported: tokenize the rendered prompt as prompt")
	case req.Prompt == nil:
		e = badParam("prompt", "missing")
	}
	if e != nil {
		h.fail(w, r, e)
		return
	}
	resp, err := h.client.Tokenize(ctx, &specdv1.TokenizeRequest{Model: req.Model, Text: *req.Prompt, AddBos: req.AddSpecialTokens == nil || *req.AddSpecialTokens})
	if err != nil {
		h.fail(w, r, fromStatus(err, nil))
		return
	}
	out := TokenizeResponse{Count: len(resp.GetTokenIds()), Tokens: resp.GetTokenIds(), MaxModelLen: h.contextLength(ctx, req.Model)}
	if out.Tokens == nil {
		out.Tokens = []int32{}
	}
	if req.ReturnTokenStrs {
		out.TokenStrs = resp.GetPieces()
	}
	writeJSON(w, http.StatusOK, out)
}

// detokenize serves POST /detokenize with the router's Detokenize.
func (h *Handler) detokenize(w http.ResponseWriter, r *http.Request) {
	var req DetokenizeRequest
	ctx, e := h.readRequest(w, r, &req)
	if e == nil && req.Tokens == nil {
		e = badParam("tokens", "missing")
	}
	if e != nil {
		h.fail(w, r, e)
		return
	}
	resp, err := h.client.Detokenize(ctx, &specdv1.DetokenizeRequest{Model: req.Model, TokenIds: *req.Tokens, SkipSpecialTokens: req.SkipSpecialTokens})
	if err != nil {
		e := fromStatus(err, nil)
		if rest, ok := strings.CutPrefix(e.Message, "token_ids: "); ok && e.Param == "token_ids" {
			e.Param, e.Message = "tokens", "tokens: "+rest // the name the client used
		}
		h.fail(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, DetokenizeResponse{Prompt: resp.GetText()})
}

// contextLength is the context length of the verifiers' model, the one named or the
// only one served; 0 if that is not known.
func (h *Handler) contextLength(ctx context.Context, model string) int {
	resp, err := h.client.ListModels(ctx, &specdv1.ListModelsRequest{})
	if err != nil {
		return 0
	}
	n, found := 0, 0
	for _, m := range modelList(resp).Data {
		if m.ID == model || model == "" {
			n, found = m.Specd.ContextLength, found+1
		}
	}
	if found != 1 {
		return 0
	}
	return n
}

// health serves GET /health: 200 while the router can serve generations (a verifier
// is usable), 503 otherwise, for load balancers' and Kubernetes' HTTP probes.
func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	if h.ready != nil {
		if err := h.ready(r.Context()); err != nil {
			writeError(w, &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: "service_unavailable", Message: err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// SetReady sets the check GET /health answers with: nil error while the router can
// serve generations. Without one, /health answers 200 while the HTTP server runs.
// Call it before serving.
func (h *Handler) SetReady(ready func(context.Context) error) { h.ready = ready }

// readRequest reads r's JSON body (at most the handler's bound) into v and returns
// the context of the router call.
func (h *Handler) readRequest(w http.ResponseWriter, r *http.Request, v any) (context.Context, *Error) {
	body, e := h.readBody(w, r)
	if e != nil {
		return nil, e
	}
	if err := decode(body, v); err != nil {
		return nil, fromStatus(err, nil)
	}
	return Outgoing(r)
}

// readBody reads r's body, at most the handler's bound.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	return ReadBody(w, r, h.maxBody)
}

// ReadBody reads r's body, at most maxBody bytes: a larger one is a 413, a body that
// does not arrive within the server's ReadTimeout a 408, one that breaks off a 400. A
// body whose Content-Length is already over the bound is refused
// before a byte of it is read — and before a client that sent Expect: 100-continue is
// told to send it — and the server closes the connection rather than drain it.
func ReadBody(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, *Error) {
	if r.ContentLength > maxBody {
		return nil, tooLarge(maxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, tooLarge(mb.Limit)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &Error{Status: http.StatusRequestTimeout, Type: TypeInvalidRequest, Code: "request_timeout",
				Message: "reading the request body: the client sent it too slowly"}
		}
		return nil, &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Message: "reading the request body: " + err.Error()}
	}
	return body, nil
}

// tooLarge is the 413 for a body over limit bytes.
func tooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Type: TypeInvalidRequest, Code: "request_too_large",
		Message: fmt.Sprintf("request body over %d bytes", limit)}
}
