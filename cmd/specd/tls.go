package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/tlsconf"
)

// Default identities of the three roles: SPIFFE IDs in the specd.internal trust
// domain. A deployment with its own trust domain or DNS names sets --tls-router-id,
// --tls-verifier-id and --tls-draft-id.
const (
	defaultRouterID   = "spiffe://specd.internal/router"
	defaultVerifierID = "spiffe://specd.internal/verifier"
	defaultDraftID    = "spiffe://specd.internal/draft"
)

// tlsOptions are the transport security flags of a service in a role. Who may call
// whom by default: the verifier admits the router; the draft admits the verifier and
// the router (which reads its health and Info); the router's public API admits any
// client with a certificate from the CA. A service checks the identity of those it
// dials: the router expects a verifier's identity of its verifiers and a draft's of
// its drafts (never either of either: a draft must not be sent users' prompts), the
// verifier a draft's.
type tlsOptions struct {
	role                          router.Role // set before addFlags
	cert, key, ca                 string
	peers                         string
	routerID, verifierID, draftID string
	reload                        time.Duration
	plaintext                     bool
	plainUpstreams                bool // router only
	up                            bool // set before addFlags: specd up, whose links have identities of their own
}

func (o *tlsOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.cert, "tls-cert", "", "PEM certificate (chain) this service presents, as server and as client; with --tls-key turns TLS on; reloaded when the file changes")
	fs.StringVar(&o.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.ca, "tls-ca", "", "PEM CA certificates trusted to sign peers' certificates: callers must then present a certificate from them (mTLS), and servers dialled are checked against them")
	fs.StringVar(&o.peers, "tls-peers", "", "comma-separated identities allowed to call this service (SPIFFE IDs spiffe://domain/path, whole trust domains spiffe://domain, DNS names, or *); default: "+o.defaultPeersDoc())
	// A service has flags for the identities it reads: of those it admits and of those
	// it dials (the router admits anyone from the CA, the verifier dials drafts, the
	// draft dials nobody). up reads none: its links use identities of their own.
	o.routerID, o.verifierID, o.draftID = defaultRouterID, defaultVerifierID, defaultDraftID
	if !o.up && o.role != router.Front {
		fs.StringVar(&o.routerID, "tls-router-id", defaultRouterID, "identity (comma-separated SPIFFE IDs or DNS names) of the router's certificate")
	}
	if !o.up && o.role != router.Verifier {
		fs.StringVar(&o.verifierID, "tls-verifier-id", defaultVerifierID, "identity (comma-separated SPIFFE IDs or DNS names) of the verifiers' certificates")
	}
	if !o.up && o.role != router.Draft {
		fs.StringVar(&o.draftID, "tls-draft-id", defaultDraftID, "identity (comma-separated SPIFFE IDs or DNS names) of the drafts' certificates")
	}
	fs.DurationVar(&o.reload, "tls-reload", tlsconf.DefaultReload, "how often a handshake may look at the TLS files again (a changed file is reloaded without a restart)")
	fs.BoolVar(&o.plaintext, "insecure-plaintext", false, "serve plaintext gRPC on a non-loopback --listen address (anyone who can reach it can call it): for a trusted network or a TLS-terminating sidecar")
	if o.role == router.Front && !o.up {
		fs.BoolVar(&o.plainUpstreams, "upstream-plaintext", false, "with --tls-cert: dial verifiers and drafts in plaintext, for loopback upstreams that a sidecar (Envoy) carries over mTLS; they must be loopback addresses")
	}
}

func (o *tlsOptions) defaultPeersDoc() string {
	switch o.role {
	case router.Verifier:
		return "--tls-router-id"
	case router.Draft:
		return "--tls-verifier-id and --tls-router-id"
	}
	return "* (any certificate from --tls-ca)"
}

func (o *tlsOptions) on() bool { return o.cert != "" || o.key != "" || o.ca != "" }

// validate checks the flags for a service listening on listen: plaintext only on a
// loopback address unless --insecure-plaintext.
func (o *tlsOptions) validate(listen string) error {
	if !o.on() {
		if !o.plaintext && !isLoopback(listen) {
			return usagef("--listen %s is not a loopback address and TLS is off: give --tls-cert and --tls-key (and --tls-ca for mTLS), "+
				"or --insecure-plaintext to serve plaintext anyway", listen)
		}
		if o.peers != "" {
			return usagef("--tls-peers needs --tls-cert, --tls-key and --tls-ca")
		}
		return nil
	}
	if o.plaintext {
		return usagef("--insecure-plaintext and --tls-*: choose one")
	}
	if o.cert == "" || o.key == "" {
		return usagef("--tls-cert and --tls-key go together (a server needs both)")
	}
	if o.ca == "" && o.role != router.Front {
		return usagef("--tls-ca: a %s admits only callers with a certificate from a CA it trusts", o.role)
	}
	if o.ca == "" && o.peers != "" {
		return usagef("--tls-peers needs --tls-ca (without a CA no client certificate is asked for)")
	}
	if o.reload <= 0 || o.reload > time.Hour {
		return usagef("--tls-reload %v: want more than 0 and at most 1h", o.reload)
	}
	if _, _, err := o.identities(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// identities returns who may call the service and whom it accepts as servers.
func (o *tlsOptions) identities() (allow, dial tlsconf.Identities, err error) {
	parse := func(flag, v string) (tlsconf.Identities, error) {
		p, err := tlsconf.ParseIdentities(strings.Split(v, ","))
		if err != nil {
			return p, fmt.Errorf("--%s: %w", flag, err)
		}
		return p, nil
	}
	rid, err := parse("tls-router-id", o.routerID)
	if err != nil {
		return allow, dial, err
	}
	vid, err := parse("tls-verifier-id", o.verifierID)
	if err != nil {
		return allow, dial, err
	}
	did, err := parse("tls-draft-id", o.draftID)
	if err != nil {
		return allow, dial, err
	}
	switch o.role {
	case router.Verifier:
		allow, dial = rid, did
	case router.Draft:
		allow = vid.Union(rid)
	default:
		allow, dial = tlsconf.AnyIdentity, vid // its drafts: draftDial
	}
	if o.peers != "" {
		if allow, err = parse("tls-peers", o.peers); err != nil {
			return allow, dial, err
		}
	}
	if o.ca != "" && allow.Empty() {
		return allow, dial, fmt.Errorf("--tls-peers: no identity: nobody could call this %s", o.role)
	}
	return allow, dial, nil
}

// draftDial is whom a router accepts as the servers of its drafts.
func (o *tlsOptions) draftDial() (tlsconf.Identities, error) {
	return tlsconf.ParseIdentities(strings.Split(o.draftID, ","))
}

// config loads the TLS files (nil: plaintext); log reports reloads.
func (o *tlsOptions) config(log *slog.Logger) (*serve.TLS, error) {
	if !o.on() {
		return nil, nil
	}
	allow, dial, err := o.identities()
	if err != nil {
		return nil, usagef("%v", err)
	}
	src, err := tlsconf.NewSource(tlsconf.Files{Cert: o.cert, Key: o.key, CA: o.ca}, o.reload, log)
	if err != nil {
		return nil, usagef("--tls-cert, --tls-key, --tls-ca: %v", err)
	}
	t := &serve.TLS{Source: src, Allow: allow, Dial: dial, PlainDial: o.plainUpstreams}
	if o.role == router.Front {
		if t.DialDraft, err = o.draftDial(); err != nil {
			return nil, usagef("--tls-draft-id: %v", err)
		}
	}
	return t, nil
}

// isLoopback reports whether a listen address binds only loopback interfaces: an IP
// in 127.0.0.0/8 or ::1, or "localhost". An empty host binds every interface.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// clientTLSOptions are the TLS flags of the commands that call the router.
type clientTLSOptions struct {
	on            bool
	cert, key, ca string
	serverID      string
}

func (o *clientTLSOptions) addFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.on, "tls", false, "call the router over TLS (implied by --tls-ca and --tls-cert); without --tls-ca the system's roots are trusted")
	fs.StringVar(&o.cert, "tls-cert", "", "PEM client certificate to present (for a router with --tls-ca)")
	fs.StringVar(&o.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.ca, "tls-ca", "", "PEM CA certificates trusted to sign the router's certificate")
	fs.StringVar(&o.serverID, "tls-server-id", "", "identities (comma-separated SPIFFE IDs or DNS names) the router's certificate must have (default: the host of --addr, as HTTPS checks it)")
}

// credentials returns the dial option for the flags: none for plaintext.
func (o *clientTLSOptions) credentials() ([]grpc.DialOption, error) {
	if !o.on && o.cert == "" && o.key == "" && o.ca == "" {
		if o.serverID != "" {
			return nil, usagef("--tls-server-id needs --tls-ca")
		}
		return nil, nil
	}
	want, err := tlsconf.ParseIdentities(strings.Split(o.serverID, ","))
	if err != nil {
		return nil, usagef("--tls-server-id: %v", err)
	}
	files := tlsconf.Files{Cert: o.cert, Key: o.key, CA: o.ca}
	if o.ca == "" && o.serverID != "" {
		return nil, usagef("--tls-server-id needs --tls-ca (with the system's roots, the host of --addr is what is checked)")
	}
	if files == (tlsconf.Files{}) {
		return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12}))}, nil
	}
	src, err := tlsconf.NewSource(files, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, usagef("--tls-cert, --tls-key, --tls-ca: %v", err)
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(src.ClientCredentials(want))}, nil
}

// dial connects to the router at --addr with the TLS flags, sending the key in
// --api-key-file.
func (o *clientOptions) dial() (*grpc.ClientConn, error) {
	opts, err := o.tls.credentials()
	if err != nil {
		return nil, err
	}
	keys, err := o.keyCredentials()
	if err != nil {
		return nil, err
	}
	cc, err := services.Dial(o.addr, append(opts, keys...)...)
	if err != nil {
		return nil, usagef("--addr %q: %v", o.addr, err)
	}
	return cc, nil
}

// upLinks secures the links between `specd up`'s own services once its public
// listener serves TLS: a CA made in memory at start-up, trusted by nothing else,
// issues the verifier, the draft and the router's dials certificates with the role
// identities spiffe://specd.up/ROLE, and each admits and expects the default policy's
// peers. So a local process cannot reach the verifier or the draft around the
// router's TLS.
func upLinks(public *serve.TLS) (verifier, draft *serve.TLS, err error) {
	now := time.Now()
	ca, err := tlsconf.NewCA("specd up links", now.Add(-time.Hour), now.AddDate(50, 0, 0))
	if err != nil {
		return nil, nil, err
	}
	src := map[router.Role]*tlsconf.Source{}
	id := map[router.Role]tlsconf.Identities{}
	for _, r := range []router.Role{router.Front, router.Verifier, router.Draft} {
		spiffe := "spiffe://specd.up/" + string(r)
		if src[r], err = ca.Source(tlsconf.Leaf{SPIFFE: spiffe, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(50, 0, 0)}); err != nil {
			return nil, nil, err
		}
		if id[r], err = tlsconf.ParseIdentities([]string{spiffe}); err != nil {
			return nil, nil, err
		}
	}
	public.DialSource, public.Dial, public.DialDraft = src[router.Front], id[router.Verifier], id[router.Draft]
	verifier = &serve.TLS{Source: src[router.Verifier], Allow: id[router.Front], Dial: id[router.Draft]}
	draft = &serve.TLS{Source: src[router.Draft], Allow: id[router.Verifier].Union(id[router.Front])}
	return verifier, draft, nil
}
