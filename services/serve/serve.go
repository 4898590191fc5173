// Package serve wires specd's services into running gRPC servers: a verifier, a draft
// and a router, each serving until its context ends. The specd command and the
// end-to-end tests start exactly these.
package serve

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/routersvc"
	"github.com/specd-dev/specd/services/verifiersvc"
)

// Grace is how long a stopping server waits for streams to finish.
const Grace = 10 * time.Second

// Loader loads a model; the server answers health checks NOT_SERVING until it returns.
type Loader func() (*model.Model, error)

// Worker configures a model-serving service.
type Worker struct {
	Load   Loader
	Engine services.EngineConfig
	Log    *slog.Logger
	Ready  func(*model.Model) // called once serving; may be nil
}

// Verifier serves a verifier on lis until ctx ends.
func Verifier(ctx context.Context, w Worker, cfg verifiersvc.Config, lis net.Listener) error {
	srv := services.NewServer("specd.speculation.v1.VerifierService", w.Log)
	if cfg.Address == "" {
		cfg.Address = lis.Addr().String()
	}
	vs := verifiersvc.New(cfg, w.Log)
	defer vs.Close()
	speculationv1.RegisterVerifierServiceServer(srv.GRPC, vs)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, lis, Grace) }()
	m, eng, err := load(w)
	if err != nil {
		stop()
		<-errc
		return err
	}
	defer m.Close()
	defer eng.Close()
	vs.SetEngines(eng)
	srv.SetServing()
	w.Log.Info("verifier serving", "addr", lis.Addr().String(), "model", m.Name, "quant", m.Quant.String(), "threads", w.Engine.Threads)
	if w.Ready != nil {
		w.Ready(m)
	}
	return <-errc
}

// Draft serves a draft on lis until ctx ends, keeping depth proposals in flight.
func Draft(ctx context.Context, w Worker, depth int, lis net.Listener) error {
	srv := services.NewServer("specd.speculation.v1.DraftService", w.Log)
	ds := draftsvc.New(depth, w.Log)
	speculationv1.RegisterDraftServiceServer(srv.GRPC, ds)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, lis, Grace) }()
	m, eng, err := load(w)
	if err != nil {
		stop()
		<-errc
		return err
	}
	defer m.Close()
	defer eng.Close()
	ds.SetEngines(eng)
	srv.SetServing()
	w.Log.Info("draft serving", "addr", lis.Addr().String(), "model", m.Name, "quant", m.Quant.String(), "threads", w.Engine.Threads)
	if w.Ready != nil {
		w.Ready(m)
	}
	return <-errc
}

// load loads the model (a server that cannot load stops, and so does its listener).
func load(w Worker) (*model.Model, *services.Engines, error) {
	m, err := w.Load()
	if err != nil {
		return nil, nil, err
	}
	eng, err := services.NewEngines(m, w.Engine)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, eng, nil
}

// RouterConfig configures a router with static endpoints.
type RouterConfig struct {
	Verifiers, Drafts []string
	Refresh           time.Duration // how often to poll the endpoints' Info
	Log               *slog.Logger
	Ready             func()
}

// Router serves the public API on lis until ctx ends.
func Router(ctx context.Context, cfg RouterConfig, lis net.Listener) error {
	var eps []router.Endpoint
	for _, a := range cfg.Verifiers {
		eps = append(eps, router.Endpoint{ID: a, Address: a, Role: router.Verifier})
	}
	for _, a := range cfg.Drafts {
		eps = append(eps, router.Endpoint{ID: a, Address: a, Role: router.Draft})
	}
	disc := router.NewStatic(eps...)
	rs := routersvc.New(&router.Router{Discovery: disc}, cfg.Log)
	defer rs.Close()
	srv := services.NewServer("specd.v1.GenerationService", cfg.Log)
	specdv1.RegisterGenerationServiceServer(srv.GRPC, rs)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); rs.Refresh(rctx, disc, eps, cfg.Refresh) }()
	defer func() { stop(); wg.Wait() }()
	srv.SetServing()
	cfg.Log.Info("router serving", "addr", lis.Addr().String(), "verifiers", cfg.Verifiers, "drafts", cfg.Drafts)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	return srv.Serve(ctx, lis, Grace)
}
