package main

import (
	"flag"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/consul"
	"github.com/specd-dev/specd/services/serve"
)

// consulOptions are the Consul flags shared by every service.
type consulOptions struct {
	addr, token, datacenter string
	checkServerName         string // the agent's TLS check: name to verify
	checkSkipVerify         bool   // the agent's TLS check: accept any certificate
}

func (o *consulOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "consul", "", "Consul agent HTTP address (host:port); empty: no Consul")
	fs.StringVar(&o.token, "consul-token", "", "Consul ACL token")
	fs.StringVar(&o.datacenter, "consul-datacenter", "", "Consul datacenter (default: the agent's)")
	fs.StringVar(&o.checkServerName, "consul-check-tls-server-name", "", "with TLS: the name Consul's gRPC health check verifies this service's certificate for (default: the advertised host)")
	fs.BoolVar(&o.checkSkipVerify, "consul-check-tls-skip-verify", false, "with TLS: Consul's gRPC health check accepts any certificate of this service (for certificates with only a SPIFFE ID; the agent still presents its own)")
}

// validateCheck refuses the check's TLS flags for a service that serves no TLS.
func (o *consulOptions) validateCheck(tls bool) error {
	if !tls && (o.checkServerName != "" || o.checkSkipVerify) {
		return usagef("--consul-check-tls-server-name and --consul-check-tls-skip-verify need --tls-cert and --tls-key")
	}
	return nil
}

// registerOptions are the flags of a service that registers itself.
type registerOptions struct {
	consulOptions
	advertise string
}

func (o *registerOptions) addFlags(fs *flag.FlagSet) {
	o.consulOptions.addFlags(fs)
	fs.StringVar(&o.advertise, "advertise", "", "host:port registered in Consul for others to dial (default: the listen address)")
}

// validate checks the registration flags of a service listening on listen, which is
// what it registers without --advertise (with the port it binds, for port 0).
func (o *registerOptions) validate(listen string) error {
	if o.advertise != "" {
		if err := consul.CheckAdvertise(o.advertise); err != nil {
			return usagef("--advertise: %v", err)
		}
		if o.addr == "" {
			return usagef("--advertise needs --consul")
		}
		return nil
	}
	if o.addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if ip, perr := netip.ParseAddr(host); err == nil && (host == "" || perr == nil && ip.IsUnspecified()) {
		return usagef("--advertise: needed with --consul, since --listen %s is no address others can dial", listen)
	}
	return nil
}

func (o *registerOptions) config() *serve.Consul {
	if o.addr == "" {
		return nil
	}
	return &serve.Consul{Addr: o.addr, Token: o.token, Datacenter: o.datacenter, Advertise: o.advertise,
		TLSServerName: o.checkServerName, TLSSkipVerify: o.checkSkipVerify}
}

// discoveryOptions are the router's discovery and breaker flags.
type discoveryOptions struct {
	consulOptions
	mode            string
	wait            time.Duration
	breakerFailures uint
	breakerCooldown time.Duration
}

func (o *discoveryOptions) addFlags(fs *flag.FlagSet) {
	o.consulOptions.addFlags(fs)
	fs.StringVar(&o.mode, "discovery", "static", "how to find verifiers and drafts: static (--verifiers, --drafts) or consul")
	fs.DurationVar(&o.wait, "consul-wait", 5*time.Minute, "longest wait of a Consul blocking query")
	fs.UintVar(&o.breakerFailures, "breaker-failures", 3, "consecutive failures that open an endpoint's circuit breaker")
	fs.DurationVar(&o.breakerCooldown, "breaker-cooldown", 10*time.Second, "how long an open breaker waits before a probe")
}

func (o *discoveryOptions) validate() error {
	switch o.mode {
	case "static":
	case "consul":
		if o.addr == "" {
			return usagef("--discovery consul needs --consul")
		}
	default:
		return usagef("--discovery %q: want static or consul", o.mode)
	}
	if o.breakerFailures < 1 || o.breakerFailures > math.MaxUint32 || o.breakerCooldown <= 0 {
		return usagef("--breaker-failures %d, --breaker-cooldown %v: want 1..%d and > 0", o.breakerFailures, o.breakerCooldown, uint32(math.MaxUint32))
	}
	if o.wait <= 0 || o.wait > 10*time.Minute {
		return usagef("--consul-wait %v: want (0, 10m]", o.wait)
	}
	return nil
}

func (o *discoveryOptions) apply(c *serve.RouterConfig) {
	c.Breakers = services.NewBreakers(uint32(o.breakerFailures), o.breakerCooldown)
	if o.mode == "consul" {
		c.Consul = &consul.WatchConfig{Addr: o.addr, Token: o.token, Datacenter: o.datacenter, Wait: o.wait,
			Services: map[router.Role]string{router.Verifier: "specd-verifier", router.Draft: "specd-draft"}}
	}
}
