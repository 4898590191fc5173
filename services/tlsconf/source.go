package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultReload is how often a Source looks at its files again, at most.
const DefaultReload = 5 * time.Second

// ErrConfig is returned (wrapped) by NewSource for files that are missing, unreadable
// or do not hold what they should.
var ErrConfig = errors.New("tls configuration")

// Files names one service's PEM files. Cert and Key go together (both or neither);
// CA holds the certificates trusted to sign peers' certificates.
type Files struct {
	Cert, Key, CA string
}

// Source holds a service's certificate, key and trusted CAs, and reloads them when
// the files' contents change: on a handshake, at most once per reload interval, it
// reads the files again (a few KiB) and, if any changed, parses the new material. New
// connections then use it; open ones keep theirs. A change that does not parse — a
// certificate rewritten before its key, say — is logged and the old material kept
// until the next look. Safe for concurrent use.
type Source struct {
	files          Files
	every          time.Duration
	log            *slog.Logger
	now            func() time.Time
	static         bool // held in memory (CA.Source): never reloaded
	hasCA, hasCert bool

	mu     sync.Mutex
	cur    *material
	looked time.Time // last read of the files
}

// material is one loaded generation of the files.
type material struct {
	raw   [3][]byte        // cert, key, CA as read
	cert  *tls.Certificate // nil: none (a client without a certificate)
	roots *x509.CertPool   // nil: no CA given
}

// NewSource loads files, looking at them again at most every reload (0:
// DefaultReload; negative: on every handshake). It fails with ErrConfig if they
// cannot be loaded now.
func NewSource(files Files, reload time.Duration, log *slog.Logger) (*Source, error) {
	if (files.Cert == "") != (files.Key == "") {
		return nil, fmt.Errorf("%w: a certificate and its key go together (cert %q, key %q)", ErrConfig, files.Cert, files.Key)
	}
	if files.Cert == "" && files.CA == "" {
		return nil, fmt.Errorf("%w: neither a certificate nor a CA", ErrConfig)
	}
	if reload == 0 {
		reload = DefaultReload
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: files, every: reload, log: log, now: time.Now, hasCA: files.CA != "", hasCert: files.Cert != ""}
	m, err := s.load(nil)
	if err != nil {
		return nil, err
	}
	s.cur, s.looked = m, s.now()
	return s, nil
}

// HasCA reports whether peers are verified against a CA of the Source's own (else
// the system's roots, and a server does not ask clients for certificates).
func (s *Source) HasCA() bool { return s.hasCA }

// current returns the material, reloading it first if the files changed since the
// last look and the reload interval has passed.
func (s *Source) current() *material {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.static || now.Sub(s.looked) < s.every {
		return s.cur
	}
	s.looked = now
	m, err := s.load(s.cur)
	switch {
	case err != nil:
		s.log.Warn("tls: keeping the loaded certificates: the files changed but do not load", "err", err)
	case m != s.cur:
		s.cur = m
		s.log.Info("tls: reloaded certificates", "cert", s.files.Cert, "ca", s.files.CA, "subject", m.subject(), "not_after", m.notAfter())
	}
	return s.cur
}

// load reads the files; if they are what old was loaded from it returns old, else it
// parses them.
func (s *Source) load(old *material) (*material, error) {
	var raw [3][]byte
	for i, name := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		raw[i] = b
	}
	if old != nil && bytes.Equal(old.raw[0], raw[0]) && bytes.Equal(old.raw[1], raw[1]) && bytes.Equal(old.raw[2], raw[2]) {
		return old, nil
	}
	return s.parse(raw)
}

// parse makes material of a certificate, key and CA (PEM; empty when the Source has none).
func (s *Source) parse(raw [3][]byte) (*material, error) {
	m := &material{raw: raw}
	if s.hasCert {
		c, err := tls.X509KeyPair(raw[0], raw[1])
		if err != nil {
			return nil, fmt.Errorf("%w: %s and %s: %w", ErrConfig, s.files.Cert, s.files.Key, err)
		}
		m.cert = &c
		if now := s.now(); s.log != nil && (now.After(c.Leaf.NotAfter) || now.Before(c.Leaf.NotBefore)) {
			s.log.Warn("tls: own certificate is not valid now; peers will refuse it", "cert", s.files.Cert, "not_before", c.Leaf.NotBefore, "not_after", c.Leaf.NotAfter)
		}
	}
	if s.hasCA {
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM(raw[2]) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrConfig, s.files.CA)
		}
	}
	return m, nil
}

func (m *material) subject() string {
	if m.cert == nil {
		return ""
	}
	return Name(m.cert.Leaf)
}

func (m *material) notAfter() time.Time {
	if m.cert == nil {
		return time.Time{}
	}
	return m.cert.Leaf.NotAfter
}

// verify checks a peer's certificate chain against the material's roots (the
// system's when it has none) for the given use, returning the leaf.
func (m *material) verify(certs []*x509.Certificate, usage x509.ExtKeyUsage, dnsName string) (*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("the peer sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: m.roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: dnsName}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return nil, err
	}
	return certs[0], nil
}
