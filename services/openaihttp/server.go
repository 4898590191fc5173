package openaihttp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve serves h on lis until ctx ends, then shuts down: it stops accepting, waits up
// to grace for requests in flight (streams included) to finish, and then closes the
// connections that remain, which cancels their router calls. What the HTTP server
// itself reports (a failed TLS handshake, a malformed request) goes to log at info
// (nil: nowhere).
func Serve(ctx context.Context, lis net.Listener, h http.Handler, grace time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           h,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelInfo),
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
