package apikey_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/specd-dev/specd/apikey"
	"github.com/specd-dev/specd/quota"
)

func hashOf(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(h[:])
}

// TestParse: the documented syntax parses into keys; every malformed line is an
// ErrSyntax naming its line, and never echoes a secret pasted in place of a hash.
func TestParse(t *testing.T) {
	good := "# specd keys\n\nalice " + hashOf("a") + " rate=12.5 burst=100 streams=4 models=m1,m2\n  bob " + hashOf("b") + "\n"
	s, err := apikey.Parse(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
	k, ok := s.Lookup("a")
	want := apikey.Key{Name: "alice", Hash: sha256.Sum256([]byte("a")), Limits: quota.Limits{Rate: 12.5, Burst: 100, Streams: 4}, Models: []string{"m1", "m2"}}
	if !ok || !reflect.DeepEqual(k, want) {
		t.Errorf("Lookup(a) = %+v, %v, want %+v", k, ok, want)
	}
	if k, ok := s.Lookup("b"); !ok || k.Name != "bob" || k.Models != nil || k.Limits != (quota.Limits{}) {
		t.Errorf("Lookup(b) = %+v, %v, want bob without limits", k, ok)
	}
	for _, secret := range []string{"", "c", "a ", hashOf("a")} {
		if k, ok := s.Lookup(secret); ok {
			t.Errorf("Lookup(%q) = %s, want no key", secret, k.Name)
		}
	}

	h := hashOf("x")
	bad := []struct{ name, file, wantMsg string }{
		{"one field", "alice", "line 1"},
		{"plaintext key", "alice specd_SuperSecretValue", "not sha256:HEX"},
		{"short hash", "alice sha256:abcd", "4 hex digits"},
		{"not hex", "alice sha256:" + strings.Repeat("zz", 32), "hash"},
		{"bad name", "al/ice " + h, "name"},
		{"long name", strings.Repeat("a", 65) + " " + h, "name"},
		{"duplicate name", "a " + h + "\na " + hashOf("y"), "line 2: name \"a\" appears twice"},
		{"duplicate hash", "a " + h + "\nb " + h, "line 2"},
		{"unknown option", "a " + h + " colour=red", "unknown option"},
		{"option twice", "a " + h + " rate=1 rate=2", "twice"},
		{"negative rate", "a " + h + " rate=-1", "rate"},
		{"NaN rate", "a " + h + " rate=NaN", "rate"},
		{"infinite rate", "a " + h + " rate=Inf", "rate"},
		{"burst below 1", "a " + h + " rate=1 burst=0.5", "burst"},
		{"burst without rate", "a " + h + " burst=5", "burst without rate"},
		{"streams not a count", "a " + h + " streams=-3", "streams"},
		{"empty model", "a " + h + " models=m1,,m2", "empty model"},
		{"option without value", "a " + h + " rate=", "NAME=VALUE"},
		{"long line", "a " + h + " models=" + strings.Repeat("m", apikey.MaxLineBytes), "longer than"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := apikey.Parse(strings.NewReader(c.file))
			if !errors.Is(err, apikey.ErrSyntax) || !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("Parse = %v, want ErrSyntax mentioning %q", err, c.wantMsg)
			}
			if err != nil && strings.Contains(err.Error(), "SuperSecret") {
				t.Errorf("error %q echoes the secret", err)
			}
		})
	}
}

// TestParseNeverEchoesAKey: a key pasted into any field of a line — the two lines
// `specd key new` prints joined into one, a key after the hash, a key as an option's
// value — makes an error that names the line but holds no part of the key: parse
// errors go to the router's log.
func TestParseNeverEchoesAKey(t *testing.T) {
	secret, k, err := apikey.New("alice", quota.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	line := k.Line()
	for _, file := range []string{
		secret + " " + line,
		secret + " " + secret,
		line + " " + secret,
		line + " rate=" + secret,
		line + " " + secret + "=1",
		"bob " + hashOf("b") + "\n" + secret + " sha256:" + strings.Repeat("ab", 32) + "\n" + line,
	} {
		_, err := apikey.Parse(strings.NewReader(file))
		if !errors.Is(err, apikey.ErrSyntax) {
			t.Errorf("Parse(a line with the key) = %v, want ErrSyntax", err)
			continue
		}
		random := secret[len(apikey.SecretPrefix):]
		for i := 0; i+8 <= len(random); i++ {
			if strings.Contains(err.Error(), random[i:i+8]) {
				t.Errorf("error %q holds part of the key", err)
				break
			}
		}
	}
}

// TestNew: a new key's secret is found by its own line and by nothing else, and two
// keys differ.
func TestNew(t *testing.T) {
	s1, k1, err := apikey.New("ci-bot", quota.Limits{Rate: 5, Streams: 2}, []string{"specd-target-q8_0"})
	if err != nil {
		t.Fatal(err)
	}
	s2, k2, err := apikey.New("other", quota.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s1 == s2 || !strings.HasPrefix(s1, apikey.SecretPrefix) || len(s1) != len(apikey.SecretPrefix)+43 {
		t.Fatalf("secrets %q and %q: want two different %s… of 256 bits", s1, s2, apikey.SecretPrefix)
	}
	if strings.Contains(k1.Line(), s1) {
		t.Fatalf("line %q holds the secret", k1.Line())
	}
	set, err := apikey.Parse(strings.NewReader(k1.Line() + "\n" + k2.Line() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := set.Lookup(s1); !ok || !reflect.DeepEqual(k, k1) {
		t.Errorf("Lookup(secret 1) = %+v, %v, want %+v", k, ok, k1)
	}
	if k, ok := set.Lookup(s2); !ok || k.Name != "other" {
		t.Errorf("Lookup(secret 2) = %+v, %v, want other", k, ok)
	}
	for _, c := range []struct {
		name   string
		lim    quota.Limits
		models []string
	}{
		{"bad name", quota.Limits{}, nil},
		{"a", quota.Limits{Rate: -1}, nil},
		{"a", quota.Limits{Streams: -2}, nil},
		{"a", quota.Limits{Rate: 1, Burst: 0.5}, nil},
		{"a", quota.Limits{Burst: 3}, nil},
		{"a", quota.Limits{}, []string{"m 1"}},
		{"a", quota.Limits{}, []string{"m,1"}},
		{"a", quota.Limits{}, []string{}},
	} {
		if _, k, err := apikey.New(c.name, c.lim, c.models); err == nil {
			t.Errorf("New(%q, %+v, %q) = %q, want an error", c.name, c.lim, c.models, k.Line())
		}
	}
}

// TestAllows: a key without a model list may use any model; one with a list only
// those, and must name one.
func TestAllows(t *testing.T) {
	open := apikey.Key{Name: "a"}
	only := apikey.Key{Name: "b", Models: []string{"m1"}}
	for _, c := range []struct {
		k     apikey.Key
		model string
		want  bool
	}{{open, "", true}, {open, "m2", true}, {only, "m1", true}, {only, "m2", false}, {only, "", false}} {
		if got := c.k.Allows(c.model); got != c.want {
			t.Errorf("%s.Allows(%q) = %v, want %v", c.k.Name, c.model, got, c.want)
		}
	}
}

// FuzzParse: Parse never panics, and a file it accepts is written back by Line into
// a file that parses to the same keys.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("testdata/keys.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(seed))
	f.Add("a sha256:" + strings.Repeat("0", 64) + " rate=1e9 burst=1e12 streams=2147483647 models=x\n")
	f.Add("a sha256:" + strings.Repeat("0", 64) + " rate=0x1p3\r\n#\n")
	f.Add("\x00 \xff sha256:")
	f.Fuzz(func(t *testing.T, file string) {
		s, err := apikey.Parse(strings.NewReader(file))
		if err != nil {
			if !errors.Is(err, apikey.ErrSyntax) {
				t.Fatalf("Parse error %v does not wrap ErrSyntax", err)
			}
			return
		}
		var b strings.Builder
		var keys []apikey.Key
		for _, line := range strings.Split(file, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[0], "#") {
				continue
			}
			one, err := apikey.Parse(strings.NewReader(line))
			if err != nil || one.Len() != 1 {
				t.Fatalf("line %q of an accepted file alone: %v", line, err)
			}
			k, _ := lookupByLine(t, one, line)
			keys = append(keys, k)
			b.WriteString(k.Line() + "\n")
		}
		again, err := apikey.Parse(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("written back %q: %v", b.String(), err)
		}
		if again.Len() != s.Len() || len(keys) != s.Len() {
			t.Fatalf("written back: %d keys, parsed %d, collected %d", again.Len(), s.Len(), len(keys))
		}
		reparsed, err := apikey.Parse(strings.NewReader(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if got, ok := apikey.Lookup(reparsed, k.Hash); !ok || !reflect.DeepEqual(got, k) {
				t.Fatalf("key %q written back as %+v, want %+v", k.Name, got, k)
			}
		}
	})
}

// lookupByLine returns the one key of a one-line set.
func lookupByLine(t *testing.T, s *apikey.Set, line string) (apikey.Key, bool) {
	t.Helper()
	f := strings.Fields(line)
	var h [sha256.Size]byte
	if _, err := hex.Decode(h[:], []byte(strings.TrimPrefix(f[1], "sha256:"))); err != nil {
		t.Fatalf("accepted line %q: %v", line, err)
	}
	k, ok := apikey.Lookup(s, h)
	if !ok {
		t.Fatalf("accepted line %q: its hash is not in the set", line)
	}
	return k, ok
}

// BenchmarkLookup: the cost a request pays to find its key among n, every key
// compared in constant time.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 1000, apikey.MaxKeys} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var file strings.Builder
			var secret string
			for i := range n {
				s, k, err := apikey.New("k"+strconv.Itoa(i), quota.Limits{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				secret = s
				file.WriteString(k.Line() + "\n")
			}
			set, err := apikey.Parse(strings.NewReader(file.String()))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, ok := set.Lookup(secret); !ok {
					b.Fatal("not found")
				}
			}
		})
	}
}
