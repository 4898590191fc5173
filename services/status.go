// Package services adapts specd's domain cores (router, verifier, draft) to gRPC: the
// servers, their clients, conversions between protobuf and domain types, and the one
// function that chooses gRPC status codes. Packages below it never import gRPC.
package services

import (
	"context"
	"errors"
	"fmt"

	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/draft"
	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/verifier"
)

// FieldError is a bad request field; it maps to InvalidArgument naming the field, in
// the message and in a google.rpc.BadRequest detail.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// BadField returns a FieldError for field.
func BadField(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Sentinel errors of the service layer.
var (
	// ErrBusy: the service cannot take the request now (its admission wait ran out,
	// or its peer will not take more); retry later.
	ErrBusy = errors.New("server busy")
	// ErrUnavailable: no endpoint of the needed role is reachable.
	ErrUnavailable = errors.New("no endpoint available")
	// ErrIncompatible: a draft and a verifier do not share a tokenizer.
	ErrIncompatible = errors.New("incompatible models")
	// ErrNotReady: the service has not finished loading its model.
	ErrNotReady = errors.New("model not loaded yet")
	// ErrUnknownModel: the request names a model no verifier serves.
	ErrUnknownModel = errors.New("unknown model")
	// ErrUnauthenticated: the caller presented no credentials this server can check:
	// no verified TLS client certificate, or no API key (or one the key file does not
	// hold).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller is authenticated but not allowed to do what it
	// asks: its certificate's identity is not in the server's allowed list, or its
	// API key may not use the model.
	ErrPermissionDenied = errors.New("permission denied")
)

// ReasonNotReady is the reason of the google.rpc.ErrorInfo detail (domain
// ErrorDomain) that an UNAVAILABLE answer carries when the service refused the call
// because it has not loaded its model yet (ErrNotReady): the call never started, so a
// caller may take it elsewhere without counting it as the peer's failure.
const ReasonNotReady = "MODEL_NOT_LOADED"

// ErrorDomain is the domain of specd's google.rpc.ErrorInfo details.
const ErrorDomain = "specd.dev"

// NotReady reports whether err, from a call to a peer, is that peer's refusal because
// it has not loaded its model yet (see ReasonNotReady).
func NotReady(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == ReasonNotReady && ei.GetDomain() == ErrorDomain {
			return true
		}
	}
	return false
}

// BusyError is a refusal for lack of capacity (it wraps ErrBusy or another
// resource error) with a hint of when to retry; it maps to ResourceExhausted with a
// google.rpc.RetryInfo detail.
type BusyError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *BusyError) Error() string { return e.Err.Error() }
func (e *BusyError) Unwrap() error { return e.Err }

// PeerDown reports whether err, from a call to a peer (a verifier or a draft), means
// that the peer itself failed — UNAVAILABLE, INTERNAL, UNKNOWN (an error carrying no
// status: the connection failed, or the peer broke the protocol) or ABORTED — rather
// than that it answered with a refusal of the call, such as RESOURCE_EXHAUSTED when
// full or INVALID_ARGUMENT. Only the former should count against the peer's circuit
// breaker or move a request elsewhere as after a crash.
func PeerDown(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.Aborted:
		return true
	}
	return false
}

// Status turns an error into a gRPC status error. It is the one place where specd
// chooses status codes: bad input is InvalidArgument naming the field, full queues and
// KV budgets are ResourceExhausted, unreachable peers are Unavailable, context errors
// are Canceled or DeadlineExceeded, and Internal is left for bugs.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	var fe *FieldError
	var be *BusyError
	if errors.As(err, &be) {
		st := status.New(codes.ResourceExhausted, err.Error())
		if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(be.RetryAfter)}); derr == nil {
			st = d
		}
		return st.Err()
	}
	switch {
	case errors.Is(err, ErrNotReady):
		st := status.New(codes.Unavailable, err.Error())
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonNotReady, Domain: ErrorDomain}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, ErrSendStalled):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.As(err, &fe):
		// The field also travels as a google.rpc.BadRequest detail, so a translator in
		// front of the API (the OpenAI front door) names it without parsing the text.
		st := status.New(codes.InvalidArgument, err.Error())
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.Field, Description: fe.Msg}}}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, sample.ErrInvalid), errors.Is(err, model.ErrBadToken),
		errors.Is(err, generate.ErrEmptyPrompt), errors.Is(err, model.ErrContextFull),
		errors.Is(err, draft.ErrBadVerdict):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, kvcache.ErrExhausted), errors.Is(err, ErrBusy), errors.Is(err, verifier.ErrQueueFull),
		errors.Is(err, ErrTooManyConns):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, chat.ErrContinue):
		// The final message cannot be continued: the template does not render its
		// content as it is, say.
		return Status(&FieldError{Field: "continue_final_message", Msg: err.Error()})
	case errors.Is(err, chat.ErrVars):
		return Status(&FieldError{Field: "chat_template_kwargs", Msg: err.Error()})
	case errors.Is(err, chat.ErrRejected), errors.Is(err, chat.ErrArguments):
		// The model's template refused the conversation (roles out of order, say), or a
		// tool call's arguments are no JSON: a bad messages field, named in the detail
		// as well.
		return Status(&FieldError{Field: "messages", Msg: err.Error()})
	case errors.Is(err, ErrIncompatible), errors.Is(err, chat.ErrNoTemplate), errors.Is(err, chat.ErrTemplate):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrUnknownModel):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
