// Package apikey is specd's API key file: named keys stored only as SHA-256 hashes,
// each with optional quotas and a list of models it may use, and the lookup of a
// presented secret in constant time.
//
// The file is text, one key per line; blank lines and lines starting with # are
// ignored:
//
//	NAME sha256:HEX [rate=TOKENS_PER_SEC] [burst=TOKENS] [streams=N] [models=A,B,…]
//
// NAME is 1 to 64 of A-Z a-z 0-9 . _ - and names the key in logs, traces and metrics
// (never the secret; a name that looks like a secret New made is refused). HEX is the 64 hex digits of SHA-256 over the secret's bytes.
// rate is generated tokens per second (0 or absent: no rate limit), burst the bucket's
// size (default: one second of rate), streams the most requests running at once (0
// or absent: no limit), models the only models the key may name (absent: any).
//
// It knows nothing of gRPC or files on disk: Parse reads any io.Reader, and the
// services layer watches the file.
package apikey

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/specd-dev/specd/quota"
)

// Key is one entry of a key file.
type Key struct {
	Name   string
	Hash   [sha256.Size]byte // SHA-256 of the secret
	Limits quota.Limits      // zero fields do not limit
	// Models are the models the key may name; nil: any model (the same as naming none).
	Models []string
}

// Allows reports whether the key may use model ("" is the router's choice of model;
// a key with a model list must name one of its models).
func (k *Key) Allows(model string) bool {
	return k.Models == nil || slices.Contains(k.Models, model)
}

// Set is a parsed key file. A nil or empty Set matches no secret.
type Set struct {
	keys []Key
}

// Len is the number of keys.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// Lookup returns the key whose hash is SHA-256 of secret. It compares against every
// key in constant time, so its duration does not tell how much of a hash matched or
// which key it was.
func (s *Set) Lookup(secret string) (Key, bool) {
	if s == nil {
		return Key{}, false
	}
	h := sha256.Sum256([]byte(secret))
	found := -1
	for i := range s.keys {
		eq := subtle.ConstantTimeCompare(h[:], s.keys[i].Hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return Key{}, false
	}
	return s.keys[found], true
}

// Limits on a key file, so that a file cannot make the router allocate without bound.
const (
	MaxLineBytes = 4096
	MaxKeys      = 10000
	maxNameBytes = 64
)

// ErrSyntax is the error of a key file Parse refuses; the message names the line.
var ErrSyntax = errors.New("api key file")

// Parse reads a key file. A malformed line, a duplicate name or hash, a plaintext
// secret in place of a hash or of a name, more than MaxKeys keys or a line over
// MaxLineBytes is an error wrapping ErrSyntax that names the line; nothing of a
// secret is echoed, wherever on the line it was pasted.
func Parse(r io.Reader) (*Set, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), MaxLineBytes)
	s := &Set{}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrSyntax, n, err)
		}
		if names[k.Name] {
			return nil, fmt.Errorf("%w: line %d: name %q appears twice", ErrSyntax, n, k.Name)
		}
		if hashes[k.Hash] {
			return nil, fmt.Errorf("%w: line %d: key %q has the hash of an earlier key", ErrSyntax, n, k.Name)
		}
		if len(s.keys) == MaxKeys {
			return nil, fmt.Errorf("%w: line %d: more than %d keys", ErrSyntax, n, MaxKeys)
		}
		names[k.Name], hashes[k.Hash] = true, true
		s.keys = append(s.keys, k)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrSyntax, n+1, MaxLineBytes)
		}
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	return s, nil
}

func parseLine(line string) (Key, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return Key{}, errors.New("want NAME sha256:HEX [rate=N] [burst=N] [streams=N] [models=A,B]")
	}
	k := Key{Name: f[0]}
	if looksLikeSecret(k.Name) {
		// A name goes to logs, traces and metrics; never echo this one.
		return Key{}, fmt.Errorf("the name looks like a key (%s…): the file holds names and hashes, never keys", SecretPrefix)
	}
	if !validName(k.Name) {
		return Key{}, fmt.Errorf("name %q: want 1 to %d of A-Z a-z 0-9 . _ -", trunc(k.Name), maxNameBytes)
	}
	hexHash, ok := strings.CutPrefix(f[1], "sha256:")
	if !ok {
		// Never echo the field: it may be a secret pasted by mistake.
		return Key{}, fmt.Errorf("key %q: second field is not sha256:HEX (store the hash that `specd key new` prints, never the key)", k.Name)
	}
	if len(hexHash) != 2*sha256.Size {
		return Key{}, fmt.Errorf("key %q: the hash has %d hex digits, want %d", k.Name, len(hexHash), 2*sha256.Size)
	}
	if _, err := hex.Decode(k.Hash[:], []byte(hexHash)); err != nil {
		return Key{}, fmt.Errorf("key %q: hash: %w", k.Name, err)
	}
	seen := map[string]bool{}
	for _, opt := range f[2:] {
		name, val, ok := strings.Cut(opt, "=")
		if !ok || val == "" {
			return Key{}, fmt.Errorf("key %q: option %q: want NAME=VALUE", k.Name, trunc(opt))
		}
		if seen[name] {
			return Key{}, fmt.Errorf("key %q: option %s given twice", k.Name, name)
		}
		seen[name] = true
		var err error
		switch name {
		case "rate":
			k.Limits.Rate, err = parseAmount(val, 1e9)
		case "burst":
			k.Limits.Burst, err = parseAmount(val, 1e12)
			if err == nil && k.Limits.Burst < 1 {
				err = errors.New("want at least 1 token")
			}
		case "streams":
			var v uint64
			v, err = strconv.ParseUint(val, 10, 31)
			k.Limits.Streams = int(v)
		case "models":
			for _, m := range strings.Split(val, ",") {
				if m == "" {
					err = errors.New("an empty model name")
					break
				}
				k.Models = append(k.Models, m)
			}
		default:
			return Key{}, fmt.Errorf("key %q: unknown option %q (want rate, burst, streams or models)", k.Name, trunc(name))
		}
		if err != nil {
			return Key{}, fmt.Errorf("key %q: %s=%q: %w", k.Name, name, trunc(val), err)
		}
	}
	if k.Limits.Burst > 0 && k.Limits.Rate == 0 {
		return Key{}, fmt.Errorf("key %q: burst without rate", k.Name)
	}
	return k, nil
}

// parseAmount parses a finite number in [0, most].
func parseAmount(s string, most float64) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, errors.New("not a number")
	}
	if math.IsNaN(v) || v < 0 || v > most {
		return 0, fmt.Errorf("want 0 to %g", most)
	}
	return v, nil
}

func validName(s string) bool {
	if s == "" || len(s) > maxNameBytes {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// trunc shortens s for an error message, and hides it if it holds a secret New made
// (pasted into the wrong field).
func trunc(s string) string {
	if looksLikeSecret(s) {
		return "(" + SecretPrefix + "…: a key, not shown)"
	}
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// secretChars is the length of the encoded random part of a secret New makes.
var secretChars = base64.RawURLEncoding.EncodedLen(32)

// looksLikeSecret reports whether s holds what New makes: SecretPrefix and at least
// secretChars characters of unpadded URL-safe base64.
func looksLikeSecret(s string) bool {
	for {
		i := strings.Index(s, SecretPrefix)
		if i < 0 {
			return false
		}
		s = s[i+len(SecretPrefix):]
		n := 0
		for n < len(s) && (s[n] >= 'a' && s[n] <= 'z' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= '0' && s[n] <= '9' || s[n] == '-' || s[n] == '_') {
			n++
		}
		if n >= secretChars {
			return true
		}
	}
}

// SecretPrefix starts every secret New makes, so that a leaked one is easy to spot
// and to search for.
const SecretPrefix = "specd_"

// New makes a key called name: a fresh secret of 256 random bits (to give to the
// client, once) and the key, whose Line goes in the key file.
func New(name string, lim quota.Limits, models []string) (secret string, k Key, err error) {
	if !validName(name) {
		return "", Key{}, fmt.Errorf("name %q: want 1 to %d of A-Z a-z 0-9 . _ -", trunc(name), maxNameBytes)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Key{}, fmt.Errorf("random key: %w", err)
	}
	secret = SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	k = Key{Name: name, Hash: sha256.Sum256([]byte(secret)), Limits: lim, Models: models}
	// What Line writes must read back as k: limits in range, model names that are
	// fields of their own.
	back, err := parseLine(k.Line())
	if err != nil {
		return "", Key{}, err
	}
	if back.Limits != lim || !slices.Equal(back.Models, models) {
		return "", Key{}, fmt.Errorf("key %q: rate %g, burst %g, streams %d, models %q: want rate and burst ≥ 0 (burst ≥ 1 when set), streams ≥ 0 and model names without spaces or commas",
			name, lim.Rate, lim.Burst, lim.Streams, models)
	}
	return secret, k, nil
}

// Line is k as a line of the key file (without the newline).
func (k *Key) Line() string {
	var b strings.Builder
	b.WriteString(k.Name)
	b.WriteString(" sha256:")
	b.WriteString(hex.EncodeToString(k.Hash[:]))
	if k.Limits.Rate > 0 {
		b.WriteString(" rate=" + strconv.FormatFloat(k.Limits.Rate, 'g', -1, 64))
	}
	if k.Limits.Burst > 0 {
		b.WriteString(" burst=" + strconv.FormatFloat(k.Limits.Burst, 'g', -1, 64))
	}
	if k.Limits.Streams > 0 {
		b.WriteString(" streams=" + strconv.Itoa(k.Limits.Streams))
	}
	if k.Models != nil {
		b.WriteString(" models=" + strings.Join(k.Models, ","))
	}
	return b.String()
}
