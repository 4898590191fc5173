// Package serve wires specd's services into running gRPC servers: a verifier, a draft
// and a router, each serving until its context ends. The specd command and the
// end-to-end tests start exactly these.
package serve

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/auth"
	"github.com/specd-dev/specd/services/consul"
	"github.com/specd-dev/specd/services/cors"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/ollamahttp"
	"github.com/specd-dev/specd/services/openaihttp"
	"github.com/specd-dev/specd/services/routersvc"
	"github.com/specd-dev/specd/services/telemetry"
	"github.com/specd-dev/specd/services/tlsconf"
	"github.com/specd-dev/specd/services/verifiersvc"
	"github.com/specd-dev/specd/toolcall"
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
	Ready  func(*model.Model)   // called once serving; may be nil
	Consul *Consul              // register in Consul while serving; nil: do not
	Tel    *telemetry.Telemetry // traces and metrics; nil: none
	Limits services.Limits      // what one client connection may ask
	TLS    *TLS                 // transport security; nil: plaintext
}

// TLS is a service's transport security: its listener serves TLS from Source (with
// mTLS when Source has a CA: callers need a certificate from it, and only the
// identities in Allow may call the service; health checks need only the
// certificate), and its dials to other services use TLS, accepting servers whose
// identity is in Dial (a router's drafts: DialDraft).
type TLS struct {
	Source *tlsconf.Source
	Allow  tlsconf.Identities // callers admitted; used only when Source has a CA
	Dial   tlsconf.Identities // identities of the servers this service dials: a verifier's drafts, a router's verifiers
	// DialDraft is, on a router, the identities of the drafts it dials (for their
	// health and Info), apart from its verifiers' so that a draft's certificate is
	// not taken for a verifier's. Empty: checked against the host name dialled.
	DialDraft tlsconf.Identities
	// DialSource, when set, is the certificate and CA of the dials instead of Source:
	// specd up serves the operator's certificate publicly and links its own services
	// with certificates of a CA it made for them.
	DialSource *tlsconf.Source
	// PlainDial makes the dials plaintext while the listener serves TLS: for
	// upstreams on loopback that a sidecar (Envoy in a Consul Connect mesh) carries over
	// mTLS.
	PlainDial bool
}

// serverOptions are t's gRPC server options (none for plaintext).
func (t *TLS) serverOptions(log *slog.Logger) []grpc.ServerOption {
	if t == nil {
		return nil
	}
	opts := []grpc.ServerOption{grpc.Creds(t.Source.ServerCredentials())}
	if t.Source.HasCA() {
		opts = append(opts, tlsconf.Authorize(t.Allow, log)...)
	}
	return opts
}

// httpsConfig is the TLS of the HTTP front door: t's certificate, offering HTTP/2
// and HTTP/1.1; with a CA, clients need a certificate from it whose identity is in
// Allow, checked in the handshake (HTTP has no gRPC interceptor to do it).
func (t *TLS) httpsConfig() *tls.Config {
	c := t.Source.ServerTLS("h2", "http/1.1")
	get := c.GetConfigForClient
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cc, err := get(hello)
		if err != nil || cc.ClientAuth != tls.RequireAndVerifyClientCert {
			return cc, err
		}
		cc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
				return errors.New("no verified client certificate")
			}
			return t.Allow.Match(cs.VerifiedChains[0][0])
		}
		return cc, nil
	}
	return c
}

// dialOptions are t's gRPC dial options (none for plaintext), accepting servers
// in Dial.
func (t *TLS) dialOptions() []grpc.DialOption {
	if t == nil {
		return nil
	}
	return t.dialAccepting(t.Dial)
}

// draftDialOptions are a router's dial options to its drafts, accepting servers in
// DialDraft.
func (t *TLS) draftDialOptions() []grpc.DialOption {
	if t == nil {
		return nil
	}
	return t.dialAccepting(t.DialDraft)
}

func (t *TLS) dialAccepting(want tlsconf.Identities) []grpc.DialOption {
	if t.PlainDial {
		return nil
	}
	src := cmp.Or(t.DialSource, t.Source)
	return []grpc.DialOption{grpc.WithTransportCredentials(src.ClientCredentials(want))}
}

// describe says how t secures a service, for its start-up log line.
func (t *TLS) describe() string {
	switch {
	case t == nil:
		return "plaintext"
	}
	dials := "dials " + t.Dial.String()
	if !t.DialDraft.Empty() {
		dials += ", drafts " + t.DialDraft.String()
	}
	if t.PlainDial {
		dials = "dials plaintext (a sidecar's upstreams)"
	}
	if t.Source.HasCA() {
		return "mtls; callers " + t.Allow.String() + "; " + dials
	}
	return "tls (no client certificates); " + dials
}

// Consul says how a service registers itself.
type Consul struct {
	Addr, Token, Datacenter string
	Advertise               string        // host:port others dial ("" = the listener's address)
	CheckInterval           time.Duration // gRPC health check interval (default 10s)
	DeregisterAfter         time.Duration // drop the instance after its check is critical this long (default 1m)
	UpdateEvery             time.Duration // refresh of the headroom metadata (default 10s)
	// TLSServerName and TLSSkipVerify configure the agent's health check of a service
	// that serves TLS (see consul.Registration).
	TLSServerName string
	TLSSkipVerify bool
}

// registerConsul registers a serving instance in Consul — reg carries its role and
// model metadata — and refreshes its headroom from headroom (nil: none) until ctx ends,
// when it deregisters it at once (the server is then draining, not yet stopped); the
// returned function deregisters it too, for a server that stops on its own.
func registerConsul(ctx context.Context, c *Consul, reg consul.Registration, lis net.Listener, headroom func() (uint64, int), log *slog.Logger) (func(), error) {
	reg.Addr, reg.Token, reg.Datacenter = c.Addr, c.Token, c.Datacenter
	if reg.TLS {
		reg.TLSServerName, reg.TLSSkipVerify = c.TLSServerName, c.TLSSkipVerify
	}
	reg.Service = "specd-" + string(reg.Role)
	reg.Advertise = cmp.Or(c.Advertise, lis.Addr().String())
	reg.CheckInterval = cmp.Or(c.CheckInterval, 10*time.Second)
	reg.DeregisterAfter = cmp.Or(c.DeregisterAfter, time.Minute)
	every := cmp.Or(c.UpdateEvery, 10*time.Second)
	if headroom != nil {
		reg.KVFree, reg.Load = headroom()
	}
	r, err := consul.Register(ctx, reg)
	if err != nil {
		return nil, err
	}
	log.Info("registered in consul", "id", r.ID(), "advertise", reg.Advertise)
	deregister := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := r.Deregister(dctx); err != nil {
			log.Warn("consul deregistration failed", "err", err)
		}
	}
	uctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var tick <-chan time.Time
		if headroom != nil {
			t := time.NewTicker(every)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-uctx.Done():
				if ctx.Err() != nil {
					// Shutting down: leave Consul now, while the server drains its
					// streams, so that nobody picks an instance that is going away.
					deregister()
				}
				return
			case <-tick:
				free, load := headroom()
				if err := r.Update(uctx, free, load); err != nil && uctx.Err() == nil {
					log.Warn("consul metadata update failed", "err", err)
				}
			}
		}
	}()
	return func() {
		stop()
		<-done
		deregister() // at once if it already succeeded
	}, nil
}

// Verifier serves a verifier on lis until ctx ends.
func Verifier(ctx context.Context, w Worker, cfg verifiersvc.Config, lis net.Listener) error {
	if cfg.Address == "" {
		cfg.Address = lis.Addr().String()
	}
	cfg.MaxMessageBytes = cmp.Or(cfg.MaxMessageBytes, w.Limits.MaxMessageBytes)
	vs := verifiersvc.New(cfg, w.Log, append(dialOptions(w.Tel), w.TLS.dialOptions()...)...)
	defer vs.Close()
	return worker(ctx, w, router.Verifier, "specd.speculation.v1.VerifierService", lis, func(srv *services.Server) func(*services.Engine) (func(), error) {
		srv.Register(&speculationv1.VerifierService_ServiceDesc, vs)
		return func(e *services.Engine) (func(), error) { return vs.Stop, vs.SetEngine(e) }
	})
}

// Draft serves a draft on lis until ctx ends. Its scheduler runs on w.Engine.Threads
// threads and feeds up to w.Engine.MaxBlock context tokens per pass unless cfg says
// otherwise; the engines' slots and queue are not used.
func Draft(ctx context.Context, w Worker, cfg draftsvc.Config, lis net.Listener) error {
	cfg.Threads = cmp.Or(cfg.Threads, w.Engine.Threads)
	cfg.Prefill = cmp.Or(cfg.Prefill, w.Engine.MaxBlock)
	ds := draftsvc.New(cfg, w.Log)
	return worker(ctx, w, router.Draft, "specd.speculation.v1.DraftService", lis, func(srv *services.Server) func(*services.Engine) (func(), error) {
		srv.Register(&speculationv1.DraftService_ServiceDesc, ds)
		return func(e *services.Engine) (func(), error) { ds.SetEngine(e); return ds.Close, nil }
	})
}

// worker runs a model-serving gRPC server: it registers the service (register returns
// the function that hands it the loaded engines, and returns the function that stops
// its use of them), serves health NOT_SERVING while the
// model loads, then SERVING, registers in Consul if asked, and stops when ctx ends.
func worker(ctx context.Context, w Worker, role router.Role, name string, lis net.Listener, register func(*services.Server) func(*services.Engine) (func(), error)) error {
	srv := services.NewServer(name, w.Log, stallMetric(w.Limits, w.Tel), append(w.TLS.serverOptions(w.Log), serverOptions(w.Tel)...)...)
	setEngine := register(srv)
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
	stopService, err := setEngine(eng)
	defer stopService() // before the engines close (defers run last-first)
	if err != nil {
		return fail(err)
	}
	if w.Tel != nil {
		defer w.Tel.Metrics.ObserveKVBlocks(func() (int64, int64, int64) {
			st := eng.KV.Stats()
			return int64(st.Used - st.Cached), int64(st.Cached), int64(st.Free)
		})()
		defer w.Tel.Metrics.ObserveQueueDepth(func() int64 {
			active, waiting := eng.Load()
			return int64(active + waiting)
		})()
	}
	srv.SetServing()
	if w.Consul != nil {
		reg := consul.Registration{Role: role, Model: m.Name, TokenizerHash: m.Tok.Hash(), Quant: m.Quant.String(), Arch: m.Arch,
			Context: m.Context, Vocab: m.Vocab, Parameters: m.Parameters, TLS: w.TLS != nil}
		headroom := func() (uint64, int) {
			active, waiting := eng.Load()
			st := eng.KV.Stats()
			return uint64(st.Free + st.Cached), active + waiting // as Info counts it
		}
		dereg, err := registerConsul(ctx, w.Consul, reg, lis, headroom, w.Log)
		if err != nil {
			return fail(err)
		}
		defer dereg()
	}
	w.Log.Info(string(role)+" serving", "addr", lis.Addr().String(), "model", m.Name, "quant", m.Quant.String(), "threads", w.Engine.Threads, "kernels", kernels.Impl(), "tls", w.TLS.describe())
	if w.Ready != nil {
		w.Ready(m)
	}
	return <-errc
}

// stallMetric returns lim counting its send stalls in t's metrics (nil: lim as it is).
func stallMetric(lim services.Limits, t *telemetry.Telemetry) services.Limits {
	if t != nil && lim.SendStalled == nil {
		lim.SendStalled = t.Metrics.RecordSendStall
	}
	return lim
}

func serverOptions(t *telemetry.Telemetry) []grpc.ServerOption {
	if t == nil {
		return nil
	}
	return t.ServerOptions()
}

func dialOptions(t *telemetry.Telemetry) []grpc.DialOption {
	if t == nil {
		return nil
	}
	return t.DialOptions()
}

// load loads the model (a server that cannot load stops, and so does its listener).
func load(w Worker) (*model.Model, *services.Engine, error) {
	m, err := w.Load()
	if err != nil {
		return nil, nil, err
	}
	eng, err := services.NewEngine(m, w.Engine)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, eng, nil
}

// Discover returns a view of role's endpoints: a Consul watch (watch's services) when
// watch is non-nil, running until stop is called, which waits for it to end; else the
// static addresses, and a stop that does nothing.
func Discover(ctx context.Context, role router.Role, static []string, watch *consul.WatchConfig, log *slog.Logger) (d router.Discovery, stop func(), err error) {
	if watch == nil {
		eps := make([]router.Endpoint, len(static))
		for i, a := range static {
			eps[i] = router.Endpoint{ID: a, Address: a, Role: role}
		}
		return router.NewStatic(eps...), func() {}, nil
	}
	w, err := consul.NewWatcher(*watch, log)
	if err != nil {
		return nil, nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	return w, func() { cancel(); <-done }, nil
}

// RouterConfig configures a router: static endpoints, or Consul discovery.
type RouterConfig struct {
	Verifiers, Drafts []string      // static endpoints (when Consul is nil)
	Refresh           time.Duration // how often to poll static endpoints' Info (0: 2 s)
	Consul            *consul.WatchConfig
	Breakers          *services.Breakers // nil: none; state changes are logged
	// HealthInterval is how often the router probes its endpoints' gRPC health
	// (0: 1 s). Its own health is SERVING only while a verifier is usable: SERVING,
	// its breaker not open.
	HealthInterval time.Duration
	Register       *Consul              // register the router as specd-router; nil: do not
	Tel            *telemetry.Telemetry // traces and metrics; nil: none
	Limits         services.Limits      // what one client connection may ask
	TLS            *TLS                 // transport security; nil: plaintext
	Log            *slog.Logger
	Ready          func()

	// Keys are the API keys the public API demands (nil: no authentication), reloaded
	// from their file every KeysReload (0: 2 s) while the router serves.
	Keys       *auth.Keys
	KeysReload time.Duration
	// HTTP serves the OpenAI-compatible front door (services/openaihttp) on this
	// listener; nil: none. It calls this router's own gRPC server over an in-process
	// connection, so every rule of the gRPC API holds for it too.
	HTTP *HTTPConfig
}

// HTTPConfig configures the OpenAI-compatible front door.
type HTTPConfig struct {
	Listener     net.Listener
	MaxBodyBytes int64 // bound of a request body (0: openaihttp.DefaultMaxBodyBytes)
	// ToolCalls is the syntax chat replies write tool calls in (0: none, and chat
	// requests with tools are refused).
	ToolCalls toolcall.Syntax
	// CORS is the browser origins allowed to call both APIs directly; nil: none (no
	// CORS headers, and a browser's preflight is refused).
	CORS *cors.Policy
	// AllowedHosts are the names besides the local ones that requests to a listener on
	// loopback may carry in Host (see cors.Guard: the guard against DNS rebinding).
	AllowedHosts []string
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
	kick := make(chan struct{}, 1) // a breaker changed: probe now
	if cfg.Breakers != nil {
		rt.Breakers = cfg.Breakers
		next := cfg.Breakers.OnChange
		cfg.Breakers.OnChange = func(endpoint string, from, to gobreaker.State) {
			lv := slog.LevelInfo
			if to == gobreaker.StateOpen {
				lv = slog.LevelWarn
			}
			cfg.Log.Log(ctx, lv, "circuit breaker "+to.String(), "endpoint", endpoint, "from", from.String(), "to", to.String())
			select {
			case kick <- struct{}{}:
			default:
			}
			if next != nil {
				next(endpoint, from, to)
			}
		}
	}
	if cfg.HTTP != nil {
		defer cfg.HTTP.Listener.Close() // a router that fails to start releases it (once served, closing again does nothing)
	}
	rs := routersvc.New(rt, cfg.Log, cfg.Tel, routersvc.Dials{
		Verifier: append(dialOptions(cfg.Tel), cfg.TLS.dialOptions()...),
		Draft:    append(dialOptions(cfg.Tel), cfg.TLS.draftDialOptions()...),
	})
	rs.MaxMessageBytes = cfg.Limits.MaxMessageBytes
	defer rs.Close() // after the background goroutines below have stopped (defers run last-first)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	if cfg.Consul != nil {
		w, err := consul.NewWatcher(*cfg.Consul, cfg.Log)
		if err != nil {
			return err
		}
		rt.Discovery = w
		if cfg.Breakers != nil {
			// Breakers live as long as their endpoints stay in the view — once the
			// view is whole: a role not yet queried reports no endpoint at all.
			w.OnChange = func() {
				if w.LastUpdate().IsZero() {
					return
				}
				cfg.Breakers.Retain(append(w.Endpoints(router.Verifier), w.Endpoints(router.Draft)...))
			}
		}
		if cfg.Tel != nil {
			defer cfg.Tel.Metrics.ObserveDiscoveryStale(w.Stale)()
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(rctx) }()
	} else {
		disc := router.NewStatic(eps...)
		rt.Discovery = disc
		wg.Add(1)
		go func() { defer wg.Done(); rs.Refresh(rctx, disc, eps, cmp.Or(cfg.Refresh, 2*time.Second)) }()
	}
	if cfg.Tel != nil && cfg.Breakers != nil {
		defer cfg.Tel.Metrics.ObserveBreakers(cfg.Breakers.States)()
	}
	// The public server and the front door's in-process one share every option but
	// transport security.
	opts := serverOptions(cfg.Tel)
	if cfg.Keys != nil {
		var m *telemetry.Metrics
		if cfg.Tel != nil {
			m = cfg.Tel.Metrics
		}
		opts = append(opts, auth.NewGuard(cfg.Keys, cfg.Log, m).ServerOptions()...)
		wg.Add(1)
		go func() { defer wg.Done(); cfg.Keys.Watch(rctx, cmp.Or(cfg.KeysReload, 2*time.Second), cfg.Log) }()
	}
	// The identity check comes first: a caller the TLS policy refuses is not asked for
	// a key, nor counted against one.
	srv := services.NewServer("specd.v1.GenerationService", cfg.Log, stallMetric(cfg.Limits, cfg.Tel), append(cfg.TLS.serverOptions(cfg.Log), opts...)...)
	srv.Register(&specdv1.GenerationService_ServiceDesc, rs)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rs.Probe(rctx, cmp.Or(cfg.HealthInterval, time.Second), kick, srv.SetServingStatus)
	}()
	if cfg.Register != nil {
		dereg, err := registerConsul(ctx, cfg.Register, consul.Registration{Role: router.Front, TLS: cfg.TLS != nil}, lis, nil, cfg.Log)
		if err != nil {
			return err
		}
		defer dereg()
	}
	// A front door that fails stops the router too: an operator's --http-listen must not
	// be dead while health says SERVING.
	sctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	if cfg.HTTP != nil {
		ready := func(ctx context.Context) error {
			r, err := srv.Health.Check(ctx, &healthpb.HealthCheckRequest{Service: "specd.v1.GenerationService"})
			if err != nil {
				return err
			}
			if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return errors.New("no verifier is usable")
			}
			return nil
		}
		if err := frontDoor(rctx, cfg, rs, ready, opts, &wg, fail); err != nil {
			return err
		}
	}
	where := []any{"verifiers", cfg.Verifiers, "drafts", cfg.Drafts}
	if cfg.Consul != nil {
		where = []any{"discovery", "consul", "consul", cfg.Consul.Addr} // the static lists are not used
	}
	cfg.Log.Info("router serving", append(append([]any{"addr", lis.Addr().String()}, where...), "tls", cfg.TLS.describe())...)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	err := srv.Serve(sctx, lis, Grace)
	if cause := context.Cause(sctx); err == nil && ctx.Err() == nil && cause != nil {
		err = cause
	}
	return err
}

// frontDoor serves the OpenAI-compatible front door of cfg.HTTP until ctx ends, in a
// goroutine counted by wg. The front door is a client of the router's gRPC API: it
// reaches rs through a server of its own on an in-memory listener, with the public
// server's options opts (telemetry, API keys, limits) but no transport security, which
// the HTTP listener provides instead (HTTPS with the router's TLS; with its CA, client
// certificates of the identities the gRPC API admits).
func frontDoor(ctx context.Context, cfg RouterConfig, rs *routersvc.Server, ready func(context.Context) error, opts []grpc.ServerOption, wg *sync.WaitGroup, fail context.CancelCauseFunc) error {
	// Every HTTP request shares the one in-process connection, so the per-connection
	// stream bound would be a bound on all HTTP requests, waiting rather than failing:
	// lift it (per-key stream quotas still apply). The message bound stays.
	// The send-stall timeout stays too: a front-door handler stuck writing to an HTTP
	// client that stopped reading stops reading its stream, which the router ends.
	lim := stallMetric(services.Limits{MaxMessageBytes: cfg.Limits.MaxMessageBytes, MaxStreams: math.MaxUint32,
		SendStallTimeout: cfg.Limits.SendStallTimeout}, cfg.Tel)
	inner := services.NewServer("specd.v1.GenerationService", cfg.Log, lim, opts...)
	inner.Register(&specdv1.GenerationService_ServiceDesc, rs)
	mem := bufconn.Listen(1 << 20)
	go inner.GRPC.Serve(mem) // ends with inner.GRPC.Stop below
	msg := cmp.Or(cfg.Limits.MaxMessageBytes, services.MaxMessageBytes)
	dial := append([]grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return mem.DialContext(ctx) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(msg), grpc.MaxCallSendMsgSize(msg))},
		dialOptions(cfg.Tel)...)
	cc, err := services.Dial("passthrough:///in-process", dial...)
	if err != nil {
		inner.GRPC.Stop()
		return fmt.Errorf("front door: in-process connection: %w", err)
	}
	self, _ := os.Hostname()
	hosts, err := cors.Guard(cfg.HTTP.Listener.Addr(), self, cfg.HTTP.AllowedHosts)
	if err != nil {
		cc.Close()
		inner.GRPC.Stop()
		return fmt.Errorf("front door: allowed hosts: %w", err)
	}
	lis := cfg.HTTP.Listener
	if cfg.TLS != nil {
		lis = tls.NewListener(lis, cfg.TLS.httpsConfig())
	}
	client := specdv1.NewGenerationServiceClient(cc)
	h := openaihttp.NewHandler(client, cfg.HTTP.MaxBodyBytes, cfg.Limits.SendStallTimeout, cfg.Log)
	h.SetReady(ready)
	h.SetToolParser(cfg.HTTP.ToolCalls)
	// Ollama's native API shares the listener: its /api/ and the probe of /, the
	// OpenAI-compatible API everything else.
	oh := ollamahttp.NewHandler(client, cfg.HTTP.MaxBodyBytes, cfg.Limits.SendStallTimeout, cfg.Log)
	oh.SetToolParser(cfg.HTTP.ToolCalls)
	mux := http.NewServeMux()
	for _, p := range ollamahttp.Routes {
		mux.Handle(p, oh)
	}
	mux.Handle("/", h)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer inner.GRPC.Stop()
		defer cc.Close()
		if err := openaihttp.Serve(ctx, lis, cfg.Tel.HTTPHandler(hosts.Wrap(cfg.HTTP.CORS.Wrap(mux))), Grace, cfg.Log); err != nil {
			cfg.Log.Error("openai front door stopped", "err", err)
			fail(fmt.Errorf("openai front door: %w", err))
		}
	}()
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	cfg.Log.Info("http front door serving (OpenAI-compatible API and Ollama's API)", "addr", lis.Addr().String(), "scheme", scheme)
	return nil
}
