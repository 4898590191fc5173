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

// fromStatus turns the error of a router call for c (nil: not a generation) into an
// OpenAI error. It is the one place where gRPC codes become HTTP statuses:
//
//	INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE → 400 invalid_request_error (param from the BadRequest detail)
//	UNAUTHENTICATED     → 401 authentication_error, code invalid_api_key
//	PERMISSION_DENIED   → 403 permission_error
//	NOT_FOUND           → 404 invalid_request_error, code model_not_found, param model
//	RESOURCE_EXHAUSTED  → 429 rate_limit_error, Retry-After from the RetryInfo detail
//	UNAVAILABLE         → 503 server_error
//	DEADLINE_EXCEEDED   → 504 server_error
//	CANCELED            → 499 (the client has gone; nobody reads it)
//	anything else       → 500 server_error
func fromStatus(err error, c *Call) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Status: 499, Type: TypeInvalidRequest, Message: "request cancelled by the client"}
	}
	st := status.Convert(err)
	msg := st.Message()
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		e = &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Message: msg}
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
	case codes.ResourceExhausted:
		e = &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: "rate_limit_exceeded", Message: msg}
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				e.RetryAfter = ri.GetRetryDelay().AsDuration()
			}
		}
		return e
	}
	if m, ok := byCode[st.Code()]; ok {
		e := m
		e.Message = msg
		return &e
	}
	return &Error{Status: http.StatusInternalServerError, Type: TypeServer, Message: msg}
}

// byCode maps the codes that need nothing but their message.
var byCode = map[codes.Code]Error{
	codes.Unauthenticated:  {Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: "invalid_api_key"},
	codes.PermissionDenied: {Status: http.StatusForbidden, Type: TypePermission, Code: "permission_denied"},
	codes.NotFound:         {Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: "model_not_found", Param: "model"},
	codes.Unavailable:      {Status: http.StatusServiceUnavailable, Type: TypeServer, Code: "service_unavailable"},
	codes.DeadlineExceeded: {Status: http.StatusGatewayTimeout, Type: TypeServer, Code: "timeout"},
	codes.Canceled:         {Status: 499, Type: TypeInvalidRequest},
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
