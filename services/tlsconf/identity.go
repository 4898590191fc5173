package tlsconf

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/specd-dev/specd/services"
)

// ErrIdentity is returned (wrapped) by Identities.Match for a certificate whose
// identity is not in the list.
var ErrIdentity = errors.New("peer identity not allowed")

// Identities is a list of accepted peer identities. The zero value accepts nobody;
// see ParseIdentities for the spelling of an entry.
type Identities struct {
	any     bool
	ids     []spiffeid.ID
	domains []spiffeid.TrustDomain
	names   []string // DNS names or IP addresses, matched like a hostname
	spelled []string // as given, for messages
}

// AnyIdentity accepts any certificate that chains to the trusted CA.
var AnyIdentity = Identities{any: true, spelled: []string{"*"}}

// ParseIdentities parses a list of accepted identities. Each entry is one of:
//
//   - any certificate that chains to the trusted CA
//     spiffe://domain/path        exactly this SPIFFE ID (the certificate's URI SAN)
//     spiffe://domain             any SPIFFE ID in this trust domain
//     name.example.org, 10.0.0.7  a DNS name or IP address the certificate is valid for
//     (its DNS or IP SANs, wildcards included), as a TLS
//     client checks a server's hostname
//
// Empty entries are skipped. An entry that is none of these is an error naming it.
func ParseIdentities(list []string) (Identities, error) {
	var p Identities
	for _, e := range list {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
			continue
		case e == "*":
			p.any = true
		case strings.HasPrefix(strings.ToLower(e), "spiffe:"):
			u, err := url.Parse(e)
			if err != nil {
				return Identities{}, fmt.Errorf("identity %q: %w", e, err)
			}
			if u.Path == "" {
				td, err := spiffeid.TrustDomainFromURI(u)
				if err != nil {
					return Identities{}, fmt.Errorf("identity %q: %w", e, err)
				}
				p.domains = append(p.domains, td)
			} else {
				id, err := spiffeid.FromURI(u)
				if err != nil {
					return Identities{}, fmt.Errorf("identity %q: %w", e, err)
				}
				p.ids = append(p.ids, id)
			}
		default:
			if err := checkName(e); err != nil {
				return Identities{}, fmt.Errorf("identity %q: %w", e, err)
			}
			p.names = append(p.names, strings.ToLower(e))
		}
		p.spelled = append(p.spelled, e)
	}
	return p, nil
}

// checkName accepts a DNS name (letters, digits, '-', '.', and a leading "*." for a
// wildcard) or an IP address; ParseIdentities refuses anything else, so a typo such
// as a URL is not silently a name no certificate has.
func checkName(s string) error {
	if len(s) > 253 {
		return errors.New("longer than a DNS name can be")
	}
	if strings.Trim(s, "0123456789abcdefABCDEF:.") == "" && strings.Contains(s, ":") {
		return nil // an IPv6 address; x509 checks it against the IP SANs
	}
	for i, label := range strings.Split(strings.TrimPrefix(s, "*."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %d is empty or longer than 63 bytes", i+1)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a DNS name, IP address, spiffe:// ID or *", s)
			}
		}
	}
	return nil
}

// Empty reports whether the list accepts nobody.
func (p Identities) Empty() bool {
	return !p.any && len(p.ids) == 0 && len(p.domains) == 0 && len(p.names) == 0
}

// Union returns the identities accepted by p or q.
func (p Identities) Union(q Identities) Identities {
	return Identities{
		any:     p.any || q.any,
		ids:     slices.Concat(p.ids, q.ids),
		domains: slices.Concat(p.domains, q.domains),
		names:   slices.Concat(p.names, q.names),
		spelled: slices.Concat(p.spelled, q.spelled),
	}
}

func (p Identities) String() string {
	if p.Empty() {
		return "(nobody)"
	}
	return strings.Join(p.spelled, ",")
}

// Match checks a verified leaf certificate against the list: nil if it is accepted,
// else an error wrapping ErrIdentity that names the certificate's identity.
func (p Identities) Match(leaf *x509.Certificate) error {
	if p.any {
		return nil
	}
	if id, err := x509svid.IDFromCert(leaf); err == nil {
		if slices.Contains(p.ids, id) || slices.Contains(p.domains, id.TrustDomain()) {
			return nil
		}
	}
	for _, n := range p.names {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not one of %s", ErrIdentity, Name(leaf), p)
}

// Name is a certificate's identity for messages and logs (services.CertName), or
// "(no identity)".
func Name(leaf *x509.Certificate) string {
	return cmp.Or(services.CertName(leaf), "(no identity)")
}
