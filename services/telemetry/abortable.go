package telemetry

import (
	"context"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// abortable is a span exporter whose exports can be cut short from outside, so that
// a Shutdown that ran out of time still stops everything it started instead of
// leaving the batch processor retrying in the background.
type abortable struct {
	sdktrace.SpanExporter
	abortCtx context.Context
	abort    context.CancelFunc
	once     sync.Once
	closed   chan struct{} // closed when the wrapped exporter's Shutdown has returned
}

func newAbortable(e sdktrace.SpanExporter) *abortable {
	ctx, cancel := context.WithCancel(context.Background())
	return &abortable{SpanExporter: e, abortCtx: ctx, abort: cancel, closed: make(chan struct{})}
}

func (a *abortable) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(a.abortCtx, cancel)()
	return a.SpanExporter.ExportSpans(ctx, spans)
}

func (a *abortable) Shutdown(ctx context.Context) error {
	defer a.once.Do(func() { close(a.closed) })
	return a.SpanExporter.Shutdown(ctx)
}

// abortGrace bounds the wait for an aborted exporter to close; it only matters if the
// exporter ignores cancellation.
const abortGrace = 5 * time.Second

// abortAndWait cancels any export under way and waits (within abortGrace) for the
// batch processor to shut the exporter down.
func (a *abortable) abortAndWait() {
	a.abort()
	t := time.NewTimer(abortGrace)
	defer t.Stop()
	select {
	case <-a.closed:
	case <-t.C:
	}
}
