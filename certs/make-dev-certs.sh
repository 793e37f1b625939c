#!/usr/bin/env bash
# Regenerate tricorn's localhost DEVELOPMENT certificates. NEVER use these in production:
# the CA's private key is committed to a public repository, so anyone can mint
# certificates that a machine trusting dev-ca.pem would accept.
#
# Writes, next to this script:
#   dev-ca.pem, dev-ca.key             a throwaway certificate authority ("tricorn development CA")
#   localhost.pem, localhost-key.pem   a server certificate signed by it (key: PKCS#8, unencrypted)
#                                      SANs: DNS:localhost, IP:127.0.0.1, IP:::1
# Both are valid for ~10 years. Needs only the openssl CLI (1.1.1 or newer).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
days=3650
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The CA: EC P-256, self-signed, may sign leaf certificates only (pathlen 0).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key"
cat >"$work/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
O = tricorn development (NOT FOR PRODUCTION)
CN = tricorn development CA
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
openssl req -new -x509 -key "$work/ca.key" -sha256 -days "$days" \
    -config "$work/ca.cnf" -out "$work/ca.pem"

# The server certificate for localhost.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/localhost-key.pem"
cat >"$work/leaf.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = tricorn development (NOT FOR PRODUCTION)
CN = localhost
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl req -new -key "$work/localhost-key.pem" -config "$work/leaf.cnf" -out "$work/localhost.csr"
openssl x509 -req -in "$work/localhost.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -sha256 -days "$days" -extfile "$work/leaf.cnf" -extensions v3_leaf \
    -out "$work/localhost.pem"

# genpkey already writes PKCS#8 ("BEGIN PRIVATE KEY"); convert explicitly so the
# format does not depend on the openssl version.
openssl pkcs8 -topk8 -nocrypt -in "$work/ca.key" -out dev-ca.key
openssl pkcs8 -topk8 -nocrypt -in "$work/localhost-key.pem" -out localhost-key.pem
cp "$work/ca.pem" dev-ca.pem
cp "$work/localhost.pem" localhost.pem
chmod 644 dev-ca.pem localhost.pem
chmod 644 dev-ca.key localhost-key.pem  # public anyway; readable by any test user

openssl verify -CAfile dev-ca.pem localhost.pem
echo "wrote $(pwd)/{dev-ca.pem,dev-ca.key,localhost.pem,localhost-key.pem} (development only)"
