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
// inside the container as an exec probe. It succeeds only for SERVING, or with --live
// for any status the server answers: a router is NOT_SERVING while no verifier is
// usable, which must take it out of rotation (readiness) but not get it restarted
// (liveness).
func healthCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	var co clientOptions
	co.addFlags(fs)
	fs.Lookup("addr").Usage = "address of the service to check"
	fs.Lookup("timeout").DefValue = "2s"
	co.timeout = 2 * time.Second
	fs.Lookup("tls-server-id").Usage = "identities (comma-separated SPIFFE IDs or DNS names) the service's certificate must have (default: the host of --addr)"
	var service string
	var live bool
	fs.StringVar(&service, "service", "", "health service name to ask about (\"\": the server as a whole)")
	fs.BoolVar(&live, "live", false, "succeed for any status the server answers, NOT_SERVING too (a liveness probe: the process is up); an unknown --service or no answer still fails")
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
	st := resp.GetStatus()
	if st != healthpb.HealthCheckResponse_SERVING && !live {
		return fmt.Errorf("health check of %s (service %q): %s", co.addr, service, st)
	}
	fmt.Fprintln(stdout, st)
	return nil
}
