package telemetry

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The OTLP wire protocols specd can export with.
const (
	protoGRPC = "grpc"
	protoHTTP = "http/protobuf"
)

// envConfig is what the standard OTEL_* variables ask of specd's exporters, read once
// at Setup and checked there: an unsupported value is a start-up error, never a
// silent default (the SDK itself would log and carry on).
type envConfig struct {
	traceOTLP     bool   // export spans over OTLP
	traceProtocol string // protoGRPC or protoHTTP
	metricOTLP    bool   // push metrics over OTLP besides the Prometheus endpoint
	metricProto   string
	sampler       sdktrace.Sampler
}

// readEnv reads the OTEL_* variables through getenv.
func readEnv(getenv func(string) string) (envConfig, error) {
	var c envConfig
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }

	// Traces: OTLP when asked for by name, or when an endpoint is given and no
	// exporter is named; "none" (or nothing at all) creates spans without exporting.
	traces, err := exporterList("OTEL_TRACES_EXPORTER", get("OTEL_TRACES_EXPORTER"), "otlp", "none")
	if err != nil {
		return c, err
	}
	switch {
	case traces != nil:
		c.traceOTLP = traces["otlp"]
	default:
		c.traceOTLP = get("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	}
	if c.traceProtocol, err = protocol(get, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); err != nil {
		return c, err
	}

	// Metrics: the Prometheus endpoint is always there (when it has an address);
	// OTLP only when named.
	metrics, err := exporterList("OTEL_METRICS_EXPORTER", get("OTEL_METRICS_EXPORTER"), "otlp", "prometheus", "none")
	if err != nil {
		return c, err
	}
	c.metricOTLP = metrics["otlp"]
	if c.metricProto, err = protocol(get, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"); err != nil {
		return c, err
	}

	if c.sampler, err = sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG")); err != nil {
		return c, err
	}
	return c, nil
}

// exporterList parses a comma-separated exporter list, allowing only the named
// values. An empty value gives a nil map.
func exporterList(key, v string, allowed ...string) (map[string]bool, error) {
	if v == "" {
		return nil, nil
	}
	set := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if !slices.Contains(allowed, f) {
			return nil, fmt.Errorf("%s=%q: unsupported exporter %q (want %s)", key, v, f, strings.Join(allowed, ", "))
		}
		set[f] = true
	}
	if set["none"] && len(set) > 1 {
		return nil, fmt.Errorf("%s=%q: none cannot be combined with other exporters", key, v)
	}
	return set, nil
}

// protocol is the OTLP protocol for one signal: its own variable, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else grpc.
func protocol(get func(string) string, signalKey string) (string, error) {
	key, v := signalKey, get(signalKey)
	if v == "" {
		key, v = "OTEL_EXPORTER_OTLP_PROTOCOL", get("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch v {
	case "", protoGRPC:
		return protoGRPC, nil
	case protoHTTP:
		return protoHTTP, nil
	}
	return "", fmt.Errorf("%s=%q: unsupported protocol (want %s or %s)", key, v, protoGRPC, protoHTTP)
}

// sampler is the sampler OTEL_TRACES_SAMPLER names, parentbased_always_on by
// default.
func sampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in [0, 1]", arg)
		}
		return r, nil
	}
	switch strings.ToLower(name) {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.TraceIDRatioBased(r), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: unsupported sampler (want always_on, always_off, traceidratio or their parentbased_ forms)", name)
}
