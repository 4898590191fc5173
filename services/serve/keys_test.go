package serve_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/internal/testkeys"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/auth"
	"github.com/specd-dev/specd/services/telemetry"
)

// bearer is ctx sending secret as the request's API key.
func bearer(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// TestAPIKeys runs a router whose public API demands API keys, with a real verifier
// and draft behind it, and checks issue 14's promises one per subtest: no key or a
// wrong one is UNAUTHENTICATED while health and reflection stay open; the file is
// reloaded when it changes, and a bad file keeps the keys in force; a key's model
// list gives PERMISSION_DENIED; its token rate and its stream count give
// RESOURCE_EXHAUSTED with a RetryInfo hint; and the key's name, never the key, is in
// metrics, spans and logs.
func TestAPIKeys(t *testing.T) {
	const (
		adminKey = "specd_admin-secret-for-tests"
		smallKey = "specd_small-secret-for-tests"
		tinyKey  = "specd_tiny-secret-for-tests"
		oneKey   = "specd_one-secret-for-tests"
		bobKey   = "specd_bob-secret-for-tests"
		carolKey = "specd_carol-secret-for-tests"
	)
	secrets := []string{adminKey, smallKey, tinyKey, oneKey, bobKey, carolKey}
	path := filepath.Join(t.TempDir(), "keys.txt")
	testkeys.Write(t, path, testkeys.Line("admin", adminKey, ""), 0)
	keys, err := auth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &traceLog{} // a concurrent-safe buffer
	rtel, rspans := recordSpans(t, "specd-router")
	rlog, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "specd-router-log", Log: logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rlog.Shutdown(context.Background()) })
	s := startStackWith(t, stackOptions{rtel: rtel, keys: keys, apiKey: adminKey, rlog: rlog.Log})
	cc, err := services.Dial(s.router)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	raw := specdv1.NewGenerationServiceClient(cc) // sends only the metadata a test puts in ctx
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	short := &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 2}

	t.Run("no key or a wrong one is UNAUTHENTICATED", func(t *testing.T) {
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{
			{"no key", ctx},
			{"unknown key", bearer(ctx, "specd_not-a-key")},
			{"the hash instead of the key", bearer(ctx, strings.Fields(testkeys.Line("x", adminKey, ""))[1])},
			{"not bearer", metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+adminKey)},
			{"bearer without a key", metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer ")},
		} {
			if _, err := raw.Complete(c.ctx, short); status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s: Complete = %v, want UNAUTHENTICATED", c.name, err)
			}
			st, err := raw.Generate(c.ctx, short)
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s: Generate = %v, want UNAUTHENTICATED", c.name, err)
			}
			for _, call := range []func() error{
				func() error { _, err := raw.ListModels(c.ctx, &specdv1.ListModelsRequest{}); return err },
				func() error { _, err := raw.Tokenize(c.ctx, &specdv1.TokenizeRequest{Text: "x"}); return err },
			} {
				if err := call(); status.Code(err) != codes.Unauthenticated {
					t.Errorf("%s: ListModels or Tokenize = %v, want UNAUTHENTICATED", c.name, err)
				}
			}
		}
		if _, err := raw.Complete(bearer(ctx, adminKey), short); err != nil {
			t.Errorf("the right key: %v", err)
		}
	})

	t.Run("health and reflection stay open", func(t *testing.T) {
		if r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health without a key: %v, %v, want SERVING", r, err)
		}
		rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := rs.Recv()
		if err != nil || !strings.Contains(fmt.Sprint(resp.GetListServicesResponse()), "specd.v1.GenerationService") {
			t.Errorf("reflection without a key: %v, %v, want the services listed", resp, err)
		}
		rs.CloseSend()
	})

	target := s.target.Name
	// The late keys hold 8 tokens and take 1000 s to refill one: a request that
	// generated more leaves its key refused for the rest of the test.
	var late []string
	lateLines := ""
	for i := range 8 {
		secret := fmt.Sprintf("specd_late%d-secret-for-tests", i)
		late, secrets = append(late, secret), append(secrets, secret)
		lateLines += testkeys.Line(fmt.Sprintf("late%d", i), secret, "rate=0.001 burst=8")
	}
	testkeys.Write(t, path, testkeys.Line("admin", adminKey, "")+testkeys.Line("small", smallKey, "rate=1 burst=8")+testkeys.Line("tiny", tinyKey, "rate=1 burst=8")+
		testkeys.Line("one", oneKey, "streams=1")+testkeys.Line("bob", bobKey, "models="+target)+
		testkeys.Line("carol", carolKey, "rate=0.001 burst=1 models="+target)+lateLines, 1)

	t.Run("a changed file is reloaded", func(t *testing.T) {
		eventually(t, "a key added to the file", codes.Unauthenticated, func() error {
			_, err := raw.ListModels(bearer(ctx, bobKey), &specdv1.ListModelsRequest{})
			return err
		})
	})

	t.Run("a key's model list is PERMISSION_DENIED", func(t *testing.T) {
		bctx := bearer(ctx, bobKey)
		if _, err := raw.Complete(bctx, &specdv1.GenerateRequest{Prompt: "Hi", MaxTokens: 2, Model: target}); err != nil {
			t.Errorf("bob on its own model: %v", err)
		}
		for _, model := range []string{"another-model", ""} {
			req := &specdv1.GenerateRequest{Prompt: "Hi", MaxTokens: 2, Model: model}
			if _, err := raw.Complete(bctx, req); status.Code(err) != codes.PermissionDenied {
				t.Errorf("bob's Complete on model %q: %v, want PERMISSION_DENIED", model, err)
			}
			st, err := raw.Generate(bctx, req)
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("bob's Generate on model %q: %v, want PERMISSION_DENIED", model, err)
			}
		}
		if _, err := raw.Tokenize(bctx, &specdv1.TokenizeRequest{Text: "x", Model: "another-model"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("bob's Tokenize on another model: %v, want PERMISSION_DENIED", err)
		}
		list, err := raw.ListModels(bctx, &specdv1.ListModelsRequest{})
		if err != nil || len(list.GetModels()) == 0 {
			t.Fatalf("bob's ListModels: %v, %v", list, err)
		}
		for _, m := range list.GetModels() {
			if m.GetName() != target {
				t.Errorf("bob's ListModels lists %q, a model it may not use", m.GetName())
			}
		}
		all, err := s.client.ListModels(ctx, &specdv1.ListModelsRequest{})
		if err != nil || len(all.GetModels()) <= len(list.GetModels()) {
			t.Errorf("admin's ListModels: %v, %v, want more models than bob's %d", all, err, len(list.GetModels()))
		}
	})

	t.Run("a model the key may not use is PERMISSION_DENIED whatever its quota", func(t *testing.T) {
		// carol's bucket of 1 token is emptied by one request; after it, a request
		// for a model carol may not use is refused for the model, on either method.
		cctx := bearer(ctx, carolKey)
		if _, err := raw.Complete(cctx, &specdv1.GenerateRequest{Prompt: "Hi", MaxTokens: 2, Model: target}); err != nil {
			t.Fatalf("carol on its own model: %v", err)
		}
		other := &specdv1.GenerateRequest{Prompt: "Hi", MaxTokens: 2, Model: "another-model"}
		if _, err := raw.Complete(cctx, other); status.Code(err) != codes.PermissionDenied {
			t.Errorf("carol's Complete on another model with an empty bucket: %v, want PERMISSION_DENIED", err)
		}
		st, err := raw.Generate(cctx, other)
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("carol's Generate on another model with an empty bucket: %v, want PERMISSION_DENIED", err)
		}
		st, err = raw.Generate(cctx, &specdv1.GenerateRequest{Prompt: "Hi", MaxTokens: 2, Model: target})
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("carol's Generate on its own model with an empty bucket: %v, want RESOURCE_EXHAUSTED", err)
		}
	})

	t.Run("an empty token bucket is RESOURCE_EXHAUSTED with a retry hint", func(t *testing.T) {
		// Each key empties its bucket of 8 with one request of more tokens, charged
		// as the router receives them from the verifier.
		long := &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 24, Speculation: &specdv1.SpeculationOptions{Disabled: true}}
		for _, c := range []struct {
			name, key string
			run       func(context.Context) (int, error)
		}{
			{"Complete", smallKey, func(ctx context.Context) (int, error) {
				resp, err := raw.Complete(ctx, long)
				return len(resp.GetTokenIds()), err
			}},
			{"Generate", tinyKey, func(ctx context.Context) (int, error) {
				st, err := raw.Generate(ctx, long)
				if err != nil {
					return 0, err
				}
				n := 0
				for {
					msg, err := st.Recv()
					if err != nil {
						return n, err
					}
					if msg.GetFinal() != nil {
						return n, nil
					}
					n += len(msg.GetChunk().GetTokenIds())
				}
			}},
		} {
			kctx := bearer(ctx, c.key)
			n, err := c.run(kctx)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if n < 12 {
				t.Fatalf("%s: only %d tokens generated: too few to empty a bucket of 8", c.name, n)
			}
			// The bucket held 8 and has n taken: it needs n-7 seconds (less what has
			// refilled since) to hold one token again.
			_, err = raw.Complete(kctx, short)
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("after a %s of %d tokens, the next request: %v, want RESOURCE_EXHAUSTED", c.name, n, err)
			}
			if d := retryDelay(err); d <= 0 || d > time.Duration(n-7)*time.Second {
				t.Errorf("after a %s of %d tokens: retry hint %v, want in (0, %ds]", c.name, n, d, n-7)
			}
			st, err := raw.Generate(kctx, short)
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != codes.ResourceExhausted || retryDelay(err) <= 0 {
				t.Errorf("after a %s: a Generate on the empty bucket: %v, want RESOURCE_EXHAUSTED with a retry hint", c.name, err)
			}
		}
		if _, err := raw.Complete(bearer(ctx, adminKey), short); err != nil {
			t.Errorf("another key meanwhile: %v", err)
		}
	})

	t.Run("a Complete cut off by its deadline is charged what it generated", func(t *testing.T) {
		// Generating up to the context, the request outlives a short deadline. The
		// deadline is adapted, one fresh key per try, until a Complete fails with
		// DEADLINE_EXCEEDED after generating more than the key's 8 tokens (the
		// router's metrics tell how many); the key's next request must be refused.
		long := &specdv1.GenerateRequest{Prompt: "Once upon a time", Speculation: &specdv1.SpeculationOptions{Disabled: true}}
		d := 50 * time.Millisecond
		for i, key := range late {
			name := fmt.Sprintf("late%d", i)
			dctx, cancel := context.WithTimeout(bearer(ctx, key), d)
			_, err := raw.Complete(dctx, long)
			cancel()
			n := generatedBy(t, rtel, name) // once the router has ended the request
			switch {
			case err == nil: // finished within d
				d /= 2
				continue
			case status.Code(err) != codes.DeadlineExceeded:
				t.Fatalf("Complete with a deadline of %v: %v, want DEADLINE_EXCEEDED", d, err)
			case n <= 8:
				d *= 2
				continue
			}
			// A request without a prompt is refused by the quota, if the bucket is
			// empty, or else as a bad argument: it generates nothing either way.
			_, err = raw.Complete(bearer(ctx, key), &specdv1.GenerateRequest{})
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("after a Complete cut off by its deadline (%v) with %d tokens generated, the key's next request: %v, want RESOURCE_EXHAUSTED", d, n, err)
			}
			return
		}
		t.Fatalf("no Complete was cut off by its deadline after generating more than 8 tokens (last deadline %v)", d)
	})

	t.Run("past a key's streams is RESOURCE_EXHAUSTED with a retry hint", func(t *testing.T) {
		octx := bearer(ctx, oneKey)
		// A Generate is admitted once its request is in; one that has streamed its
		// first chunk holds the key's one stream until it has generated up to the
		// context or is cancelled. Were it to finish before the next request is in,
		// that request would be let in: then the test holds another.
		long := &specdv1.GenerateRequest{Prompt: "Once upon a time", Speculation: &specdv1.SpeculationOptions{Disabled: true}}
		var stop context.CancelFunc
		for try := 0; ; try++ {
			if try == 5 {
				t.Fatalf("in %d tries, no request was refused beside a held stream", try)
			}
			var hold context.Context
			hold, stop = context.WithCancel(octx)
			defer stop()
			hs, err := raw.Generate(hold, long)
			if err == nil {
				_, err = hs.Recv()
			}
			if status.Code(err) == codes.ResourceExhausted { // the last try's stream is still ending
				stop()
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatalf("the held stream: %v", err)
			}
			_, err = raw.Complete(octx, short)
			if status.Code(err) == codes.ResourceExhausted {
				if retryDelay(err) <= 0 {
					t.Errorf("refusal %v: want a RetryInfo hint", err)
				}
				break
			}
			if err != nil {
				t.Fatalf("a request beside the held stream: %v, want RESOURCE_EXHAUSTED", err)
			}
			stop()
		}
		if _, err := raw.Complete(bearer(ctx, adminKey), short); err != nil {
			t.Errorf("another key meanwhile: %v", err)
		}
		stop()
		eventually(t, "a request once the held stream ended", codes.ResourceExhausted, func() error {
			_, err := raw.Complete(octx, short)
			return err
		})
	})

	t.Run("a bad file keeps the keys in force", func(t *testing.T) {
		testkeys.Write(t, path, "admin "+adminKey+"\n", 2) // a plaintext key where the hash goes
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), "api key file not reloaded") {
			if time.Now().After(deadline) {
				t.Fatalf("no error logged for a bad key file; log:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, k := range []string{adminKey, bobKey} {
			if _, err := raw.ListModels(bearer(ctx, k), &specdv1.ListModelsRequest{}); err != nil {
				t.Errorf("a key in force before the bad file: %v", err)
			}
		}
	})

	t.Run("the key's name is in metrics, spans and logs; the key is not", func(t *testing.T) {
		exposition := metricsText(rtel)
		for _, want := range [][]string{
			{"specd_requests_total{", `code="OK"`, `key="admin"`},
			{"specd_requests_total{", `code="ResourceExhausted"`, `key="small"`},
			{"specd_requests_total{", `code="ResourceExhausted"`, `key="one"`},
			{"specd_requests_total{", `code="PermissionDenied"`, `key="bob"`},
			{"specd_tokens_generated_total{", `key="small"`},
		} {
			if !hasLine(exposition, want...) {
				t.Errorf("no /metrics line with %v", want)
			}
		}
		var named bool
		for _, sp := range rspans.Ended() {
			if sp.SpanKind() != trace.SpanKindServer || !strings.HasPrefix(sp.Name(), "specd.v1.GenerationService/") {
				continue
			}
			for _, a := range sp.Attributes() {
				named = named || (string(a.Key) == auth.AttrKey && a.Value.AsString() == "admin")
			}
		}
		if !named {
			t.Errorf("no server span of the public API with %s=admin", auth.AttrKey)
		}
		if !strings.Contains(logs.String(), `"key":"small"`) || !strings.Contains(logs.String(), `"msg":"request refused"`) {
			t.Errorf("no refusal logged with the key's name; log:\n%s", logs.String())
		}
		everything := exposition + logs.String() + spanText(rspans)
		for _, secret := range secrets {
			if strings.Contains(everything, secret) {
				t.Errorf("the secret %q appears in metrics, logs or spans", secret)
			}
		}
	})
}

// eventually calls f until it succeeds, failing the test if it fails with another
// code than meanwhile or still fails after 10 s.
func eventually(t *testing.T, what string, meanwhile codes.Code, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if status.Code(err) != meanwhile || time.Now().After(deadline) {
			t.Fatalf("%s: %v, want it to succeed within 10 s", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// generatedBy waits until the router's metrics count a request of the key called
// name and returns the tokens they say its requests generated.
func generatedBy(t *testing.T, tel *telemetry.Telemetry, name string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		text := metricsText(tel)
		if hasLine(text, telemetry.NameRequests+"{", `key="`+name+`"`) {
			return int(metricSum(t, text, telemetry.NameTokensGenerated, `key="`+name+`"`))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request of key %s in the router's metrics after 10 s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricsText is tel's /metrics exposition.
func metricsText(tel *telemetry.Telemetry) string {
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// metricSum adds up the samples of the metric called name in an exposition whose
// lines hold every one of parts.
func metricSum(t *testing.T, text, name string, parts ...string) float64 {
	t.Helper()
	var sum float64
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, name+"{") || !hasLine(l, parts...) {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", l, err)
		}
		sum += v
	}
	return sum
}

// hasLine reports whether a line of text holds every one of parts.
func hasLine(text string, parts ...string) bool {
next:
	for _, l := range strings.Split(text, "\n") {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		return true
	}
	return false
}

// spanText is every recorded span's name, attributes, events and status as text.
func spanText(rec *tracetest.SpanRecorder) string {
	var b strings.Builder
	for _, sp := range rec.Ended() {
		fmt.Fprintln(&b, sp.Name(), sp.Attributes(), sp.Events(), sp.Status())
	}
	return b.String()
}
