#!/usr/bin/env bash
# make-certs.sh OUT_DIR [TRUST_DOMAIN] [NAMESPACE]
#
# Makes a private CA and one certificate per specd role, for mTLS between router,
# verifier and draft (and one for a client of the router's public API), with openssl
# alone. Each certificate carries the role's SPIFFE ID as its URI SAN
# (spiffe://TRUST_DOMAIN/ROLE, the identities specd expects by default with
# TRUST_DOMAIN specd.internal) and the role's Kubernetes Service names as DNS SANs,
# and is good for both server and client authentication (every service is both).
#
# OUT_DIR/ca.crt, ca.key       the CA (keep ca.key offline; it signs everything)
# OUT_DIR/ROLE/tls.crt tls.key ca.crt
#                              one directory per role, laid out as cert-manager lays
#                              out a Certificate's Secret, so that each can become
#                              the Secret the manifests mount:
#   kubectl -n specd create secret generic specd-verifier-tls --from-file=OUT_DIR/verifier
#
# Certificates last 90 days; rerun with the same OUT_DIR to renew them with the same CA
# (specd reloads changed files without a restart). Delete OUT_DIR/ca.* for a new CA.
set -euo pipefail
out=${1:?usage: make-certs.sh OUT_DIR [TRUST_DOMAIN] [NAMESPACE]}
td=${2:-specd.internal}
ns=${3:-specd}
days=90
mkdir -p "$out"
umask 077
if [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=specd CA ($td)" -keyout "$out/ca.key" -out "$out/ca.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
fi
for role in router verifier draft client; do
  dir="$out/$role"
  mkdir -p "$dir"
  svc="specd-$role"
  cat > "$dir/ext.cnf" <<CNF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = URI:spiffe://$td/$role, DNS:$svc, DNS:$svc.$ns, DNS:$svc.$ns.svc, DNS:$svc.$ns.svc.cluster.local
CNF
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$svc" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  openssl x509 -req -in "$dir/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -extfile "$dir/ext.cnf" -out "$dir/tls.crt" 2>/dev/null
  cp "$out/ca.crt" "$dir/ca.crt"
  rm -f "$dir/tls.csr" "$dir/ext.cnf"
done
chmod 0644 "$out"/*/tls.crt "$out"/*/ca.crt "$out/ca.crt" # keys stay 0600
echo "CA and certificates for router, verifier, draft and client written to $out (trust domain $td)"
