package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/trace"
)

// newLogger is the service's logger: JSON or text on cfg.Log, stamping trace ids.
func newLogger(cfg Config) (*slog.Logger, error) {
	w := cfg.Log
	if w == nil {
		w = os.Stderr
	}
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler
	switch cfg.LogFormat {
	case "", "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", cfg.LogFormat)
	}
	return slog.New(LogHandler(h)), nil
}

// LogHandler wraps h so that a record logged with a context holding a valid span
// (log.InfoContext(ctx, …) inside an RPC) carries that span's trace_id and span_id,
// joining the log line to its trace, and one logged with a context of an API key's
// request (WithKey) carries the key's name as "key". Records without either pass
// through unchanged. The attributes are added where the record's own go, so after
// WithGroup they sit inside the group.
func LogHandler(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	key := KeyFrom(ctx)
	if sc.IsValid() || key != "" {
		r = r.Clone()
	}
	if sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	if key != "" {
		r.AddAttrs(slog.String(AttrKey, key))
	}
	return h.Handler.Handle(ctx, r)
}

type keyCtx struct{}

// WithKey returns ctx marked as a request made with the API key called name (the
// name from the key file, never the key). The logs of LogHandler and the request
// metrics (RecordRequest) recorded with it carry the name.
func WithKey(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, keyCtx{}, name)
}

// KeyFrom is the API key name WithKey put in ctx ("" when none).
func KeyFrom(ctx context.Context) string {
	name, _ := ctx.Value(keyCtx{}).(string)
	return name
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
