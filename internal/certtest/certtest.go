// Package certtest is test support: a throwaway certificate authority (tlsconf.CA)
// that issues certificates with SPIFFE IDs, DNS names or IP addresses, valid (or not)
// when a test says, and writes them as PEM files. It is imported only by tests.
package certtest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/specd-dev/specd/services/tlsconf"
)

// CA is a certificate authority for one test.
type CA struct{ *tlsconf.CA }

// NewCA returns a new CA named name, valid from an hour ago for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := tlsconf.NewCA(name, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &CA{ca}
}

// Leaf describes a certificate to issue. The zero value is valid from an hour ago for
// a day, for both server and client authentication, with no identity.
type Leaf struct {
	SPIFFE    string   // a SPIFFE ID for the URI SAN; "" for none
	DNS       []string // DNS SANs
	IPs       []string // IP SANs
	NotBefore time.Time
	NotAfter  time.Time
}

// Issue returns a certificate and its private key, PEM-encoded, signed by ca.
func (ca *CA) Issue(t testing.TB, l Leaf) (certPEM, keyPEM []byte) {
	t.Helper()
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-time.Hour)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = time.Now().Add(24 * time.Hour)
	}
	leaf := tlsconf.Leaf{SPIFFE: l.SPIFFE, DNS: l.DNS, NotBefore: l.NotBefore, NotAfter: l.NotAfter}
	for _, ip := range l.IPs {
		leaf.IPs = append(leaf.IPs, net.ParseIP(ip))
	}
	c, k, err := ca.CA.Issue(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// Files are the paths of one service's PEM files.
type Files struct{ Cert, Key, CA string }

// Write issues l and writes it, its key and ca's certificate as name.crt, name.key
// and name-ca.crt in dir (replacing earlier files of that name, atomically each).
func (ca *CA) Write(t testing.TB, dir, name string, l Leaf) Files {
	t.Helper()
	c, k := ca.Issue(t, l)
	f := Files{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: filepath.Join(dir, name+"-ca.crt")}
	WriteFile(t, f.Cert, c)
	WriteFile(t, f.Key, k)
	WriteFile(t, f.CA, ca.PEM)
	return f
}

// WriteFile replaces path with b atomically (a rename), as a Kubernetes Secret
// volume or cert-manager does.
func WriteFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
