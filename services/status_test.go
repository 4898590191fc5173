package services

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/draft"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/quota"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/verifier"
)

// TestStatus: each kind of error maps to its code, wrapped or not, and a BusyError
// carries its retry hint as a RetryInfo detail.
func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{BadField("max_tokens", "0"), codes.InvalidArgument},
		{fmt.Errorf("request: %w", sample.ErrInvalid), codes.InvalidArgument},
		{fmt.Errorf("pass: %w", kvcache.ErrExhausted), codes.ResourceExhausted},
		{verifier.ErrQueueFull, codes.ResourceExhausted},
		{&BusyError{Err: ErrBusy, RetryAfter: time.Second}, codes.ResourceExhausted},
		{fmt.Errorf("route: %w", ErrUnavailable), codes.Unavailable},
		{ErrNotReady, codes.Unavailable},
		{ErrIncompatible, codes.FailedPrecondition},
		{fmt.Errorf("messages: %w", chat.ErrNoTemplate), codes.FailedPrecondition},
		{fmt.Errorf("%w: rewritten", chat.ErrContinue), codes.InvalidArgument},
		{fmt.Errorf("%w: reserved", chat.ErrVars), codes.InvalidArgument},
		{fmt.Errorf("render: %w: bad", chat.ErrTemplate), codes.FailedPrecondition},
		{&chat.RaisedError{Msg: "roles must alternate"}, codes.InvalidArgument},
		{fmt.Errorf("%w \"gpt-17\"", ErrUnknownModel), codes.NotFound},
		{fmt.Errorf("get: %w", ErrTooManyConns), codes.ResourceExhausted},
		{fmt.Errorf("peer: %w", ErrUnauthenticated), codes.Unauthenticated},
		{fmt.Errorf("peer spiffe://x/y: %w", ErrPermissionDenied), codes.PermissionDenied},
		{fmt.Errorf("stream: %w", context.Canceled), codes.Canceled},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("%w: unknown API key", ErrUnauthenticated), codes.Unauthenticated},
		{fmt.Errorf("%w: key alice may not use model m", ErrPermissionDenied), codes.PermissionDenied},
		{Refused(&quota.Refusal{Name: "alice", Reason: quota.ErrRate, RetryAfter: time.Second}), codes.ResourceExhausted},
		{status.Error(codes.NotFound, "kept"), codes.NotFound},
		// A verdict the draft cannot follow is the verifier's bad input, not the draft
		// failing: it must not count against the draft's breaker (PeerDown).
		{fmt.Errorf("session 3: %w: position 9, draft holds 4 tokens", draft.ErrBadVerdict), codes.InvalidArgument},
		{fmt.Errorf("a bug"), codes.Internal},
	} {
		if got := status.Code(Status(tc.err)); got != tc.code {
			t.Errorf("Status(%v) = %v, want %v", tc.err, got, tc.code)
		}
	}
	if Status(nil) != nil {
		t.Error("Status(nil) != nil")
	}
	st := status.Convert(Status(&BusyError{Err: ErrBusy, RetryAfter: 250 * time.Millisecond}))
	var hint time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			hint = ri.GetRetryDelay().AsDuration()
		}
	}
	if hint != 250*time.Millisecond {
		t.Errorf("BusyError's RetryInfo delay = %v, want 250ms", hint)
	}
	// A refusal while loading is told apart from a peer down: the router moves the
	// request on without counting it against the verifier's breaker.
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{Status(fmt.Errorf("generate: %w", ErrNotReady)), true},
		{status.Error(codes.Unavailable, ErrNotReady.Error()), false},
		{Status(ErrUnavailable), false},
		{fmt.Errorf("generate: %w", ErrNotReady), false},
	} {
		if got := NotReady(tc.err); got != tc.want {
			t.Errorf("NotReady(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestStatusFieldDetail: a FieldError, wrapped or not, carries its field as a
// google.rpc.BadRequest detail, so the HTTP front door can name the parameter.
// A conversation the chat template refuses is a bad messages field.
func TestStatusFieldDetail(t *testing.T) {
	for _, tc := range []struct {
		err         error
		field, desc string
	}{
		{BadField("sampling.top_p", "1.5: want (0, 1]"), "sampling.top_p", "1.5: want (0, 1]"},
		{fmt.Errorf("render: %w", &chat.RaisedError{Msg: "roles must alternate"}), "messages", "render: " + (&chat.RaisedError{Msg: "roles must alternate"}).Error()},
	} {
		st := status.Convert(Status(tc.err))
		var fields []string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					fields = append(fields, v.GetField()+" / "+v.GetDescription())
				}
			}
		}
		if want := tc.field + " / " + tc.desc; len(fields) != 1 || fields[0] != want {
			t.Errorf("Status(%v): BadRequest detail = %q, want [%q]", tc.err, fields, want)
		}
		if st.Code() != codes.InvalidArgument || st.Message() != tc.field+": "+tc.desc {
			t.Errorf("Status(%v) = %v %q, want InvalidArgument %q", tc.err, st.Code(), st.Message(), tc.field+": "+tc.desc)
		}
	}
}
