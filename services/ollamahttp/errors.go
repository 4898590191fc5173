package ollamahttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
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
// into an answer. It is the one place where gRPC codes become HTTP statuses:
//
//	INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE → 400, the gRPC field renamed as this API names it
//	UNAUTHENTICATED     → 401
//	PERMISSION_DENIED   → 403
//	NOT_FOUND           → 404 "model 'NAME' not found"
//	RESOURCE_EXHAUSTED  → 429 for a key's quota, else 503 (Ollama's "server busy"), Retry-After from the RetryInfo detail
//	UNAVAILABLE         → 503
//	DEADLINE_EXCEEDED   → 504
//	CANCELED            → 499 (the client has gone; nobody reads it)
//	anything else       → 500
func fromStatus(err error, model string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Status: 499, Message: "request cancelled by the client"}
	}
	st := status.Convert(err)
	msg := st.Message()
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return &Error{Status: http.StatusBadRequest, Message: renameField(msg)}
	case codes.NotFound:
		return notFound(model)
	case codes.ResourceExhausted:
		e = &Error{Status: http.StatusServiceUnavailable, Message: "server busy, please try again: " + msg}
		if strings.Contains(msg, quota.ErrRate.Error()) || strings.Contains(msg, quota.ErrStreams.Error()) {
			e.Status, e.Message = http.StatusTooManyRequests, msg
		}
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				e.RetryAfter = ri.GetRetryDelay().AsDuration()
			}
		}
		return e
	case codes.Unauthenticated:
		return &Error{Status: http.StatusUnauthorized, Message: msg}
	case codes.PermissionDenied:
		return &Error{Status: http.StatusForbidden, Message: msg}
	case codes.Unavailable:
		return &Error{Status: http.StatusServiceUnavailable, Message: msg}
	case codes.DeadlineExceeded:
		return &Error{Status: http.StatusGatewayTimeout, Message: msg}
	case codes.Canceled:
		return &Error{Status: 499, Message: msg}
	}
	return &Error{Status: http.StatusInternalServerError, Message: msg}
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
