// Package draftsvc serves the draft model over gRPC: the DraftService's bidirectional
// Speculate stream, on which a verifier starts a session and the draft streams
// proposals while applying verdicts.
package draftsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/specd-dev/specd/draft"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/spec"
)

// Server implements speculationv1.DraftServiceServer.
type Server struct {
	speculationv1.UnimplementedDraftServiceServer
	ready atomic.Pointer[services.Engines] // nil until the model is loaded
	cfg   Config
	log   *slog.Logger
}

// Config tunes the draft service.
type Config struct {
	Depth int // proposals in flight per session (pipelining depth); at least 1
	// Branches is how many alternative continuations a session drafts, from its guesses
	// of the correction, while a round is being verified; 0 drafts none. On two shared
	// vCPUs they cost more than they save: the draft stays busy and answers verdicts
	// later (docs/benchmarks.md).
	Branches int
}

var _ speculationv1.DraftServiceServer = (*Server)(nil)

// New returns a draft server; it answers UNAVAILABLE until SetEngines.
func New(cfg Config, log *slog.Logger) *Server {
	cfg.Depth = max(cfg.Depth, 1)
	cfg.Branches = max(cfg.Branches, 0)
	return &Server{cfg: cfg, log: log}
}

// SetEngines makes the server serve with eng (its model is loaded).
func (s *Server) SetEngines(eng *services.Engines) { s.ready.Store(eng) }

func (s *Server) engines() (*services.Engines, error) {
	if e := s.ready.Load(); e != nil {
		return e, nil
	}
	return nil, services.ErrNotReady
}

// Info describes the draft model and its capacity.
func (s *Server) Info(ctx context.Context, _ *speculationv1.InfoRequest) (*speculationv1.InfoResponse, error) {
	eng, err := s.engines()
	if err != nil {
		return nil, services.Status(err)
	}
	return services.Info(eng, "draft"), nil
}

// Speculate runs one draft session: the first message must be Start; proposals flow
// back while verdicts arrive. The stream ends when the verifier closes its side.
func (s *Server) Speculate(stream speculationv1.DraftService_SpeculateServer) error {
	return services.Status(s.speculate(stream))
}

func (s *Server) speculate(stream speculationv1.DraftService_SpeculateServer) error {
	ctx := stream.Context()
	eng, err := s.engines()
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return services.BadField("start", "the first message of a Speculate stream must be start")
	}
	m := eng.Model
	if h := start.GetTokenizerHash(); h != "" && h != m.Tok.Hash() {
		return fmt.Errorf("%w: verifier tokenizer %.12s…, draft %s has %.12s…", services.ErrIncompatible, h, m.Name, m.Tok.Hash())
	}
	ctxIDs := start.GetContextIds()
	if len(ctxIDs) == 0 {
		return services.BadField("start.context_ids", "empty")
	}
	for i, id := range ctxIDs {
		if id < 0 || int(id) >= m.Vocab {
			return services.BadField("start.context_ids", "token %d at %d is outside the vocabulary of %d", id, i, m.Vocab)
		}
	}
	if len(ctxIDs) >= m.Context {
		return services.BadField("start.context_ids", "%d tokens fill the draft's context of %d", len(ctxIDs), m.Context)
	}
	sp, err := services.SamplingFromProto(start.GetSampling())
	if err != nil {
		return err
	}
	mode := spec.Coupled
	if start.GetMode() == specdv1.VerificationMode_VERIFICATION_MODE_REJECTION {
		mode = spec.Rejection
	}
	maxPos := min(int(start.GetMaxPosition()), m.Context)
	if maxPos == 0 {
		maxPos = m.Context
	}
	st, release, err := eng.Acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	sess, err := draft.NewSession(st, ctxIDs, spec.Options{
		Sampling: sp, Mode: mode, Gamma: int(start.GetGamma()), MaxPosition: maxPos, ProposalTopK: int(start.GetProposalTopK()),
		Branches: s.cfg.Branches,
	})
	if err != nil {
		return err
	}
	defer sess.Close()

	// One goroutine receives verdicts; this one drafts and sends.
	verdicts := make(chan spec.Verdict, 64)
	recvErr := make(chan error, 1)
	go func() {
		defer close(verdicts)
		for {
			msg, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			v := msg.GetVerdict()
			if v == nil {
				recvErr <- services.BadField("verdict", "expected a verdict after start")
				return
			}
			select {
			case verdicts <- services.VerdictFromProto(v):
			case <-ctx.Done():
				return
			}
		}
	}()
	apply := func(v spec.Verdict) error { return sess.Apply(v) }
	for {
		// Apply every verdict already here before drafting more.
		for drained := false; !drained; {
			select {
			case v, ok := <-verdicts:
				if !ok {
					return streamEnd(recvErr)
				}
				if err := apply(v); err != nil {
					return err
				}
			default:
				drained = true
			}
		}
		// Draft ahead on the main line; when enough is in flight, use the wait to
		// draft branches (if configured) from likely corrections of the round being
		// verified.
		draft := sess.Branch
		if sess.Outstanding() < s.cfg.Depth && sess.CanDraft() {
			draft = sess.Draft
		}
		t0 := time.Now()
		p, ok, err := draft(func() bool { return len(verdicts) > 0 })
		if err != nil {
			return err
		}
		if ok {
			p.Drafting = time.Since(t0)
			if err := stream.Send(&speculationv1.SpeculateResponse{Kind: &speculationv1.SpeculateResponse_Proposal{Proposal: services.ProposalToProto(p)}}); err != nil {
				return err
			}
			continue
		}
		select {
		case v, ok := <-verdicts:
			if !ok {
				return streamEnd(recvErr)
			}
			if err := apply(v); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// streamEnd is the result of a session whose verdict stream closed: nil for a clean
// close by the verifier, else the receive error.
func streamEnd(recvErr chan error) error {
	select {
	case err := <-recvErr:
		return err
	default:
		return nil
	}
}
