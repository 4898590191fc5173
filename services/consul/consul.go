// Package consul connects specd to Consul: a service registers itself (Register) with a
// gRPC health check and its model metadata, refreshes its headroom (Update) and leaves
// on shutdown (Deregister); the router watches the healthy instances of each role
// (Watcher, a router.Discovery) with blocking queries and keeps its last good view
// while Consul is unreachable.
//
// It is written against the official client github.com/hashicorp/consul/api v1.34.5,
// the client of the Consul 1.22 line, and uses only long-stable HTTP endpoints; the
// newest feature it relies on, ?replace-existing-checks, dates from Consul 1.6, so any
// supported Consul server or agent serves it:
//
//	PUT /v1/agent/service/register?replace-existing-checks=true   Register, Update
//	PUT /v1/agent/service/deregister/:service_id                  Deregister
//	GET /v1/health/service/:service?passing=1&tag=:role&stale     Watcher (blocking: index, wait)
//
// The registration carries the role as a tag ("verifier" or "draft"), the metadata keys
// model, tokenizer_hash, quant, architecture, context_length, vocab_size, parameters,
// kv_free, load and tls, and one gRPC check
// (grpc.health.v1 on the advertised address, over TLS when the instance serves TLS)
// with an interval and, when set, DeregisterCriticalServiceAfter. Meta values are strings; numbers are base-10.
//
// Configuration comes from the caller (flags): the agent address, token and datacenter
// are passed explicitly. One caveat from the client library: when Token is empty it falls
// back to CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE, Consul's own convention. HTTP
// proxies from the environment are not used.
//
// Nothing outside services/ and cmd/ imports this package: the router knows only its
// Discovery interface. Tests run the real client against internal/consultest, a fake
// agent on loopback.
package consul

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrInvalidConfig is returned (wrapped, naming the field) by Register and NewWatcher
// for a configuration that cannot work.
var ErrInvalidConfig = errors.New("consul: invalid configuration")

// Metadata keys of a registration.
const (
	MetaModel         = "model"
	MetaTokenizerHash = "tokenizer_hash"
	MetaQuant         = "quant"
	MetaContext       = "context_length"
	MetaKVFree        = "kv_free"
	MetaLoad          = "load"
	MetaArch          = "architecture"
	MetaVocab         = "vocab_size"
	MetaParameters    = "parameters"
	MetaTLS           = "tls" // "true" when the instance serves gRPC over TLS
)

// Consul's limits on a blocking query's wait.
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// newClient returns a client for the agent at addr ("host:port", or with an http:// or
// https:// prefix) and its transport, so that the owner can close idle connections when
// done.
func newClient(addr, token, datacenter string) (*api.Client, *http.Transport, error) {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	c, err := api.NewClient(&api.Config{
		Address:    addr,
		Scheme:     "http", // an https:// prefix on addr switches to TLS
		Datacenter: datacenter,
		Token:      token,
		HttpClient: &http.Client{Transport: tr},
	})
	if err != nil {
		tr.CloseIdleConnections()
		return nil, nil, fmt.Errorf("%w: agent address %q: %v", ErrInvalidConfig, addr, err)
	}
	return c, tr, nil
}
