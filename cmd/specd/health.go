package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthCmd asks a service's grpc.health.v1 once, over TLS when told: a probe for
// platforms whose own gRPC probes speak only plaintext (Kubernetes' grpc probe), run
// inside the container as an exec probe. It succeeds only for SERVING.
func healthCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	var co clientOptions
	co.addFlags(fs)
	fs.Lookup("addr").Usage = "address of the service to check"
	fs.Lookup("timeout").DefValue = "2s"
	co.timeout = 2 * time.Second
	fs.Lookup("tls-server-id").Usage = "identities (comma-separated SPIFFE IDs or DNS names) the service's certificate must have (default: the host of --addr)"
	var service string
	fs.StringVar(&service, "service", "", "health service name to ask about (\"\": the server as a whole)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := co.validate(); err != nil {
		return err
	}
	cc, err := co.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, co.timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("health check of %s (service %q): %w", co.addr, service, err)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health check of %s (service %q): %s", co.addr, service, st)
	}
	fmt.Fprintln(stdout, "SERVING")
	return nil
}
