package verifiersvc

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/spec"
)

// refusingDraft refuses every session as a full draft does, after reading its start.
type refusingDraft struct {
	speculationv1.UnimplementedDraftServiceServer
}

func (refusingDraft) Speculate(stream speculationv1.DraftService_SpeculateServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return status.Error(codes.ResourceExhausted, "draft full")
}

// TestVerdictToEndedDraftStream: a verdict sent on a draft stream the draft has ended
// fails with the draft's status, not the io.EOF that gRPC returns from a send on an
// ended stream. The request tells a draft's refusal (a status such as
// RESOURCE_EXHAUSTED) from its failure by that error: an io.EOF counted the refusal as
// a failure, against the draft's breaker at the router.
func TestVerdictToEndedDraftStream(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	speculationv1.RegisterDraftServiceServer(srv, refusingDraft{})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	defer func() { srv.Stop(); <-done }()
	s := New(Config{}, nil)
	defer s.conns.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := s.openDraft(ctx, lis.Addr().String(), []int32{1, 2, 3}, 3, 10, "", services.Request{}, nil, spec.Coupled, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	for range l.proposals { // the receiver has read the stream's end
	}
	err = l.send(spec.Verdict{Seq: 1, Position: 3, Tokens: []int32{4}})
	if status.Code(err) != codes.ResourceExhausted || services.PeerDown(err) {
		t.Errorf("verdict on a stream the draft refused: %v, want its RESOURCE_EXHAUSTED (a refusal)", err)
	}
}
