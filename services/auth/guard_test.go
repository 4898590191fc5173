package auth_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/internal/testkeys"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/auth"
)

// slowTokenizer is a GenerationService whose Tokenize holds each call until release
// is closed, as the verifier does while it tokenizes a long text.
type slowTokenizer struct {
	specdv1.UnimplementedGenerationServiceServer
	entered chan struct{}
	release chan struct{}
}

func (s *slowTokenizer) Tokenize(ctx context.Context, r *specdv1.TokenizeRequest) (*specdv1.TokenizeResponse, error) {
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &specdv1.TokenizeResponse{}, nil
}

// TestStreamsBoundTokenize: a key's streams= bounds its Tokenize calls running at
// once as it bounds its generations. Tokenizing is the verifier's work too — about a
// second of CPU and 45 MB per MB of text, up to the 16 MiB message bound, measured with
// specd tokenize — and a key held to one request at a time must not run any number of
// them side by side.
func TestStreamsBoundTokenize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	testkeys.Write(t, path, testkeys.Line("alice", "sa", "streams=1"), 0)
	keys, err := auth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g := auth.NewGuard(keys, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	srv := grpc.NewServer(g.ServerOptions()...)
	impl := &slowTokenizer{entered: make(chan struct{}, 3), release: make(chan struct{})}
	specdv1.RegisterGenerationServiceServer(srv, impl)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := services.Dial(lis.Addr().String(), grpc.WithPerRPCCredentials(auth.Bearer("sa")))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := specdv1.NewGenerationServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first := make(chan error, 1)
	go func() { _, err := c.Tokenize(ctx, &specdv1.TokenizeRequest{Text: "x"}); first <- err }()
	<-impl.entered
	// Refused at once, or else held by the stub until this short deadline.
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	_, err = c.Tokenize(sctx, &specdv1.TokenizeRequest{Text: "x"})
	scancel()
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a second Tokenize while the first runs, key with streams=1 = %v, want ResourceExhausted", err)
	}
	close(impl.release)
	if err := <-first; err != nil {
		t.Errorf("the first Tokenize = %v, want OK", err)
	}
	if _, err := c.Tokenize(ctx, &specdv1.TokenizeRequest{Text: "x"}); err != nil {
		t.Errorf("Tokenize after the first ended = %v, want OK", err)
	}
}
