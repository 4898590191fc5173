package auth

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/apikey"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/quota"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/telemetry"
)

// AttrKey is the span attribute that names a request's API key.
const AttrKey = "specd.api_key"

// The public API's methods that a key's quotas apply to: the generating ones, and
// Tokenize and Detokenize, which are a verifier's work too (its streams only: they
// generate nothing).
const (
	methodGenerate   = "/specd.v1.GenerationService/Generate"
	methodComplete   = "/specd.v1.GenerationService/Complete"
	methodTokenize   = "/specd.v1.GenerationService/Tokenize"
	methodDetokenize = "/specd.v1.GenerationService/Detokenize"
	methodListModels = "/specd.v1.GenerationService/ListModels"
)

// Guard authenticates the public API's requests against Keys and applies each key's
// model list and quotas. Every method but health and reflection needs a key;
// Generate, Complete, Tokenize and Detokenize count against the key's streams (and are refused
// while its token bucket is empty); Generate and Complete are charged the tokens
// they generate: the guard puts the charge in the request's context
// (services.WithCharge) and the router bills the tokens as its verifier commits them
// (services.Charge), so a request that fails or is cancelled after generating is
// charged all the same. Safe for concurrent use.
type Guard struct {
	keys    *Keys
	log     *slog.Logger
	metrics *telemetry.Metrics // refusals are counted in specd_requests_total; nil: not
	now     func() time.Time
	sample  services.LogSampler // refusal records, by key name and code

	mu  sync.Mutex
	tab quota.Table // by key name
}

// NewGuard returns a guard over keys; metrics may be nil.
func NewGuard(keys *Keys, log *slog.Logger, metrics *telemetry.Metrics) *Guard {
	return &Guard{keys: keys, log: log, metrics: metrics, now: time.Now, sample: services.LogSampler{Every: services.RefusalLogEvery}}
}

// ServerOptions install the guard's interceptors on a server.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream)}
}

// maxKeyBytes bounds a presented key: longer is no key of ours.
const maxKeyBytes = 256

// authenticate finds the request's key: ErrUnauthenticated when it sends none or one
// the file does not hold.
func (g *Guard) authenticate(ctx context.Context) (apikey.Key, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return apikey.Key{}, fmt.Errorf("%w: no API key: send the metadata \"authorization: Bearer <key>\"", services.ErrUnauthenticated)
	}
	scheme, secret, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	secret = strings.TrimSpace(secret)
	if !strings.EqualFold(scheme, "bearer") || secret == "" {
		return apikey.Key{}, fmt.Errorf("%w: the authorization metadata is not \"Bearer <key>\"", services.ErrUnauthenticated)
	}
	if len(secret) > maxKeyBytes {
		return apikey.Key{}, fmt.Errorf("%w: unknown API key", services.ErrUnauthenticated)
	}
	k, ok := g.keys.Set().Lookup(secret)
	if !ok {
		return apikey.Key{}, fmt.Errorf("%w: unknown API key", services.ErrUnauthenticated)
	}
	return k, nil
}

// checkModel refuses a model the key may not use (ErrPermissionDenied).
func checkModel(k *apikey.Key, req any) error {
	r, ok := req.(interface{ GetModel() string })
	if !ok || k.Allows(r.GetModel()) {
		return nil
	}
	if r.GetModel() == "" {
		return fmt.Errorf("%w: key %q may only use the models %s, and the request names none", services.ErrPermissionDenied, k.Name, strings.Join(k.Models, ", "))
	}
	return fmt.Errorf("%w: key %q may not use model %q", services.ErrPermissionDenied, k.Name, r.GetModel())
}

// admit lets a generating request of k start, or refuses it (RESOURCE_EXHAUSTED
// with a retry hint); charge bills tokens it generated, done ends it.
func (g *Guard) admit(k *apikey.Key) (charge func(tokens int), done func(), err error) {
	g.mu.Lock()
	err = g.tab.Admit(k.Name, k.Limits, g.now())
	g.mu.Unlock()
	if err != nil {
		return nil, nil, services.Refused(err)
	}
	charge = func(tokens int) {
		g.mu.Lock()
		g.tab.Charge(k.Name, k.Limits, tokens, g.now())
		g.mu.Unlock()
	}
	done = func() {
		g.mu.Lock()
		g.tab.Done(k.Name, k.Limits, g.now())
		g.mu.Unlock()
	}
	return charge, done, nil
}

// enter authenticates a request to method and marks ctx and its span with the key's
// name. A refusal is returned as a gRPC status, logged and, for a generating method,
// counted.
func (g *Guard) enter(ctx context.Context, method string) (context.Context, apikey.Key, error) {
	k, err := g.authenticate(ctx)
	if err != nil {
		return ctx, k, g.refuse(ctx, method, err)
	}
	ctx = telemetry.WithKey(ctx, k.Name)
	trace.SpanFromContext(ctx).SetAttributes(attribute.String(AttrKey, k.Name))
	return ctx, k, nil
}

// refuse logs and counts a refused request and returns its status. Every refusal is
// counted; the log gets one record per key (or none) and code per RefusalLogEvery, with
// the number held back, so a flood of bad keys cannot fill it.
func (g *Guard) refuse(ctx context.Context, method string, err error) error {
	st := services.Status(err)
	if ok, held := g.sample.Allow(telemetry.KeyFrom(ctx)+" "+status.Code(st).String(), g.now()); ok {
		g.log.InfoContext(ctx, "request refused", "method", method, "peer", services.PeerID(ctx), "code", status.Code(st).String(), "err", err, "refused_unlogged", held)
	}
	if method == methodGenerate || method == methodComplete {
		g.metrics.RecordRequest(ctx, telemetry.RequestStats{Code: status.Code(st)})
	}
	return st
}

func (g *Guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if services.OpenMethod(info.FullMethod) {
		return handler(ctx, req)
	}
	ctx, k, err := g.enter(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if err := checkModel(&k, req); err != nil {
		return nil, g.refuse(ctx, info.FullMethod, err)
	}
	tokenizer := info.FullMethod == methodTokenize || info.FullMethod == methodDetokenize
	if info.FullMethod != methodComplete && !tokenizer {
		resp, err := handler(ctx, req)
		if info.FullMethod == methodListModels && k.Models != nil && err == nil {
			resp = onlyModels(resp, &k)
		}
		return resp, err
	}
	charge, done, err := g.admit(&k)
	if err != nil {
		return nil, g.refuse(ctx, info.FullMethod, err)
	}
	defer done()
	if tokenizer {
		return handler(ctx, req)
	}
	return handler(services.WithCharge(ctx, charge), req)
}

// onlyModels keeps in a ListModels response the models the key may use.
func onlyModels(resp any, k *apikey.Key) any {
	r, ok := resp.(*specdv1.ListModelsResponse)
	if !ok {
		return resp
	}
	out := &specdv1.ListModelsResponse{}
	for _, m := range r.GetModels() {
		if k.Allows(m.GetName()) {
			out.Models = append(out.Models, m)
		}
	}
	return out
}

func (g *Guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if services.OpenMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx, k, err := g.enter(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	gs := &guardedStream{ServerStream: ss, ctx: ctx, g: g, key: &k, method: info.FullMethod}
	if info.FullMethod == methodGenerate {
		gs.ctx = services.WithCharge(ctx, gs.bill)
		defer gs.end()
	}
	return handler(srv, gs)
}

// guardedStream checks the model of the messages it receives and, on Generate,
// admits the request to the key's quota once its request passed that check (as a
// unary call is: a model the key may not use is PERMISSION_DENIED whatever its
// quota). Its context carries the key's name and, on Generate, the quota's charge.
type guardedStream struct {
	grpc.ServerStream
	ctx    context.Context
	g      *Guard
	key    *apikey.Key
	method string

	mu     sync.Mutex
	charge func(tokens int) // nil: not admitted (yet)
	done   func()           // ends the admission; nil: none
}

// bill charges tokens to the key once the request was admitted.
func (s *guardedStream) bill(tokens int) {
	s.mu.Lock()
	charge := s.charge
	s.mu.Unlock()
	if charge != nil {
		charge(tokens)
	}
}

// end ends the request's admission, if it had one.
func (s *guardedStream) end() {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done != nil {
		done()
	}
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := checkModel(s.key, m); err != nil {
		return s.g.refuse(s.ctx, s.method, err)
	}
	if s.method != methodGenerate {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return nil // admitted with an earlier message
	}
	charge, done, err := s.g.admit(s.key)
	if err != nil {
		return s.g.refuse(s.ctx, s.method, err)
	}
	s.charge, s.done = charge, done
	return nil
}

// Bearer is a client's per-RPC credential that sends secret as the metadata
// "authorization: Bearer <secret>" (grpc.WithPerRPCCredentials). It does not demand
// TLS, since specd's plaintext default is for loopback; over any other network the
// connection should be TLS, or the key can be read off the wire.
type Bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (Bearer) RequireTransportSecurity() bool { return false }

var _ credentials.PerRPCCredentials = Bearer("")
