package deploy_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/specd-dev/specd/services/tlsconf"
)

// makeCertsScript makes the CA and the certificates the manifests mount.
const makeCertsScript = "tls/make-certs.sh"

// makeCerts runs tls/make-certs.sh into a new directory and returns it.
func makeCerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	runMakeCerts(t, dir)
	return dir
}

func runMakeCerts(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not installed: .ci/run installs it (apt-get install openssl)")
	}
	out, err := exec.Command("bash", makeCertsScript, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", makeCertsScript, dir, err, out)
	}
}

// roleFiles are the TLS files make-certs.sh wrote for a role (or "client").
func roleFiles(dir, role string) tlsconf.Files {
	return tlsconf.Files{Cert: filepath.Join(dir, role, "tls.crt"), Key: filepath.Join(dir, role, "tls.key"), CA: filepath.Join(dir, role, "ca.crt")}
}

// tlsDial returns the dial option of a client holding as's certificate that expects
// the server to be role: plaintext when certs is "".
func tlsDial(t *testing.T, certs, as, role string) grpc.DialOption {
	t.Helper()
	if certs == "" {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	src, err := tlsconf.NewSource(roleFiles(certs, as), 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want, err := tlsconf.ParseIdentities([]string{"spiffe://specd.internal/" + role})
	if err != nil {
		t.Fatal(err)
	}
	return grpc.WithTransportCredentials(src.ClientCredentials(want))
}

// TestMakeCerts: the script's certificates load as specd loads them, carry each role's
// default SPIFFE ID and Service names, serve as both server and client certificates,
// and chain to the CA; a second run renews them under the same CA.
func TestMakeCerts(t *testing.T) {
	dir := makeCerts(t)
	ca := readFile(t, filepath.Join(dir, "ca.crt"))
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatal("ca.crt holds no certificate")
	}
	leaves := map[string]*x509.Certificate{}
	for _, role := range []string{"router", "verifier", "draft", "client"} {
		f := roleFiles(dir, role)
		if _, err := tlsconf.NewSource(f, 0, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if !bytes.Equal(readFile(t, f.CA), ca) {
			t.Errorf("%s/ca.crt is not the CA", role)
		}
		if st, err := os.Stat(f.Key); err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: key mode %v, %v: want readable by its owner only", role, st.Mode(), err)
		}
		leaf := parseCert(t, readFile(t, f.Cert))
		leaves[role] = leaf
		if got := tlsconf.Name(leaf); got != "spiffe://specd.internal/"+role {
			t.Errorf("%s: identity %s, want spiffe://specd.internal/%s", role, got, role)
		}
		if !slices.Contains(leaf.DNSNames, "specd-"+role+".specd.svc") {
			t.Errorf("%s: DNS names %v, want specd-%s.specd.svc", role, leaf.DNSNames, role)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s: does not verify for %v: %v", role, usage, err)
			}
		}
	}
	runMakeCerts(t, dir)
	if !bytes.Equal(readFile(t, filepath.Join(dir, "ca.crt")), ca) {
		t.Error("a second run replaced the CA")
	}
	if renewed := parseCert(t, readFile(t, roleFiles(dir, "verifier").Cert)); renewed.SerialNumber.Cmp(leaves["verifier"].SerialNumber) == 0 {
		t.Error("a second run did not renew the verifier's certificate")
	}
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
