// Package telemetry sets up one specd service's observability: an OpenTelemetry
// TracerProvider configured from the standard OTEL_* variables (OTLP over gRPC or
// HTTP, or spans kept local so logs still carry trace ids), a MeterProvider read by
// a Prometheus /metrics endpoint (and pushed over OTLP when asked), W3C trace
// context propagation, the otelgrpc stats handlers for servers and clients, a
// log/slog logger that stamps trace_id and span_id on records logged with a span's
// context, and specd's own instruments (Metrics).
//
// It belongs to the services layer: the engine, speculation and router cores do not
// import it (they return stats structs; the services record them here). It
// deliberately sets no global TracerProvider or MeterProvider, so several services
// in one process (`specd up`, tests) each keep their own service.name; only the
// propagator and the OTel error handler are process-wide. Code below services/ that
// wants a span uses the OTel API on the provider found in its context
// (trace.SpanFromContext(ctx).TracerProvider()).
package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// ScopeName is the instrumentation scope of specd's own tracer and meter.
const ScopeName = "github.com/specd-dev/specd"

// Config configures one service's telemetry. Everything about exporting traces is
// read from the standard OTEL_* variables (see Setup); the rest are the service's
// flags.
type Config struct {
	// Service is service.name: "specd-router", "specd-verifier" or "specd-draft".
	// OTEL_SERVICE_NAME, when set, wins.
	Service string
	// Version is service.version; "" takes the main module's version from the
	// build info.
	Version string
	// MetricsAddr is the listen address of the Prometheus endpoint (GET /metrics,
	// GET /healthz); "" serves none (Telemetry.MetricsHandler still works).
	MetricsAddr string
	// Log receives the service's log records; nil means os.Stderr.
	Log io.Writer
	// LogLevel is the least severe level logged.
	LogLevel slog.Level
	// LogFormat is "json" or "text"; "" means json.
	LogFormat string
}

// Telemetry is one service's logger, tracer, meter and exporters. Shutdown flushes
// and stops them; every method is safe for concurrent use.
type Telemetry struct {
	Log     *slog.Logger
	Tracer  trace.Tracer // specd's spans (scope ScopeName) on this service's provider
	Meter   metric.Meter
	Metrics *Metrics

	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	Propagator     propagation.TextMapPropagator

	spans       *abortable // the OTLP span exporter; nil when spans are not exported
	registry    *prometheus.Registry
	metricsSrv  *http.Server // nil without MetricsAddr
	metricsAddr string
	serveDone   chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup starts a service's telemetry.
//
// Traces: spans are always created by an SDK TracerProvider (so log records carry
// trace ids). They are exported over OTLP when OTEL_TRACES_EXPORTER=otlp, or when it
// is unset and OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set; OTEL_TRACES_EXPORTER=none exports nothing. OTEL_EXPORTER_OTLP_PROTOCOL (or
// the _TRACES_ form) picks grpc (default) or http/protobuf; the exporter itself reads
// the endpoint, headers, timeout and TLS variables. OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG choose the sampler (default parentbased_always_on).
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES add to the resource.
//
// Metrics: a Prometheus exporter on a registry of this Telemetry's own, served on
// MetricsAddr; OTEL_METRICS_EXPORTER=otlp also pushes them over OTLP.
//
// An unsupported OTEL_* value, a bad LogFormat or an unusable MetricsAddr is an
// error; nothing is left running when Setup fails.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	env, err := readEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}

	t := &Telemetry{Log: log, Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	otel.SetTextMapPropagator(t.Propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("opentelemetry", "err", err) }))

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(env.sampler)}
	if env.traceOTLP {
		exp, err := traceExporter(ctx, env.traceProtocol)
		if err != nil {
			return nil, err
		}
		t.spans = newAbortable(exp)
		topts = append(topts, sdktrace.WithBatcher(t.spans))
	}
	t.TracerProvider = sdktrace.NewTracerProvider(topts...)
	t.Tracer = t.TracerProvider.Tracer(ScopeName)

	fail := func(err error) (*Telemetry, error) {
		t.Shutdown(context.WithoutCancel(ctx))
		return nil, err
	}

	t.registry = prometheus.NewRegistry()
	t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prom, err := otelprom.New(
		otelprom.WithRegisterer(t.registry),
		// Explicit, since the exporter's default is due to change. specd's metric
		// names already end in their unit (and _total for counters), which this
		// strategy leaves as they are; the otelgrpc ones gain theirs.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return fail(fmt.Errorf("prometheus exporter: %w", err))
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	if env.metricOTLP {
		exp, err := metricExporter(ctx, env.metricProto)
		if err != nil {
			return fail(err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	t.MeterProvider = sdkmetric.NewMeterProvider(mopts...)
	t.Meter = t.MeterProvider.Meter(ScopeName)
	if t.Metrics, err = newMetrics(t.Meter); err != nil {
		return fail(err)
	}

	if cfg.MetricsAddr != "" {
		lis, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fail(fmt.Errorf("metrics listen %s: %w", cfg.MetricsAddr, err))
		}
		t.metricsAddr = lis.Addr().String()
		t.metricsSrv = &http.Server{Handler: t.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		t.serveDone = make(chan struct{})
		go func() {
			defer close(t.serveDone)
			if err := t.metricsSrv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "addr", t.metricsAddr, "err", err)
			}
		}()
	}
	return t, nil
}

func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	version := cfg.Version
	if version == "" {
		version = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			version = bi.Main.Version
		}
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override
	// the service's own name, the instance id and the host name. Without an instance id
	// and a host, the spans of three verifiers are all specd-verifier's, and a trace
	// viewer cannot tell which replica served a request.
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", cfg.Service),
			attribute.String("service.version", version),
			attribute.String("service.instance.id", instanceID()),
		),
		resource.WithHost(),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	return res, nil
}

// instanceID is a random UUID (version 4), service.instance.id as the resource
// conventions recommend: unique to this run of the service.
func instanceID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func traceExporter(ctx context.Context, proto string) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case protoHTTP:
		exp, err = otlptracehttp.New(ctx)
	default:
		exp, err = otlptracegrpc.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter (%s): %w", proto, err)
	}
	return exp, nil
}

func metricExporter(ctx context.Context, proto string) (sdkmetric.Exporter, error) {
	var (
		exp sdkmetric.Exporter
		err error
	)
	switch proto {
	case protoHTTP:
		exp, err = otlpmetrichttp.New(ctx)
	default:
		exp, err = otlpmetricgrpc.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP metric exporter (%s): %w", proto, err)
	}
	return exp, nil
}

// httpHandler serves /metrics and /healthz.
func (t *Telemetry) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", t.MetricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	return mux
}

// MetricsHandler serves this service's metrics in the Prometheus exposition
// format, for mounting on a server other than MetricsAddr's. A scraper that asks for
// OpenMetrics (Prometheus does) gets it, with exemplars: histogram buckets and
// counters recorded during a sampled request carry its trace_id and span_id, which
// Grafana links to the trace. No _created series are added.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// MetricsAddr is the bound address of the metrics endpoint ("" when there is none).
func (t *Telemetry) MetricsAddr() string {
	if t == nil {
		return ""
	}
	return t.metricsAddr
}

// grpcFilter keeps health checks (polled every few seconds by Consul and the
// router) and the internal services' Info (the router polls every static endpoint
// for it every 2 s) out of traces and RPC metrics: each poll would be a trace of
// its own.
var grpcFilter = filters.None(filters.HealthCheck(),
	filters.FullMethodName("/specd.speculation.v1.VerifierService/Info"),
	filters.FullMethodName("/specd.speculation.v1.DraftService/Info"))

// ServerOptions instrument a gRPC server: a span per RPC (a child of the caller's,
// from the W3C headers) and the rpc.server.* metrics, on this service's providers.
// A nil Telemetry gives none.
func (t *Telemetry) ServerOptions() []grpc.ServerOption {
	if t == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.TracerProvider),
		otelgrpc.WithMeterProvider(t.MeterProvider),
		otelgrpc.WithPropagators(t.Propagator),
		otelgrpc.WithFilter(grpcFilter),
	))}
}

// DialOptions instrument a gRPC client: a client span per RPC whose context is sent
// in W3C headers, and the rpc.client.* metrics. A nil Telemetry gives none.
func (t *Telemetry) DialOptions() []grpc.DialOption {
	if t == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.TracerProvider),
		otelgrpc.WithMeterProvider(t.MeterProvider),
		otelgrpc.WithPropagators(t.Propagator),
		otelgrpc.WithFilter(grpcFilter),
	))}
}

// Shutdown flushes spans and metrics to their exporters, then stops them and the
// metrics endpoint, within ctx. Call it after the service's gRPC server has stopped
// (so its last spans have ended), with a context that is not the one already
// cancelled by the stop signal. Calls after the first return the first's result;
// on a nil Telemetry it does nothing.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.shutdownOnce.Do(func() {
		var errs []error
		if t.metricsSrv != nil {
			if err := t.metricsSrv.Shutdown(ctx); err != nil {
				t.metricsSrv.Close()
				errs = append(errs, fmt.Errorf("metrics server: %w", err))
			}
			<-t.serveDone
		}
		if t.TracerProvider != nil {
			if err := t.TracerProvider.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("tracer provider: %w", err))
			}
			if t.spans != nil {
				// The batch processor gives up waiting at ctx's end but leaves its
				// export running (retrying an unreachable collector for up to its
				// timeout); cut that export short and wait for the exporter to close.
				t.spans.abortAndWait()
			}
		}
		if t.MeterProvider != nil {
			if err := t.MeterProvider.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("meter provider: %w", err))
			}
		}
		t.shutdownErr = errors.Join(errs...)
	})
	return t.shutdownErr
}
