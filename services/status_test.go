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
}
