package openaihttp

import (
	"context"
	"errors"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/specd-dev/specd/services"
)

// Serve serves h on lis until ctx ends, then shuts down: it stops accepting, waits up
// to grace for requests in flight (streams included) to finish, and then closes the
// connections that remain, which cancels their router calls. What the HTTP server
// itself reports (a failed TLS handshake, a malformed request) goes to log at info
// (nil: nowhere), one record per services.RefusalLogEvery with the number held back
// (refused_unlogged), as the gRPC servers log refusals: anyone who can connect can
// make such a report.
func Serve(ctx context.Context, lis net.Listener, h http.Handler, grace time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           h,
		ErrorLog:          stdlog.New(&sampledLog{log: log, sample: services.LogSampler{Every: services.RefusalLogEvery}}, "", 0),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute, // the whole body; streams write for as long as they generate
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// sampledLog is the HTTP server's error log: it passes one line of each kind per
// sample period to log, with the number of lines of that kind held back since the
// last one. A kind is the line up to " from " (net/http's reports of a client name it
// there), else the whole line: so a panic's report, which names no client that way,
// always shows.
type sampledLog struct {
	log    *slog.Logger
	sample services.LogSampler
}

func (l *sampledLog) Write(p []byte) (int, error) {
	kind, _, _ := strings.Cut(string(p), " from ")
	if ok, held := l.sample.Allow(kind, time.Now()); ok {
		l.log.Info(strings.TrimSpace(string(p)), "refused_unlogged", held)
	}
	return len(p), nil
}
