package consul

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/specd-dev/specd/internal/consultest"
	"github.com/specd-dev/specd/router"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func verifierReg(addr, advertise string) Registration {
	return Registration{
		Addr: addr, Service: "specd-verifier", Role: router.Verifier, Advertise: advertise,
		Model: "llama-2-7b", TokenizerHash: "9f86d081", Quant: "q8_0", Arch: "llama", Context: 4096, Vocab: 32000, Parameters: 6738415616,
		Tags: []string{"zone-a", "verifier"}, KVFree: 512, Load: 1,
		CheckInterval: 2 * time.Second, DeregisterAfter: time.Minute,
	}
}

func TestRegister(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	ctx := t.Context()
	reg, err := Register(ctx, verifierReg(fake.Addr(), "127.0.0.1:7001"))
	if err != nil {
		t.Fatal(err)
	}
	if reg.ID() != "specd-verifier-127.0.0.1:7001" {
		t.Errorf("ID() = %q", reg.ID())
	}
	got, ok := fake.Service(reg.ID())
	if !ok {
		t.Fatalf("Service(%q) not registered", reg.ID())
	}
	wantMeta := map[string]string{
		"model": "llama-2-7b", "tokenizer_hash": "9f86d081", "quant": "q8_0", "architecture": "llama",
		"context_length": "4096", "vocab_size": "32000", "parameters": "6738415616", "kv_free": "512", "load": "1", "tls": "false",
	}
	if got.Name != "specd-verifier" || got.Address != "127.0.0.1" || got.Port != 7001 ||
		!slices.Equal(got.Tags, []string{"verifier", "zone-a"}) || !maps.Equal(got.Meta, wantMeta) {
		t.Errorf("registered %+v, want name specd-verifier at 127.0.0.1:7001, tags [verifier zone-a], meta %v", got, wantMeta)
	}
	wantCheck := consultest.Check{
		ID: "service:" + reg.ID(), Name: "specd-verifier grpc.health.v1", Status: consultest.Critical,
		GRPC: "127.0.0.1:7001", Interval: 2 * time.Second, DeregisterCriticalServiceAfter: time.Minute,
	}
	if len(got.Checks) != 1 || got.Checks[0] != wantCheck {
		t.Errorf("checks = %+v, want [%+v]", got.Checks, wantCheck)
	}

	// Update refreshes the headroom and keeps the check's state.
	if err := fake.SetStatus(reg.ID(), consultest.Passing); err != nil {
		t.Fatal(err)
	}
	if err := reg.Update(ctx, 100, 7); err != nil {
		t.Fatal(err)
	}
	got, _ = fake.Service(reg.ID())
	if got.Meta["kv_free"] != "100" || got.Meta["load"] != "7" || got.Meta["model"] != "llama-2-7b" {
		t.Errorf("after Update(100, 7) meta = %v", got.Meta)
	}
	if got.Checks[0].Status != consultest.Passing {
		t.Errorf("after Update the check is %s, want passing", got.Checks[0].Status)
	}

	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := fake.Service(reg.ID()); ok {
		t.Error("still registered after Deregister")
	}
	if err := reg.Deregister(ctx); err != nil {
		t.Errorf("second Deregister() = %v, want nil", err)
	}
	if err := reg.Update(ctx, 1, 1); !errors.Is(err, ErrDeregistered) {
		t.Errorf("Update after Deregister = %v, want ErrDeregistered", err)
	}
}

func TestDeregisterGone(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	reg, err := Register(t.Context(), verifierReg(fake.Addr(), "127.0.0.1:7001"))
	if err != nil {
		t.Fatal(err)
	}
	fake.Close() // the agent is gone: Deregister reports the failure
	if err := reg.Deregister(t.Context()); err == nil {
		t.Error("Deregister with the agent down = nil, want an error")
	}
	fake2 := consultest.New(t, consultest.Options{})
	r2 := verifierReg(fake2.Addr(), "127.0.0.1:7001")
	reg2, err := Register(t.Context(), r2)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Register(t.Context(), r2)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Deregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := reg2.Deregister(t.Context()); err != nil {
		t.Errorf("Deregister of an instance the agent no longer knows = %v, want nil", err)
	}
}

func TestToken(t *testing.T) {
	fake := consultest.New(t, consultest.Options{Token: "s3cret"})
	r := verifierReg(fake.Addr(), "127.0.0.1:7001")
	r.Token = "wrong"
	if _, err := Register(t.Context(), r); err == nil {
		t.Error("Register with a wrong token succeeded")
	}
	r.Token = "s3cret"
	reg, err := Register(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Update(t.Context(), 1, 0); err != nil {
		t.Error(err)
	}
	if err := reg.Deregister(t.Context()); err != nil {
		t.Error(err)
	}
}

func TestRegisterInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Registration)
	}{
		{"no agent address", func(r *Registration) { r.Addr = "" }},
		{"no service", func(r *Registration) { r.Service = "" }},
		{"unknown role", func(r *Registration) { r.Role = "gateway" }},
		{"advertise without port", func(r *Registration) { r.Advertise = "127.0.0.1" }},
		{"advertise on any address", func(r *Registration) { r.Advertise = "0.0.0.0:7001" }},
		{"advertise without host", func(r *Registration) { r.Advertise = ":7001" }},
		{"advertise port out of range", func(r *Registration) { r.Advertise = "h:70000" }},
		{"no check interval", func(r *Registration) { r.CheckInterval = 0 }},
		{"negative deregister", func(r *Registration) { r.DeregisterAfter = -time.Second }},
		{"negative context", func(r *Registration) { r.Context = -1 }},
		{"unknown agent scheme", func(r *Registration) { r.Addr = "ftp://127.0.0.1:1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := verifierReg("127.0.0.1:1", "127.0.0.1:7001")
			tt.mutate(&r)
			if _, err := Register(context.Background(), r); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Register() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestUpdateRacesDeregister checks that a periodic updater racing shutdown cannot bring
// the instance back once Deregister has returned.
func TestUpdateRacesDeregister(t *testing.T) {
	fake := consultest.New(t, consultest.Options{})
	reg, err := Register(t.Context(), verifierReg(fake.Addr(), "127.0.0.1:7001"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if err := reg.Update(context.Background(), uint64(i), i%5); err != nil {
				done <- err
				return
			}
			_ = reg.ID()
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if err := reg.Deregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrDeregistered) {
		t.Errorf("Update loop ended with %v, want ErrDeregistered", err)
	}
	if _, ok := fake.Service(reg.ID()); ok {
		t.Error("instance registered again after Deregister")
	}
}
