package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/specd-dev/specd/chat"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/router"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/consul"
	"github.com/specd-dev/specd/services/cors"
	"github.com/specd-dev/specd/services/draftsvc"
	"github.com/specd-dev/specd/services/openaihttp"
	"github.com/specd-dev/specd/services/serve"
	"github.com/specd-dev/specd/services/telemetry"
	"github.com/specd-dev/specd/services/verifiersvc"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/toolcall"
	"github.com/specd-dev/specd/verifier"
)

// Default listen addresses of the three services.
const (
	defaultRouterAddr   = "127.0.0.1:7070"
	defaultVerifierAddr = "127.0.0.1:7071"
	defaultDraftAddr    = "127.0.0.1:7072"
)

// logOptions are the logging flags of every service.
type logOptions struct {
	level  string
	format string
}

func (o *logOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.format, "log-format", "json", "log format: json or text")
}

func (o *logOptions) validate() error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(o.level)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", o.level)
	}
	if o.format != "json" && o.format != "text" {
		return usagef("--log-format %q: want json or text", o.format)
	}
	return nil
}

// telemetry sets up a service's logs, traces (from the OTEL_* variables) and metrics
// (a Prometheus endpoint on metricsAddr, "" for none).
// metricsFlag names the flag that gave metricsAddr: an address that cannot be bound is
// refused as a bad flag, as --listen's is.
func (o *logOptions) telemetry(ctx context.Context, service, metricsFlag, metricsAddr string, w io.Writer) (*telemetry.Telemetry, error) {
	var lv slog.Level
	lv.UnmarshalText([]byte(o.level))
	t, err := telemetry.Setup(ctx, telemetry.Config{Service: service, MetricsAddr: metricsAddr, Log: w, LogLevel: lv, LogFormat: o.format})
	if oe := (*net.OpError)(nil); errors.As(err, &oe) && oe.Op == "listen" {
		return nil, usagef("%s %s: %v", metricsFlag, metricsAddr, oe)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry for %s: %w", service, err)
	}
	return t, nil
}

// shutdown flushes a service's telemetry, bounded in time.
func shutdown(ctx context.Context, t *telemetry.Telemetry) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(sctx); err != nil {
		t.Log.Warn("telemetry shutdown", "err", err)
	}
}

// limitOptions bound what one client connection may ask of a service.
type limitOptions struct {
	maxMessage   int
	maxStreams   uint
	keepaliveMin time.Duration
	sendStall    time.Duration
}

func (o *limitOptions) addFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.maxMessage, "max-message-bytes", services.MaxMessageBytes, "largest gRPC message accepted or sent; larger is RESOURCE_EXHAUSTED")
	fs.UintVar(&o.maxStreams, "max-streams-per-conn", services.DefaultMaxStreams, "concurrent streams one client connection may open; more wait for one to end")
	fs.DurationVar(&o.keepaliveMin, "keepalive-min-time", services.DefaultKeepaliveMin, "shortest keepalive ping interval a client may use; faster pingers are disconnected")
	fs.DurationVar(&o.sendStall, "send-stall-timeout", services.DefaultSendStallTimeout, "longest a stream's client may leave a message unaccepted (not reading); then the stream ends DEADLINE_EXCEEDED and frees its work")
}

// minMessageBytes is the least --max-message-bytes: the bound applies to server
// reflection's answers too, the largest of which (the internal API's descriptors) is
// about 9 KiB.
const minMessageBytes = 64 << 10

func (o *limitOptions) validate() error {
	if o.maxMessage < minMessageBytes || o.maxMessage > 1<<30 || o.maxStreams < 1 || o.maxStreams > 1<<20 || o.keepaliveMin < time.Second {
		return usagef("--max-message-bytes %d, --max-streams-per-conn %d, --keepalive-min-time %v: want 64 KiB..1 GiB (server reflection sends messages of up to 9 KiB), 1..1048576, ≥ 1s",
			o.maxMessage, o.maxStreams, o.keepaliveMin)
	}
	if o.sendStall < 100*time.Millisecond || o.sendStall > time.Hour {
		return usagef("--send-stall-timeout %v: want 100ms..1h", o.sendStall)
	}
	return nil
}

func (o *limitOptions) limits() services.Limits {
	return services.Limits{MaxMessageBytes: o.maxMessage, MaxStreams: uint32(o.maxStreams), KeepaliveMin: o.keepaliveMin, SendStallTimeout: o.sendStall}
}

// workerOptions are the flags of a model-serving service (verifier or draft).
type workerOptions struct {
	engineOptions
	registerOptions
	limitOptions
	tlsOptions
	listen   string
	maxBlock int

	peerStreams int // --max-streams-per-peer, registered by verifier and draft with their defaults
}

// addPeerFlag registers --max-streams-per-peer with the service's default.
func (o *workerOptions) addPeerFlag(fs *flag.FlagSet, def int, what string) {
	fs.IntVar(&o.peerStreams, "max-streams-per-peer", def, "streams ("+what+") one peer — its verified TLS identity, else its IP address — may have open at once; more are RESOURCE_EXHAUSTED at once (0: no limit)")
}

func (o *workerOptions) addFlags(fs *flag.FlagSet, defModel, defListen string) {
	o.engineOptions.addFlags(fs, defModel)
	o.registerOptions.addFlags(fs)
	o.limitOptions.addFlags(fs)
	o.tlsOptions.addFlags(fs)
	fs.StringVar(&o.listen, "listen", defListen, "gRPC listen address (plaintext only on loopback unless --insecure-plaintext)")
	fs.IntVar(&o.maxBlock, "max-block", 64, "largest forward block in tokens (prefill is split into blocks)")
}

func (o *workerOptions) validate() error {
	if err := o.engineOptions.validate(); err != nil {
		return err
	}
	if err := o.registerOptions.validate(o.listen); err != nil {
		return err
	}
	if err := o.limitOptions.validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return usagef("--listen %q: %v", o.listen, err)
	}
	if err := o.tlsOptions.validate(o.listen); err != nil {
		return err
	}
	if err := o.consulOptions.validateCheck(o.tlsOptions.on()); err != nil {
		return err
	}
	if o.maxBlock < 1 {
		return usagef("%s %d: want ≥ 1", o.flag("max-block"), o.maxBlock)
	}
	if o.peerStreams < 0 || o.peerStreams > 1<<20 {
		return usagef("%s %d: want 0..1048576", o.flag("max-streams-per-peer"), o.peerStreams)
	}
	return nil
}

type verifierOptions struct {
	workerOptions
	mode         string
	maxGamma     int
	lookup       int
	maxBatch     int
	maxRunning   int
	prefillChunk int
	queue        int
	queueWait    time.Duration
	streamEvery  time.Duration
	maxPrompt    int
	prefixCache  bool
	drafts       addrList       // the drafts this verifier may dial (static discovery)
	draftsFrom   string         // static or consul
	chatFile     string         // --chat-template
	chat         *chat.Template // parsed from chatFile by validate; nil: the model's own
}

func (o *verifierOptions) addFlags(fs *flag.FlagSet) {
	o.role = cmp.Or(o.role, router.Verifier)
	o.workerOptions.addFlags(fs, "specd-target-q8_0", cmp.Or(o.listen, defaultVerifierAddr))
	fs.StringVar(&o.mode, "mode", "coupled", "default verification mode for sampled requests: coupled or rejection")
	fs.IntVar(&o.maxGamma, "max-gamma", 8, "most draft tokens one pass checks for one request (a request's max_gamma can only lower it)")
	fs.IntVar(&o.lookup, "lookup", 8, "most tokens the verifier guesses by prompt lookup for a request without a usable proposal (0: none)")
	fs.IntVar(&o.maxBatch, "max-batch", 128, "most tokens in one batched forward pass, all requests together")
	fs.IntVar(&o.maxRunning, "max-running", 0, "most requests decoding at once, at most --max-batch (default 64, or --max-batch when less); admission also waits for KV budget")
	fs.IntVar(&o.prefillChunk, "prefill-chunk", 64, "most prompt tokens one pass prefills, all requests together")
	fs.DurationVar(&o.queueWait, "queue-wait", 30*time.Second, "longest a request waits for admission before RESOURCE_EXHAUSTED")
	fs.DurationVar(&o.streamEvery, "stream-interval", 10*time.Millisecond, "longest committed tokens wait to be streamed together in one message (0: a message per pass; a request's first and last tokens go at once)")
	fs.IntVar(&o.maxPrompt, "max-prompt-tokens", 0, "longest prompt in tokens a request may send, INVALID_ARGUMENT past it (0: the model's context)")
	fs.BoolVar(&o.prefixCache, "prefix-cache", true, "share the KV blocks of identical prompt prefixes between requests")
	fs.IntVar(&o.queue, "queue", 256, "requests allowed to wait for admission; more get RESOURCE_EXHAUSTED")
	o.drafts = addrList{list: defaultDraftAddr}
	fs.Var(&o.drafts, "drafts", "comma-separated `addresses` of the drafts this verifier may dial, spelled as the router names them; a request naming any other draft decodes plainly (empty: never speculate with a draft)")
	fs.StringVar(&o.chatFile, "chat-template", "", "Jinja chat template file to render requests' messages with, instead of the model's tokenizer.chat_template")
	fs.StringVar(&o.draftsFrom, "draft-discovery", "static", "how the verifier learns the drafts it may dial: static (--drafts) or consul (the passing specd-draft instances at --consul)")
	o.addPeerFlag(fs, services.DefaultVerifierStreamsPerPeer, "Generate, from routers")
}

func (o *verifierOptions) validate() error {
	if err := o.workerOptions.validate(); err != nil {
		return err
	}
	if _, err := spec.ParseMode(o.mode); err != nil {
		return usagef("--mode: %v", err)
	}
	if o.maxGamma < 1 || o.maxGamma > 64 {
		return usagef("--max-gamma %d: want 1..64", o.maxGamma)
	}
	if o.lookup < 0 || o.lookup > 64 {
		return usagef("--lookup %d: want 0..64", o.lookup)
	}
	if o.maxBatch < 1 || o.maxBatch > 4096 || o.maxRunning < 0 || o.prefillChunk < 1 || o.queue < 1 || o.queueWait <= 0 {
		return usagef("--max-batch %d, --max-running %d, --prefill-chunk %d, --queue %d, --queue-wait %v: want max-batch 1..4096, the others positive", o.maxBatch, o.maxRunning, o.prefillChunk, o.queue, o.queueWait)
	}
	if o.maxRunning == 0 { // not given
		o.maxRunning = min(64, o.maxBatch)
	}
	if o.maxRunning > o.maxBatch {
		return usagef("--max-running %d exceeds --max-batch %d: every running request needs a token of each pass", o.maxRunning, o.maxBatch)
	}
	if o.maxPrompt < 0 {
		return usagef("--max-prompt-tokens %d: want ≥ 0", o.maxPrompt)
	}
	if o.streamEvery < 0 || o.streamEvery > time.Second {
		return usagef("--stream-interval %v: want 0..1s", o.streamEvery)
	}
	if o.chatFile != "" {
		t, err := readChatTemplate(o.chatFile)
		if err != nil {
			return usageError{fmt.Errorf("--chat-template: %w", err)}
		}
		o.chat = t
	}
	switch o.draftsFrom {
	case "static":
		for _, a := range splitList(o.drafts.list) {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return usagef("--drafts: %q: %v", a, err)
			}
		}
	case "consul":
		if o.addr == "" {
			return usagef("--draft-discovery consul needs --consul")
		}
		if o.drafts.given {
			return usagef("--drafts: not with --draft-discovery consul, which finds the drafts")
		}
	default:
		return usagef("--draft-discovery %q: want static or consul", o.draftsFrom)
	}
	return nil
}

// draftView returns the drafts the verifier may dial; stop ends a Consul watch.
func (o *verifierOptions) draftView(ctx context.Context, log *slog.Logger) (router.Discovery, func(), error) {
	var watch *consul.WatchConfig
	if o.draftsFrom == "consul" {
		watch = &consul.WatchConfig{Addr: o.addr, Token: o.token, Datacenter: o.datacenter, Services: map[router.Role]string{router.Draft: "specd-draft"},
			TLS: new(o.tlsOptions.on())}
	}
	return serve.Discover(ctx, router.Draft, splitList(o.drafts.list), watch, log)
}

type draftOptions struct {
	workerOptions
	depth, branches int
	passTokens      int
	prefixCache     bool
}

func (o *draftOptions) addFlags(fs *flag.FlagSet) {
	o.role = router.Draft
	o.workerOptions.addFlags(fs, "specd-draft-q8_0", cmp.Or(o.listen, defaultDraftAddr))
	fs.IntVar(&o.depth, "depth", 2, "proposals in flight per session (pipelining depth)")
	fs.IntVar(&o.branches, "branches", 0, "alternative continuations drafted per round under verification, from guessed corrections (0: none)")
	fs.IntVar(&o.passTokens, "pass-tokens", 256, "most tokens in one batched drafting pass; sessions beyond it draft in the next pass, in turn")
	fs.BoolVar(&o.prefixCache, "prefix-cache", true, "share the KV blocks of contexts that sessions have in common")
	o.addPeerFlag(fs, services.DefaultDraftStreamsPerPeer, "Speculate, from verifiers")
	// Every session drafts in the same batched passes, admitted while the KV budget
	// has room: the draft has no queue (a session the budget cannot hold gets
	// RESOURCE_EXHAUSTED at once).
	fs.Lookup("max-block").Usage = "most context tokens fed per batched drafting pass over all sessions"
}

func (o *draftOptions) config() draftsvc.Config {
	return draftsvc.Config{Depth: o.depth, Branches: o.branches, Threads: o.threads, MaxTokens: o.passTokens, Prefill: o.maxBlock, PrefixCache: o.prefixCache}
}

func (o *draftOptions) validate() error {
	if err := o.workerOptions.validate(); err != nil {
		return err
	}
	if o.depth < 1 || o.depth > 16 {
		return usagef("%s %d: want 1..16", o.flag("depth"), o.depth)
	}
	if o.branches < 0 || o.branches > 8 {
		return usagef("%s %d: want 0..8", o.flag("branches"), o.branches)
	}
	if o.passTokens < 1 || o.passTokens > 4096 {
		return usagef("%s %d: want 1..4096", o.flag("pass-tokens"), o.passTokens)
	}
	return nil
}

// httpOptions are the flags of the OpenAI-compatible front door.
type httpOptions struct {
	httpListen  string
	httpMaxBody int64
	toolParser  string
	corsOrigins string
	cors        *cors.Policy // corsOrigins parsed by validate
	hosts       string       // --http-allowed-hosts
}

func (o *httpOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.httpListen, "http-listen", "", "HTTP address of the OpenAI-compatible API (POST /v1/completions, POST /v1/chat/completions, GET /v1/models, POST /tokenize, POST /detokenize, GET /health) and of Ollama's API (POST /api/generate, POST /api/chat, GET /api/tags, POST /api/show, GET /api/ps, GET /api/version); empty: none")
	fs.Int64Var(&o.httpMaxBody, "http-max-body-bytes", 0, "largest request body the OpenAI-compatible API reads; larger is 413 (default 4 MiB, or --max-message-bytes when that is less)")
	fs.StringVar(&o.toolParser, "tool-call-parser", "", "how the served models write tool calls, as vLLM's flag names it: hermes (Qwen2.5's <tool_call> blocks) or llama3_json (Llama 3.1's JSON); "+
		"chat completions then accept tools and answer tool_calls. Empty: tools are refused unless tool_choice is \"none\"")
	fs.StringVar(&o.corsOrigins, "http-cors-origins", "", "browser origins allowed to call the HTTP APIs directly (CORS), comma-separated: SCHEME://HOST[:PORT], "+
		"one * in each standing for any characters (http://localhost:*, chrome-extension://*), or * for any origin; empty: none")
	fs.StringVar(&o.hosts, "http-allowed-hosts", "", "with a loopback --http-listen, host names besides localhost, *.localhost, IP addresses and this machine's name "+
		"that requests may give in Host (a reverse proxy here that passes its public name on), comma-separated, *.NAME for NAME's subdomains: "+
		"any other Host is refused, a guard against DNS rebinding")
}

// validate checks the flags; maxMessage is the gRPC message limit the front door's
// requests must fit in (a body over it could never reach the router).
func (o *httpOptions) validate(maxMessage int, t *tlsOptions) error {
	if o.httpMaxBody == 0 { // not given: a lower message bound lowers it too
		o.httpMaxBody = min(openaihttp.DefaultMaxBodyBytes, int64(maxMessage))
	}
	if o.httpMaxBody > int64(maxMessage) {
		return usagef("--http-max-body-bytes %d exceeds --max-message-bytes %d: a request that large could not reach the router", o.httpMaxBody, maxMessage)
	}
	if o.httpListen != "" {
		if _, _, err := net.SplitHostPort(o.httpListen); err != nil {
			return usagef("--http-listen %q: %v", o.httpListen, err)
		}
		if !t.on() && !t.plaintext && !isLoopback(o.httpListen) {
			return usagef("--http-listen %s is not a loopback address and TLS is off: give --tls-cert and --tls-key (HTTPS; "+
				"with --tls-ca clients need certificates), or --insecure-plaintext to serve plain HTTP anyway", o.httpListen)
		}
	}
	if o.toolParser != "" {
		if _, err := toolcall.ParseSyntax(o.toolParser); err != nil {
			return usagef("--tool-call-parser: %v", err)
		}
		if o.httpListen == "" {
			return usagef("--tool-call-parser %s without --http-listen: only the OpenAI-compatible API parses tool calls", o.toolParser)
		}
	}
	if o.httpMaxBody < 1<<10 || o.httpMaxBody > 1<<30 {
		return usagef("--http-max-body-bytes %d: want 1 KiB..1 GiB", o.httpMaxBody)
	}
	p, err := cors.Parse(strings.Split(o.corsOrigins, ","))
	if err != nil {
		return usagef("--http-cors-origins: %v", err)
	}
	if p != nil && o.httpListen == "" {
		return usagef("--http-cors-origins without --http-listen: there is no HTTP API to call")
	}
	o.cors = p
	if o.hosts != "" {
		if _, err := cors.Guard(nil, "", strings.Split(o.hosts, ",")); err != nil {
			return usagef("--http-allowed-hosts: %v", err)
		}
		if !isLoopback(o.httpListen) {
			return usagef("--http-allowed-hosts without a loopback --http-listen: only a front door on loopback checks Host")
		}
	}
	return nil
}

// open opens the front door's listener; nil when there is none.
func (o *httpOptions) open() (*serve.HTTPConfig, error) {
	if o.httpListen == "" {
		return nil, nil
	}
	lis, err := listen(o.httpListen)
	if err != nil {
		return nil, err
	}
	cfg := &serve.HTTPConfig{Listener: lis, MaxBodyBytes: o.httpMaxBody, CORS: o.cors}
	if o.hosts != "" {
		cfg.AllowedHosts = strings.Split(o.hosts, ",")
	}
	if o.toolParser != "" {
		if cfg.ToolCalls, err = toolcall.ParseSyntax(o.toolParser); err != nil {
			lis.Close()
			return nil, err // validate has refused it already
		}
	}
	return cfg, nil
}

type routerOptions struct {
	discoveryOptions
	limitOptions
	keyOptions
	tlsOptions
	httpOptions
	advertise string
	listen    string
	verifiers addrList
	drafts    addrList
	refresh   time.Duration
	health    time.Duration
}

func (o *routerOptions) addFlags(fs *flag.FlagSet) {
	o.discoveryOptions.addFlags(fs)
	o.limitOptions.addFlags(fs)
	o.keyOptions.addFlags(fs)
	o.role = router.Front
	o.tlsOptions.addFlags(fs)
	o.httpOptions.addFlags(fs)
	fs.StringVar(&o.advertise, "advertise", "", "host:port to register the router in Consul as specd-router (needs --consul); empty: do not register")
	fs.StringVar(&o.listen, "listen", defaultRouterAddr, "gRPC listen address of the public API")
	o.verifiers, o.drafts = addrList{list: defaultVerifierAddr}, addrList{list: defaultDraftAddr}
	fs.Var(&o.verifiers, "verifiers", "comma-separated verifier `addresses` (static discovery)")
	fs.Var(&o.drafts, "drafts", "comma-separated draft `addresses` (static discovery; empty: decode plainly)")
	fs.DurationVar(&o.refresh, "refresh", 5*time.Second, "how often to refresh the endpoints' model info and load")
	fs.DurationVar(&o.health, "health-interval", time.Second, "how often to probe the endpoints' gRPC health; the router is NOT_SERVING while no verifier is SERVING with its breaker closed, and resumes elsewhere the streams of a verifier that leaves every probe unanswered for 3 s")
}

// addrList is the value of a flag listing addresses, comma-separated, that remembers
// whether the command line gave it: under Consul discovery a given list would be
// ignored, so it is refused, while the default is not.
type addrList struct {
	list  string
	given bool
}

func (a *addrList) String() string     { return a.list }
func (a *addrList) Set(v string) error { a.list, a.given = v, true; return nil }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (o *routerOptions) validate() error {
	if err := o.discoveryOptions.validate(); err != nil {
		return err
	}
	if err := o.limitOptions.validate(); err != nil {
		return err
	}
	if err := o.keyOptions.validate(); err != nil {
		return err
	}
	if err := o.httpOptions.validate(o.maxMessage, &o.tlsOptions); err != nil {
		return err
	}
	if o.advertise != "" {
		if err := consul.CheckAdvertise(o.advertise); err != nil {
			return usagef("--advertise: %v", err)
		}
		if o.addr == "" {
			return usagef("--advertise needs --consul")
		}
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return usagef("--listen %q: %v", o.listen, err)
	}
	if err := o.tlsOptions.validate(o.listen); err != nil {
		return err
	}
	if err := o.consulOptions.validateCheck(o.tlsOptions.on()); err != nil {
		return err
	}
	if o.mode == "static" && len(splitList(o.verifiers.list)) == 0 {
		return usagef("--verifiers: at least one address")
	}
	if o.mode == "consul" && (o.verifiers.given || o.drafts.given) {
		return usagef("--verifiers and --drafts: not with --discovery consul, which finds both")
	}
	for _, a := range append(splitList(o.verifiers.list), splitList(o.drafts.list)...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return usagef("endpoint %q: %v", a, err)
		}
		if o.plainUpstreams && !isLoopback(a) {
			return usagef("--upstream-plaintext: %s is not a loopback address (a sidecar's upstream)", a)
		}
	}
	if o.plainUpstreams && (!o.tlsOptions.on() || o.mode != "static") {
		return usagef("--upstream-plaintext needs --tls-cert and --tls-key and --discovery static (loopback upstreams)")
	}
	if o.refresh <= 0 {
		return usagef("--refresh %v: want a positive duration", o.refresh)
	}
	if o.health <= 0 {
		return usagef("--health-interval %v: want a positive duration", o.health)
	}
	return nil
}

// listen opens a listener, reporting the bound address (for ":0").
func listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usagef("listen %s: %v", addr, err)
	}
	return lis, nil
}

// worker configures the service; its loader resolves the model with ctx (pull has
// already fetched an hf: model, so this finds it on disk).
func (o *workerOptions) worker(ctx context.Context, tel *telemetry.Telemetry, tls *serve.TLS, ready func(*model.Model)) serve.Worker {
	return serve.Worker{TLS: tls,
		Load: func() (*model.Model, error) { return o.load(ctx, io.Discard) }, Log: tel.Log, Tel: tel, Ready: ready, Consul: o.registerOptions.config(),
		Limits: o.workerLimits(),
		Engine: services.EngineConfig{Threads: o.threads, KVBudget: o.kvBudget, KVType: o.kvTypeValue(), MaxBlock: o.maxBlock},
	}
}

// workerLimits are the limits of a model-serving service: the connection limits and
// the per-peer stream limit.
func (o *workerOptions) workerLimits() services.Limits {
	l := o.limits()
	l.MaxStreamsPerPeer = o.peerStreams
	return l
}

func (o *verifierOptions) config(tel *telemetry.Telemetry) verifiersvc.Config {
	mode, _ := spec.ParseMode(o.mode)
	return verifiersvc.Config{Mode: mode, ChatTemplate: o.chat, QueueWait: o.queueWait, StreamInterval: o.streamEvery, MaxPromptTokens: o.maxPrompt, Metrics: tel.Metrics, Engine: verifiersvc.EngineConfig{
		Threads: o.threads, PrefixCache: o.prefixCache,
		Sched: verifier.Config{MaxTokens: o.maxBatch, PrefillChunk: o.prefillChunk, MaxRunning: o.maxRunning, MaxQueue: o.queue, MaxGamma: o.maxGamma, Lookup: o.lookup},
	}}
}

func (o *routerOptions) config(tel *telemetry.Telemetry, tls *serve.TLS, ready func()) serve.RouterConfig {
	c := serve.RouterConfig{TLS: tls, Verifiers: splitList(o.verifiers.list), Drafts: splitList(o.drafts.list), Refresh: o.refresh, HealthInterval: o.health,
		Log: tel.Log, Tel: tel, Ready: ready, Limits: o.limits(), Keys: o.keys}
	o.discoveryOptions.apply(&c)
	if c.Consul != nil {
		c.Consul.TLS = new(o.tlsOptions.on()) // skip instances that speak the other transport
	}
	if o.advertise != "" {
		c.Register = &serve.Consul{Addr: o.addr, Token: o.token, Datacenter: o.datacenter, Advertise: o.advertise,
			TLSServerName: o.checkServerName, TLSSkipVerify: o.checkSkipVerify}
	}
	return c
}

// service is what the router, verifier and draft commands have in common.
type service interface {
	addFlags(fs *flag.FlagSet)
	validate() error
	listenAddr() string
	serve(ctx context.Context, tel *telemetry.Telemetry, lis net.Listener) error
}

func (o *verifierOptions) listenAddr() string { return o.listen }
func (o *draftOptions) listenAddr() string    { return o.listen }
func (o *routerOptions) listenAddr() string   { return o.listen }

func (o *verifierOptions) serve(ctx context.Context, tel *telemetry.Telemetry, lis net.Listener) error {
	cfg := o.config(tel)
	tls, err := o.tlsOptions.config(tel.Log)
	if err != nil {
		lis.Close()
		return err
	}
	drafts, stop, err := o.draftView(ctx, tel.Log)
	if err != nil {
		lis.Close()
		return err
	}
	defer stop()
	cfg.Drafts = drafts
	return serve.Verifier(ctx, o.worker(ctx, tel, tls, func(*model.Model) { limitMemory(ctx, tel.Log) }), cfg, lis)
}

func (o *draftOptions) serve(ctx context.Context, tel *telemetry.Telemetry, lis net.Listener) error {
	tls, err := o.tlsOptions.config(tel.Log)
	if err != nil {
		lis.Close()
		return err
	}
	return serve.Draft(ctx, o.worker(ctx, tel, tls, func(*model.Model) { limitMemory(ctx, tel.Log) }), o.config(), lis)
}

func (o *routerOptions) serve(ctx context.Context, tel *telemetry.Telemetry, lis net.Listener) error {
	tls, err := o.tlsOptions.config(tel.Log)
	if err != nil {
		lis.Close()
		return err
	}
	cfg := o.config(tel, tls, nil)
	if cfg.HTTP, err = o.open(); err != nil {
		lis.Close()
		return err
	}
	return serve.Router(ctx, cfg, lis)
}

// serviceCmd is the command that runs one service alone until it is interrupted.
func serviceCmd(name string, newOptions func() service) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		o := newOptions()
		var lo logOptions
		var metrics string
		o.addFlags(fs)
		lo.addFlags(fs)
		fs.StringVar(&metrics, "metrics-listen", "", "HTTP address for Prometheus /metrics and /healthz (empty: none)")
		if err := parseFlags(fs, args, stderr); err != nil {
			return err
		}
		if err := o.validate(); err != nil {
			return err
		}
		if err := lo.validate(); err != nil {
			return err
		}
		// A service that loads a model pulls an hf: model before it listens.
		if m, ok := o.(interface {
			pull(context.Context, io.Writer) error
		}); ok {
			if err := m.pull(ctx, stderr); err != nil {
				return err
			}
		}
		lis, err := listen(o.listenAddr())
		if err != nil {
			return err
		}
		tel, err := lo.telemetry(ctx, "specd-"+name, "--metrics-listen", metrics, stderr)
		if err != nil {
			lis.Close()
			return err
		}
		defer shutdown(ctx, tel)
		return budgetFlag(o.serve(ctx, tel, lis), kvBudgetOf(o), "")
	}
}

// kvBudgetOf returns the --kv-budget of a model-serving service (0: it has none).
func kvBudgetOf(o service) int64 {
	if w, ok := o.(interface{ budget() int64 }); ok {
		return w.budget()
	}
	return 0
}

func (o *engineOptions) budget() int64 { return o.kvBudget }

// budgetFlag makes a KV budget that holds no block of the model — known only once it
// is loaded — the bad flag it is (exit 2), naming --kv-budget with the value given
// and, when the budget was derived from it, how (note).
func budgetFlag(err error, given int64, note string) error {
	if !errors.Is(err, kvcache.ErrBudgetTooSmall) {
		return err
	}
	return usageError{fmt.Errorf("--kv-budget %d%s: %w", given, note, err)}
}

// upCmd runs router, verifier and draft in one process on loopback ports: the same code
// that runs distributed, with static discovery and nothing else to start.
func upCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	var vo verifierOptions
	var do draftOptions
	var lo logOptions
	var ho httpOptions
	vo.listen = defaultRouterAddr
	vo.role, vo.up = router.Front, true // up's --tls-* flags secure the router's public listener
	vo.addFlags(fs)
	lo.addFlags(fs)
	ho.addFlags(fs)
	// The draft's options take their defaults from a flag set of their own; up exposes
	// the few that matter under draft- names.
	do.listen = "127.0.0.1:0"
	do.addFlags(flag.NewFlagSet("draft", flag.ContinueOnError))
	do.prefix = "draft-" // its errors name up's flags
	fs.StringVar(&do.model, "draft-model", "specd-draft-q8_0", "draft model")
	fs.StringVar(&do.quant, "draft-quant", "", "convert the draft's weights at load")
	fs.IntVar(&do.threads, "draft-threads", 1, "draft compute threads")
	fs.IntVar(&do.depth, "draft-depth", 2, "draft pipelining depth")
	fs.IntVar(&do.branches, "draft-branches", 0, "alternative continuations the draft drafts per round under verification (0: none)")
	fs.IntVar(&do.peerStreams, "draft-max-streams-per-peer", services.DefaultDraftStreamsPerPeer, "Speculate streams one peer may have open on the draft at once (0: no limit)")
	var ko keyOptions
	ko.addFlags(fs)
	fs.Lookup("listen").Usage = "the router's public gRPC address (verifier and draft take free loopback ports)"
	fs.Lookup("kv-budget").Usage = "the verifier's KV cache budget in bytes; the draft gets a quarter of it besides"
	var metrics, vMetrics, dMetrics string
	fs.StringVar(&metrics, "metrics-listen", "", "HTTP address for the router's Prometheus /metrics (empty: none)")
	fs.StringVar(&vMetrics, "verifier-metrics-listen", "", "HTTP address for the verifier's Prometheus /metrics (empty: none)")
	fs.StringVar(&dMetrics, "draft-metrics-listen", "", "HTTP address for the draft's Prometheus /metrics (empty: none)")
	var cpuProfile string
	fs.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of the whole process (router, verifier and draft) to this file until it stops")
	// The verifier's flags for finding drafts and registering in Consul have nothing to
	// act on in up, which wires its verifier to its own draft on loopback without
	// Consul: each is refused by name rather than ignored.
	notInUp := []string{"drafts", "draft-discovery", "advertise", "consul", "consul-token", "consul-datacenter",
		"consul-check-tls-server-name", "consul-check-tls-skip-verify"}
	for _, name := range notInUp {
		fs.Lookup(name).Usage = "not in up (refused): up runs its own draft on loopback without Consul"
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	for _, name := range notInUp {
		if flagSet(fs, name) {
			return usagef("--%s: up runs its own draft on loopback without Consul; run specd router, verifier and draft to use it", name)
		}
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return usagef("--cpu-profile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	listenAddr := vo.listen
	vo.listen, do.listen = "127.0.0.1:0", "127.0.0.1:0"
	do.models, do.kvBudget, do.kvType = vo.models, vo.kvBudget/4, vo.kvType
	if vo.kvBudget > 0 && do.kvBudget <= 0 {
		return usagef("--kv-budget %d: the draft gets a quarter of it, which must be at least a byte", vo.kvBudget)
	}
	do.prefixCache = vo.prefixCache   // up's --prefix-cache applies to the draft too
	do.limitOptions = vo.limitOptions // up's --max-* and --keepalive-min-time apply to all three services
	if _, _, err := net.SplitHostPort(listenAddr); err != nil {
		return usagef("--listen %q: %v", listenAddr, err)
	}
	// up's TLS flags are the public listener's; the verifier and the draft listen on
	// loopback ports of their own, with mTLS of their own when the public listener
	// serves TLS (upLinks), else plaintext.
	public := vo.tlsOptions
	vo.tlsOptions = tlsOptions{role: router.Verifier}
	if err := public.validate(listenAddr); err != nil {
		return err
	}
	if err := vo.validate(); err != nil {
		return err
	}
	if err := do.validate(); err != nil {
		return err
	}
	if err := lo.validate(); err != nil {
		return err
	}
	if err := ko.validate(); err != nil {
		return err
	}
	if err := ho.validate(vo.maxMessage, &public); err != nil {
		return err
	}
	// Pull hf: models one after the other before anything starts, so that two downloads
	// do not share the terminal.
	if err := vo.pull(ctx, stderr); err != nil {
		return err
	}
	if err := do.pull(ctx, stderr); err != nil {
		return fmt.Errorf("--draft-model: %w", err)
	}
	var tels []*telemetry.Telemetry
	defer func() {
		for _, t := range tels {
			shutdown(ctx, t)
		}
	}()
	setup := func(service, flag, addr string) (*telemetry.Telemetry, error) {
		t, err := lo.telemetry(ctx, service, flag, addr, stderr)
		if err == nil {
			tels = append(tels, t)
		}
		return t, err
	}
	rtel, err := setup("specd-router", "--metrics-listen", metrics)
	if err != nil {
		return err
	}
	publicTLS, err := public.config(rtel.Log)
	if err != nil {
		return err
	}
	var vTLS, dTLS *serve.TLS
	if publicTLS != nil {
		if vTLS, dTLS, err = upLinks(publicTLS); err != nil {
			return err
		}
	}
	vtel, err := setup("specd-verifier", "--verifier-metrics-listen", vMetrics)
	if err != nil {
		return err
	}
	dtel, err := setup("specd-draft", "--draft-metrics-listen", dMetrics)
	if err != nil {
		return err
	}
	rlis, err := listen(listenAddr)
	if err != nil {
		return err
	}
	vlis, err := listen(vo.listen)
	if err != nil {
		return err
	}
	dlis, err := listen(do.listen)
	if err != nil {
		return err
	}
	hcfg, err := ho.open()
	if err != nil {
		return err
	}
	ro := routerOptions{limitOptions: vo.limitOptions, keyOptions: ko, httpOptions: ho, listen: listenAddr, verifiers: addrList{list: vlis.Addr().String()}, drafts: addrList{list: dlis.Addr().String()}, refresh: 2 * time.Second, health: time.Second,
		discoveryOptions: discoveryOptions{mode: "static", breakerFailures: 3, breakerCooldown: 10 * time.Second, wait: time.Minute}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	// Verifier and draft each say once that they are ready; buffered, so that neither
	// waits for the router, which may have stopped already.
	ready := make(chan struct{}, 2)
	start := func(i int, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = f(); errs[i] != nil {
				cancel()
			}
		}()
	}
	readyFn := func(*model.Model) { ready <- struct{}{} }
	// The draft loads once the verifier is ready: the verifier times its passes of 1 to
	// --max-batch tokens at start-up for its cost curve, and with the draft loading
	// beside it on the same cores every pass timed about twice as long.
	verifierReady := make(chan struct{})
	start(0, func() error {
		cfg := vo.config(vtel)
		cfg.Drafts = router.NewStatic(router.Endpoint{ID: ro.drafts.list, Address: ro.drafts.list, Role: router.Draft})
		return budgetFlag(serve.Verifier(ctx, vo.worker(ctx, vtel, vTLS, func(m *model.Model) { close(verifierReady); readyFn(m) }), cfg, vlis), vo.kvBudget, "")
	})
	start(1, func() error {
		select {
		case <-verifierReady:
		case <-ctx.Done():
			dlis.Close()
			return nil
		}
		if err := serve.Draft(ctx, do.worker(ctx, dtel, dTLS, readyFn), do.config(), dlis); err != nil {
			return budgetFlag(fmt.Errorf("draft: %w", err), vo.kvBudget, " (the draft gets a quarter of it)")
		}
		return nil
	})
	start(2, func() error {
		// Not a goroutine waiting on a WaitGroup: when the draft fails to start, it
		// is never ready, and such a goroutine outlived up.
		for range cap(ready) {
			select {
			case <-ready:
			case <-ctx.Done():
				rlis.Close()
				if hcfg != nil {
					hcfg.Listener.Close()
				}
				return nil
			}
		}
		limitMemory(ctx, rtel.Log)
		cfg := ro.config(rtel, publicTLS, func() {
			fmt.Fprintf(stderr, "specd up: serving specd.v1.GenerationService on %s (verifier %s on %s, draft %s on %s)\n",
				rlis.Addr(), vo.model, vlis.Addr(), do.model, dlis.Addr())
			if hcfg != nil {
				scheme := "http"
				if publicTLS != nil {
					scheme = "https"
				}
				fmt.Fprintf(stderr, "specd up: serving the OpenAI-compatible API on %s://%s/v1\n", scheme, hcfg.Listener.Addr())
				fmt.Fprintf(stderr, "specd up: serving Ollama's API on %s://%s/api\n", scheme, hcfg.Listener.Addr())
			}
		})
		cfg.HTTP = hcfg
		return serve.Router(ctx, cfg, rlis)
	})
	wg.Wait()
	return errors.Join(errs...)
}
