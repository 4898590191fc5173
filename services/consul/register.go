package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/specd-dev/specd/router"
)

// ErrDeregistered is returned by Update once Deregister has been called, so that a
// periodic updater racing shutdown cannot bring the instance back.
var ErrDeregistered = errors.New("consul: instance deregistered")

// Registration describes one service instance to register with the local Consul agent.
type Registration struct {
	Addr       string // agent HTTP address: host:port, or with an http:// or https:// prefix
	Token      string // ACL token; "" for none (see the package doc for the fallback)
	Datacenter string // "" for the agent's own

	Service   string      // Consul service name, e.g. "specd-verifier"
	ID        string      // instance ID, unique on the agent; "" means Service + "-" + Advertise
	Role      router.Role // registered as a tag
	Advertise string      // host:port that other services dial; also the health check's target

	Model, TokenizerHash, Quant string
	Arch                        string   // model architecture
	Context                     int      // context length, tokens
	Vocab                       int      // vocabulary size, tokens
	Parameters                  uint64   // weights of the model
	Tags                        []string // extra tags; the role tag is always added

	KVFree uint64 // headroom at registration; Update refreshes it and Load
	Load   int

	// CheckInterval is how often Consul calls grpc.health.v1 on Advertise; it must be
	// positive (Consul runs checks at most once a second).
	CheckInterval time.Duration
	// DeregisterAfter, when positive, lets Consul drop the instance after its check has
	// been critical that long (Consul's floor is one minute). Zero keeps it registered.
	DeregisterAfter time.Duration

	// TLS says the instance serves gRPC over TLS: the health check then dials with TLS
	// (GRPCUseTLS; the agent presents its own certificate from its tls configuration),
	// and the instance's meta "tls" says "true" so that watchers know how to dial it.
	TLS bool
	// TLSServerName is the name the agent checks the instance's certificate for ("":
	// the host of Advertise). Only with TLS.
	TLSServerName string
	// TLSSkipVerify makes the agent's check accept any server certificate: for
	// certificates that carry only a SPIFFE ID, which Consul cannot check. Only with TLS.
	TLSSkipVerify bool
}

func (r *Registration) validate() error {
	switch {
	case r.Addr == "":
		return invalid("Addr", "the agent address is empty")
	case r.Service == "":
		return invalid("Service", "the service name is empty")
	case r.Role != router.Verifier && r.Role != router.Draft && r.Role != router.Front:
		return invalid("Role", "%q is not %q, %q or %q", r.Role, router.Verifier, router.Draft, router.Front)
	case r.Context < 0:
		return invalid("Context", "%d is negative", r.Context)
	case r.Vocab < 0:
		return invalid("Vocab", "%d is negative", r.Vocab)
	case r.Load < 0:
		return invalid("Load", "%d is negative", r.Load)
	case r.CheckInterval <= 0:
		return invalid("CheckInterval", "%v is not positive", r.CheckInterval)
	case r.DeregisterAfter < 0:
		return invalid("DeregisterAfter", "%v is negative", r.DeregisterAfter)
	case !r.TLS && (r.TLSServerName != "" || r.TLSSkipVerify):
		return invalid("TLSServerName", "a TLS server name or skip-verify without TLS")
	}
	if _, _, err := splitAdvertise(r.Advertise); err != nil {
		return invalid("Advertise", "%v", err)
	}
	return nil
}

// CheckAdvertise reports why addr is not a host:port that others can dial (no host,
// an unspecified address such as 0.0.0.0, a port outside 1-65535), or nil: the check
// Register makes of Registration.Advertise, for a caller to make at start-up.
func CheckAdvertise(addr string) error {
	_, _, err := splitAdvertise(addr)
	return err
}

// splitAdvertise checks that addr is a host:port others can dial.
func splitAdvertise(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port %q is not in 1-65535", addr, p)
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q: no host", addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		return "", 0, fmt.Errorf("%q: %s is not an address others can dial", addr, host)
	}
	return host, port, nil
}

// service builds the agent registration.
func (r *Registration) service() *api.AgentServiceRegistration {
	host, port, _ := splitAdvertise(r.Advertise) // validated
	id := r.ID
	if id == "" {
		id = r.Service + "-" + r.Advertise
	}
	tags := []string{string(r.Role)}
	for _, t := range r.Tags {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	check := &api.AgentServiceCheck{
		Name:          r.Service + " grpc.health.v1",
		GRPC:          r.Advertise,
		GRPCUseTLS:    r.TLS,
		TLSServerName: r.TLSServerName,
		TLSSkipVerify: r.TLSSkipVerify,
		Interval:      r.CheckInterval.String(),
	}
	if r.DeregisterAfter > 0 {
		check.DeregisterCriticalServiceAfter = r.DeregisterAfter.String()
	}
	return &api.AgentServiceRegistration{
		ID:      id,
		Name:    r.Service,
		Tags:    tags,
		Address: host,
		Port:    port,
		Meta: map[string]string{
			MetaModel:         r.Model,
			MetaTokenizerHash: r.TokenizerHash,
			MetaQuant:         r.Quant,
			MetaArch:          r.Arch,
			MetaContext:       strconv.Itoa(r.Context),
			MetaVocab:         strconv.Itoa(r.Vocab),
			MetaParameters:    strconv.FormatUint(r.Parameters, 10),
			MetaKVFree:        strconv.FormatUint(r.KVFree, 10),
			MetaLoad:          strconv.Itoa(r.Load),
			MetaTLS:           strconv.FormatBool(r.TLS),
		},
		Check: check,
	}
}

// Registered is a registered instance. Its methods are safe for concurrent use.
type Registered struct {
	id     string
	client *api.Client
	tr     *http.Transport
	token  string

	mu           sync.Mutex // held across requests, so Update and Deregister never interleave
	svc          *api.AgentServiceRegistration
	stopped      bool // Deregister was called
	deregistered bool // and succeeded
}

// Register registers an instance with the agent at r.Addr, replacing any earlier
// registration with the same ID. It fails with ErrInvalidConfig for a bad Registration.
func Register(ctx context.Context, r Registration) (*Registered, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	client, tr, err := newClient(r.Addr, r.Token, r.Datacenter)
	if err != nil {
		return nil, err
	}
	svc := r.service()
	reg := &Registered{id: svc.ID, client: client, tr: tr, token: r.Token, svc: svc}
	if err := reg.put(ctx, reg.svc); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	return reg, nil
}

// ID is the instance's Consul service ID.
func (r *Registered) ID() string { return r.id }

// Update re-registers the instance with fresh headroom metadata; call it periodically
// (every few seconds, or on a material change: each call is one agent write and wakes
// every watcher). The health check's state is kept across it. It returns ErrDeregistered
// after Deregister.
func (r *Registered) Update(ctx context.Context, kvFree uint64, load int) error {
	if load < 0 {
		return fmt.Errorf("consul: update %s: load %d is negative", r.id, load)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return ErrDeregistered
	}
	next := *r.svc
	next.Meta = maps.Clone(r.svc.Meta)
	next.Meta[MetaKVFree] = strconv.FormatUint(kvFree, 10)
	next.Meta[MetaLoad] = strconv.Itoa(load)
	if err := r.put(ctx, &next); err != nil {
		return err
	}
	r.svc = &next
	return nil
}

// Deregister removes the instance from the agent (call it on graceful shutdown, before
// the gRPC server stops, so routers stop picking it first). An instance the agent no
// longer knows counts as deregistered. Later calls return nil once one succeeded; Update
// fails from the first call on.
func (r *Registered) Deregister(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.deregistered {
		return nil
	}
	q := (&api.QueryOptions{Token: r.token}).WithContext(ctx)
	err := r.client.Agent().ServiceDeregisterOpts(r.id, q)
	if se := (api.StatusError{}); errors.As(err, &se) && se.Code == http.StatusNotFound {
		err = nil // already gone, e.g. reaped after DeregisterAfter
	}
	if err != nil {
		return fmt.Errorf("consul: deregister %s: %w", r.id, err)
	}
	r.deregistered = true
	r.tr.CloseIdleConnections()
	return nil
}

func (r *Registered) put(ctx context.Context, svc *api.AgentServiceRegistration) error {
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true, Token: r.token}.WithContext(ctx)
	if err := r.client.Agent().ServiceRegisterOpts(svc, opts); err != nil {
		return fmt.Errorf("consul: register %s: %w", svc.ID, err)
	}
	return nil
}
