package consul

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/specd-dev/specd/router"
)

func entry(node, nodeAddr, id, addr string, port int, meta map[string]string) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: node, Address: nodeAddr},
		Service: &api.AgentService{ID: id, Service: "specd-verifier", Address: addr, Port: port, Meta: meta},
	}
}

func TestEndpoint(t *testing.T) {
	full := map[string]string{
		MetaModel: "llama-7b", MetaTokenizerHash: "abc", MetaQuant: "q8_0", MetaArch: "llama",
		MetaContext: "4096", MetaVocab: "32000", MetaParameters: "18446744073709551615", MetaKVFree: "18446744073709551615", MetaLoad: "3",
	}
	tests := []struct {
		name    string
		e       *api.ServiceEntry
		want    router.Endpoint
		wantErr bool
	}{
		{name: "full", e: entry("n1", "10.0.0.1", "v1", "127.0.0.1", 7001, full), want: router.Endpoint{
			ID: "v1", Address: "127.0.0.1:7001", Role: router.Verifier, Model: "llama-7b", TokenizerHash: "abc",
			Quant: "q8_0", Arch: "llama", Context: 4096, Vocab: 32000, Parameters: 1<<64 - 1, KVFree: 1<<64 - 1, Load: 3,
		}},
		{name: "node address fallback", e: entry("n1", "10.0.0.1", "v1", "", 7001, nil),
			want: router.Endpoint{ID: "v1", Address: "10.0.0.1:7001", Role: router.Verifier}},
		{name: "ipv6", e: entry("n1", "", "v1", "::1", 7001, nil),
			want: router.Endpoint{ID: "v1", Address: "[::1]:7001", Role: router.Verifier}},
		{name: "no service", e: &api.ServiceEntry{}, wantErr: true},
		{name: "no address", e: entry("n1", "", "v1", "", 7001, nil), wantErr: true},
		{name: "no port", e: entry("n1", "", "v1", "127.0.0.1", 0, nil), wantErr: true},
		{name: "context not a number", e: entry("n1", "", "v1", "127.0.0.1", 1, map[string]string{MetaContext: "4k"}), wantErr: true},
		{name: "negative load", e: entry("n1", "", "v1", "127.0.0.1", 1, map[string]string{MetaLoad: "-1"}), wantErr: true},
		{name: "load overflows int32", e: entry("n1", "", "v1", "127.0.0.1", 1, map[string]string{MetaLoad: "4294967296"}), wantErr: true},
		{name: "kv_free overflows", e: entry("n1", "", "v1", "127.0.0.1", 1, map[string]string{MetaKVFree: "18446744073709551616"}), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := endpoint(router.Verifier, tt.e)
			if (err != nil) != tt.wantErr {
				t.Fatalf("endpoint() error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("endpoint() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestView(t *testing.T) {
	entries := []*api.ServiceEntry{
		entry("n2", "", "b", "127.0.0.1", 2, nil),
		entry("n1", "", "a", "127.0.0.1", 1, nil),
		entry("n1", "", "bad", "127.0.0.1", 3, map[string]string{MetaContext: "x"}),
		entry("n1", "", "dup", "127.0.0.1", 4, nil),
		entry("n2", "", "dup", "127.0.0.2", 4, nil),
	}
	eps, bad := view(router.Draft, entries, nil)
	var got []string
	for _, e := range eps {
		got = append(got, e.ID+"@"+e.Address)
		if e.Role != router.Draft {
			t.Errorf("endpoint %s role = %q, want %q", e.ID, e.Role, router.Draft)
		}
	}
	want := []string{"a@127.0.0.1:1", "b@127.0.0.1:2", "n1/dup@127.0.0.1:4", "n2/dup@127.0.0.2:4"}
	if !slices.Equal(got, want) {
		t.Errorf("view() = %v, want %v", got, want)
	}
	if len(bad) != 1 || bad[0].ID != "bad" {
		t.Errorf("view() skipped %+v, want only bad", bad)
	}
}

// TestViewTransport: a watcher that dials with TLS skips instances registered as
// plaintext, and one that dials plaintext skips TLS ones; instances that do not say
// are kept either way.
func TestViewTransport(t *testing.T) {
	entries := []*api.ServiceEntry{
		entry("n1", "", "tls", "127.0.0.1", 1, map[string]string{MetaTLS: "true"}),
		entry("n1", "", "plain", "127.0.0.1", 2, map[string]string{MetaTLS: "false"}),
		entry("n1", "", "unsaid", "127.0.0.1", 3, nil),
		entry("n1", "", "garbled", "127.0.0.1", 4, map[string]string{MetaTLS: "yes please"}),
	}
	for _, tc := range []struct {
		tls       *bool
		kept, bad []string
	}{
		{nil, []string{"garbled", "plain", "tls", "unsaid"}, nil},
		{new(true), []string{"tls", "unsaid"}, []string{"plain", "garbled"}},
		{new(false), []string{"plain", "unsaid"}, []string{"tls", "garbled"}},
	} {
		eps, bad := view(router.Verifier, entries, tc.tls)
		var kept, skipped []string
		for _, e := range eps {
			kept = append(kept, e.ID)
		}
		for _, b := range bad {
			skipped = append(skipped, b.ID)
		}
		if !slices.Equal(kept, tc.kept) || !slices.Equal(skipped, tc.bad) {
			t.Errorf("view(tls %v) kept %v skipped %v, want %v and %v", tc.tls, kept, skipped, tc.kept, tc.bad)
		}
	}
}

// TestNextIndex checks the rules of Consul's "Blocking Queries" page, section
// "Implementation Details".
func TestNextIndex(t *testing.T) {
	tests := []struct{ prev, got, want uint64 }{
		{0, 5, 5},   // first answer
		{5, 9, 9},   // moved on
		{5, 5, 5},   // wait ended without a change
		{9, 5, 0},   // went backwards: reset
		{0, 0, 1},   // never block on 0
		{9, 0, 0},   // backwards to 0: reset first
		{1, 0, 0},   // likewise
		{0, 1, 1},   // smallest valid index
		{3, 40, 40}, // big jump
	}
	for _, tt := range tests {
		if got := nextIndex(tt.prev, tt.got); got != tt.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tt.prev, tt.got, got, tt.want)
		}
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := bucket{every: time.Second, burst: 2}
	steps := []struct {
		at   time.Duration // since t0
		want time.Duration
	}{
		{0, 0},                     // burst
		{0, 0},                     // burst
		{0, time.Second},           // third at once waits one interval
		{time.Second, time.Second}, // debt paid at 1s, nothing accrued for this one
		{5 * time.Second, 0},       // refilled (capped at the burst)
		{5 * time.Second, 0},       //
		{5 * time.Second, time.Second},
	}
	for i, s := range steps {
		if got := b.take(t0.Add(s.at)); got != s.want {
			t.Errorf("step %d: take(t0+%v) = %v, want %v", i, s.at, got, s.want)
		}
	}
	if got := (&bucket{}).take(t0); got != 0 {
		t.Errorf("disabled bucket take() = %v, want 0", got)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{first: 250 * time.Millisecond, max: 2 * time.Second}
	caps := []time.Duration{250, 500, 1000, 2000, 2000, 2000}
	for i, c := range caps {
		c *= time.Millisecond
		if d := b.next(); d < c/2 || d >= c {
			t.Errorf("retry %d: next() = %v, want in [%v, %v)", i, d, c/2, c)
		}
	}
	b.reset()
	if d := b.next(); d >= 250*time.Millisecond {
		t.Errorf("after reset next() = %v, want < 250ms", d)
	}
}

func TestRegistrationDefaults(t *testing.T) {
	r := Registration{Service: "specd-draft", Role: router.Draft, Advertise: "10.1.2.3:7002", CheckInterval: 5 * time.Second}
	s := r.service()
	got := fmt.Sprint(s.ID, " ", s.Address, " ", s.Port, " ", s.Tags, " ", s.Check.GRPC, " ", s.Check.Interval, " ", s.Check.DeregisterCriticalServiceAfter == "")
	if want := "specd-draft-10.1.2.3:7002 10.1.2.3 7002 [draft] 10.1.2.3:7002 5s true"; got != want {
		t.Errorf("service() = %s, want %s", got, want)
	}
}

// FuzzView: a health response is untrusted (anyone who may register a service writes
// its meta), so whatever the agent's JSON holds, view neither panics nor lets an
// instance through unchecked: every entry is an endpoint or skipped, endpoint IDs are
// unique and sorted, and each address dials a port in 1-65535.
func FuzzView(f *testing.F) {
	f.Add([]byte(`[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"v1","Address":"","Port":7071,"Meta":{"context_length":"4096","kv_free":"1","load":"0","tls":"false"}}}]`))
	f.Add([]byte(`[{"Node":{"Node":"n1"},"Service":{"ID":"a","Address":"::1","Port":1}},{"Node":{"Node":"n2"},"Service":{"ID":"a","Address":"h","Port":2}},{"Node":{"Node":"n3"},"Service":{"ID":"n1/a","Address":"h","Port":3}}]`))
	f.Add([]byte(`[{"Service":{"ID":"x","Address":"h","Port":70000,"Meta":{"load":"-1","vocab_size":"1e9","tls":"maybe"}}},null,{}]`))
	f.Add([]byte(`[{"Node":{"Node":"n"},"Service":{"ID":"a","Address":"h","Port":1}},{"Node":{"Node":"n"},"Service":{"ID":"a","Address":"h","Port":1}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var entries []*api.ServiceEntry
		if json.Unmarshal(data, &entries) != nil {
			return
		}
		for _, tls := range []*bool{nil, new(false), new(true)} {
			eps, bad := view(router.Draft, entries, tls)
			if len(eps)+len(bad) != len(entries) {
				t.Fatalf("view: %d endpoints and %d skipped of %d entries", len(eps), len(bad), len(entries))
			}
			seen := map[string]bool{}
			for i, e := range eps {
				if seen[e.ID] || i > 0 && eps[i-1].ID > e.ID {
					t.Fatalf("view: IDs %q not unique and sorted", idsOf(eps))
				}
				seen[e.ID] = true
				_, p, err := net.SplitHostPort(e.Address)
				if n, perr := strconv.Atoi(p); err != nil || perr != nil || n < 1 || n > 65535 || e.Role != router.Draft {
					t.Fatalf("view: endpoint %+v", e)
				}
			}
		}
	})
}
