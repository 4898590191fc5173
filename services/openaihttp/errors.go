package openaihttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error types, as the "type" of an OpenAI error object.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
)

// Error is an OpenAI-shaped error with its HTTP status. Every error this package
// answers with is one.
type Error struct {
	Status     int    // HTTP status
	Type       string // one of the Type constants
	Message    string
	Param      string        // the offending request parameter; "" is null
	Code       string        // a machine-readable code, e.g. "model_not_found"; "" is null
	RetryAfter time.Duration // > 0: sent as the Retry-After header
}

func (e *Error) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%d %s: %s: %s", e.Status, e.Type, e.Param, e.Message)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message)
}

// body is the JSON envelope of e.
func (e *Error) body() errorBody {
	o := errorObject{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		o.Param = &e.Param
	}
	if e.Code != "" {
		o.Code = &e.Code
	}
	return errorBody{Error: o}
}

// badParam is a 400 naming param.
func badParam(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Param: param, Message: param + ": " + fmt.Sprintf(format, args...)}
}

// StatusClientClosed is the status of an answer to a client that has gone (nginx's
// 499): nobody reads it, but logs and metrics of a proxy in front see why.
const StatusClientClosed = 499

// HTTPStatus is the HTTP status of a router call that failed with code. It is the one
// place where gRPC codes become HTTP statuses, for both APIs of the front door:
//
//	INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE → 400
//	UNAUTHENTICATED     → 401
//	PERMISSION_DENIED   → 403
//	NOT_FOUND           → 404
//	RESOURCE_EXHAUSTED  → 429
//	UNAVAILABLE         → 503
//	DEADLINE_EXCEEDED   → 504
//	CANCELED            → 499 (StatusClientClosed)
//	anything else       → 500
//
// (Ollama's API answers a full server, RESOURCE_EXHAUSTED that is no key's quota,
// with 503 as Ollama does: see ollamahttp.)
func HTTPStatus(code codes.Code) int {
	switch code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return StatusClientClosed
	}
	return http.StatusInternalServerError
}

// RetryAfter is the retry hint of st's RetryInfo detail; 0 without one.
func RetryAfter(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// fromStatus turns the error of a router call for c (nil: not a generation) into an
// OpenAI error, its status from HTTPStatus and its type and code these:
//
//	400 invalid_request_error, param from the BadRequest detail
//	401 authentication_error, code invalid_api_key
//	403 permission_error, code permission_denied
//	404 invalid_request_error, code model_not_found, param model
//	429 rate_limit_error, code rate_limit_exceeded, Retry-After from the RetryInfo detail
//	503 server_error, code service_unavailable
//	504 server_error, code timeout
//	499 invalid_request_error (the client has gone; nobody reads it)
//	500 server_error
func fromStatus(err error, c *Call) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Status: StatusClientClosed, Type: TypeInvalidRequest, Message: "request cancelled by the client"}
	}
	st := status.Convert(err)
	msg := st.Message()
	code := HTTPStatus(st.Code())
	switch code {
	case http.StatusBadRequest:
		e = &Error{Status: code, Type: TypeInvalidRequest, Message: msg}
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
				field := br.GetFieldViolations()[0].GetField()
				e.Param = paramOf(field, c)
				rest, ok := strings.CutPrefix(msg, field+": ")
				switch {
				case !ok || e.Param == "":
				case e.Param == "tools" && strings.HasPrefix(field, "response_format"):
					// The schema a forced call is held to, made of the tools' parameters.
					e.Message = "tools: the schema of the call tool_choice forces, made of the tools' parameters: " + rest
				case e.Param != "tools": // a tool's field keeps its path ("tools[1].function.name: …")
					e.Message = e.Param + ": " + rest // the name the client used, not the gRPC field's
				case c != nil && c.toolIndex != nil:
					// The router got the tools allowed_tools lets through: its index is
					// one of those, the client's another.
					if k, tail, ok := toolField(field); ok && k < len(c.toolIndex) {
						e.Message = fmt.Sprintf("tools[%d]%s: %s", c.toolIndex[k], tail, rest)
					}
				}
			}
		}
		return e
	case http.StatusTooManyRequests:
		return &Error{Status: code, Type: TypeRateLimit, Code: "rate_limit_exceeded", Message: msg, RetryAfter: RetryAfter(st)}
	}
	e = &Error{Status: code, Type: TypeServer, Message: msg}
	if k, ok := byStatus[code]; ok {
		e.Type, e.Code, e.Param = k.Type, k.Code, k.Param
	}
	return e
}

// byStatus are the type, code and parameter of the statuses that need nothing but
// their message; any other is a server_error.
var byStatus = map[int]Error{
	http.StatusUnauthorized:       {Type: TypeAuthentication, Code: "invalid_api_key"},
	http.StatusForbidden:          {Type: TypePermission, Code: "permission_denied"},
	http.StatusNotFound:           {Type: TypeInvalidRequest, Code: "model_not_found", Param: "model"},
	http.StatusServiceUnavailable: {Type: TypeServer, Code: "service_unavailable"},
	http.StatusGatewayTimeout:     {Type: TypeServer, Code: "timeout"},
	StatusClientClosed:            {Type: TypeInvalidRequest},
}

// toolField splits a field path "tools[K]…" into K and the rest.
func toolField(field string) (k int, tail string, ok bool) {
	rest, ok := strings.CutPrefix(field, "tools[")
	if !ok {
		return 0, "", false
	}
	num, tail, ok := strings.Cut(rest, "]")
	if !ok {
		return 0, "", false
	}
	k, err := strconv.Atoi(num)
	return k, tail, err == nil && k >= 0
}

// paramOf names a field of specd.v1.GenerateRequest as the OpenAI parameter the
// client set it with.
func paramOf(field string, c *Call) string {
	switch {
	case field == "request":
		return ""
	case field == "prompt" || field == "prompt_ids":
		if c != nil && c.Chat {
			return "messages"
		}
		return "prompt"
	case field == "max_tokens" && c != nil:
		return c.maxTokensParam
	case strings.HasPrefix(field, "sampling."):
		return strings.TrimPrefix(field, "sampling.")
	case strings.HasPrefix(field, "messages"):
		return "messages"
	case strings.HasPrefix(field, "tools"):
		return "tools"
	case strings.HasPrefix(field, "response_format") && c != nil && c.formatParam != "" && c.formatParam != "response_format":
		return c.formatParam // guided_json, structured_outputs.json, json_schema; tools for a forced call
	}
	return field
}
