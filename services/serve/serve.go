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
	"github.com/specd-dev/specd/services/consul"
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
	Consul *Consul            // register in Consul while serving; nil: do not
}

// Consul says how a service registers itself.
type Consul struct {
	Addr, Token, Datacenter string
	Advertise               string        // host:port others dial ("" = the listener's address)
	CheckInterval           time.Duration // gRPC health check interval (default 10s)
	DeregisterAfter         time.Duration // drop the instance after its check is critical this long (default 1m)
	UpdateEvery             time.Duration // refresh of the headroom metadata (default 10s)
}

// registerConsul registers a loaded service in Consul and keeps its headroom metadata fresh
// until ctx ends; the returned function deregisters it.
func registerConsul(ctx context.Context, c *Consul, role router.Role, lis net.Listener, m *model.Model, eng *services.Engines, log *slog.Logger) (func(), error) {
	adv := c.Advertise
	if adv == "" {
		adv = lis.Addr().String()
	}
	interval, after, every := c.CheckInterval, c.DeregisterAfter, c.UpdateEvery
	if interval <= 0 {
		interval = 10 * time.Second
	}
	if after <= 0 {
		after = time.Minute
	}
	if every <= 0 {
		every = 10 * time.Second
	}
	headroom := func() (uint64, int) {
		active, waiting := eng.Load()
		return uint64(eng.KV.Stats().Free), active + waiting
	}
	free, load := headroom()
	reg, err := consul.Register(ctx, consul.Registration{
		Addr: c.Addr, Token: c.Token, Datacenter: c.Datacenter,
		Service: "specd-" + string(role), Role: role, Advertise: adv,
		Model: m.Name, TokenizerHash: m.Tok.Hash(), Quant: m.Quant.String(), Context: m.Context,
		KVFree: free, Load: load, CheckInterval: interval, DeregisterAfter: after,
	})
	if err != nil {
		return nil, err
	}
	log.Info("registered in consul", "id", reg.ID(), "advertise", adv)
	uctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-uctx.Done():
				return
			case <-t.C:
				free, load := headroom()
				if err := reg.Update(uctx, free, load); err != nil && uctx.Err() == nil {
					log.Warn("consul metadata update failed", "err", err)
				}
			}
		}
	}()
	return func() {
		stop()
		<-done
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := reg.Deregister(dctx); err != nil {
			log.Warn("consul deregistration failed", "err", err)
		}
	}, nil
}

// Verifier serves a verifier on lis until ctx ends.
func Verifier(ctx context.Context, w Worker, cfg verifiersvc.Config, lis net.Listener) error {
	if cfg.Address == "" {
		cfg.Address = lis.Addr().String()
	}
	vs := verifiersvc.New(cfg, w.Log)
	defer vs.Close()
	return worker(ctx, w, router.Verifier, "specd.speculation.v1.VerifierService", lis, func(srv *services.Server) func(*services.Engines) {
		speculationv1.RegisterVerifierServiceServer(srv.GRPC, vs)
		return vs.SetEngines
	})
}

// Draft serves a draft on lis until ctx ends, keeping depth proposals in flight.
func Draft(ctx context.Context, w Worker, depth int, lis net.Listener) error {
	ds := draftsvc.New(depth, w.Log)
	return worker(ctx, w, router.Draft, "specd.speculation.v1.DraftService", lis, func(srv *services.Server) func(*services.Engines) {
		speculationv1.RegisterDraftServiceServer(srv.GRPC, ds)
		return ds.SetEngines
	})
}

// worker runs a model-serving gRPC server: it registers the service (register returns
// the function that hands it the loaded engines), serves health NOT_SERVING while the
// model loads, then SERVING, registers in Consul if asked, and stops when ctx ends.
func worker(ctx context.Context, w Worker, role router.Role, name string, lis net.Listener, register func(*services.Server) func(*services.Engines)) error {
	srv := services.NewServer(name, w.Log)
	setEngines := register(srv)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, lis, Grace) }()
	fail := func(err error) error {
		stop()
		<-errc
		return err
	}
	m, eng, err := load(w)
	if err != nil {
		return fail(err)
	}
	defer m.Close()
	defer eng.Close()
	setEngines(eng)
	srv.SetServing()
	if w.Consul != nil {
		dereg, err := registerConsul(ctx, w.Consul, role, lis, m, eng, w.Log)
		if err != nil {
			return fail(err)
		}
		defer dereg()
	}
	w.Log.Info(string(role)+" serving", "addr", lis.Addr().String(), "model", m.Name, "quant", m.Quant.String(), "threads", w.Engine.Threads)
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

// RouterConfig configures a router: static endpoints, or Consul discovery.
type RouterConfig struct {
	Verifiers, Drafts []string      // static endpoints (when Consul is nil)
	Refresh           time.Duration // how often to poll static endpoints' Info
	Consul            *consul.WatchConfig
	Breakers          *services.Breakers // nil: none
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
	rt := &router.Router{}
	if cfg.Breakers != nil {
		rt.Breakers = cfg.Breakers
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	rs := routersvc.New(rt, cfg.Log)
	defer rs.Close()
	if cfg.Consul != nil {
		w, err := consul.NewWatcher(*cfg.Consul, cfg.Log)
		if err != nil {
			return err
		}
		rt.Discovery = w
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(rctx) }()
	} else {
		disc := router.NewStatic(eps...)
		rt.Discovery = disc
		wg.Add(1)
		go func() { defer wg.Done(); rs.Refresh(rctx, disc, eps, cfg.Refresh) }()
	}
	srv := services.NewServer("specd.v1.GenerationService", cfg.Log)
	specdv1.RegisterGenerationServiceServer(srv.GRPC, rs)
	srv.SetServing()
	cfg.Log.Info("router serving", "addr", lis.Addr().String(), "verifiers", cfg.Verifiers, "drafts", cfg.Drafts)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	return srv.Serve(ctx, lis, Grace)
}
