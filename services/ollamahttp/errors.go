package ollamahttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/quota"
	"github.com/specd-dev/specd/services/openaihttp"
)

// Error is an error answer: its HTTP status and the message of Ollama's {"error": …}.
// Every error this package answers with is one.
type Error struct {
	Status     int
	Message    string
	RetryAfter time.Duration // > 0: sent as the Retry-After header
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }

// badRequest is a 400 whose message starts with the parameter it is about.
func badRequest(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Message: param + ": " + fmt.Sprintf(format, args...)}
}

// notFound is Ollama's 404 for a model it does not have, naming it as the client did.
func notFound(model string) *Error {
	return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("model '%s' not found", model)}
}

// fromOpenAI is an error of the OpenAI front door's helpers (a body too large, an
// Authorization header gRPC cannot carry) in this API's shape.
func fromOpenAI(e *openaihttp.Error) *Error {
	return &Error{Status: e.Status, Message: e.Message, RetryAfter: e.RetryAfter}
}

// fromStatus turns the error of a router call about model (as the client named it)
// into an answer, its status openaihttp.HTTPStatus's but for a full server:
//
//	400                 the gRPC field renamed as this API names it
//	404                 "model 'NAME' not found"
//	RESOURCE_EXHAUSTED  429 for a key's quota, else 503 (Ollama's "server busy"), Retry-After from the RetryInfo detail
//	499                 "request cancelled by the client" when the client has gone (nobody reads it)
//	any other           the router's message
func fromStatus(err error, model string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Status: openaihttp.StatusClientClosed, Message: "request cancelled by the client"}
	}
	st := status.Convert(err)
	msg := st.Message()
	e = &Error{Status: openaihttp.HTTPStatus(st.Code()), Message: msg}
	switch e.Status {
	case http.StatusBadRequest:
		e.Message = renameField(msg)
	case http.StatusNotFound:
		e = notFound(model)
	case http.StatusTooManyRequests:
		e.RetryAfter = openaihttp.RetryAfter(st)
		if !strings.Contains(msg, quota.ErrRate.Error()) && !strings.Contains(msg, quota.ErrStreams.Error()) {
			e.Status, e.Message = http.StatusServiceUnavailable, "server busy, please try again: "+msg
		}
	}
	return e
}

// fields are the gRPC request fields a router's message may start with, and the
// names this API gives them.
var fields = []struct{ grpc, ollama string }{
	{"sampling.temperature", "options.temperature"},
	{"sampling.top_k", "options.top_k"},
	{"sampling.top_p", "options.top_p"},
	{"sampling.min_p", "options.min_p"},
	{"sampling.seed", "options.seed"},
	{"sampling.repetition_penalty", "options.repeat_penalty"},
	{"max_tokens", "options.num_predict"},
	{"stop", "options.stop"},
	{"response_format", "format"},
	{"prompt_ids", "context"},
}

// renameField rewrites the field a router's message starts with ("sampling.top_p: …")
// to the parameter the client set it with ("options.top_p: …").
func renameField(msg string) string {
	for _, f := range fields {
		if rest, ok := strings.CutPrefix(msg, f.grpc); ok && (strings.HasPrefix(rest, ":") || strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, "[")) {
			return f.ollama + rest
		}
	}
	return msg
}
