#!/bin/sh
# Make a throw-away CA, a server certificate for localhost/127.0.0.1 and one client certificate
# per name (its common name is the MQTT username), for tests and trials only:
#   make-test-certs.sh OUT_DIR gw-a gw-b hospital-ingest
# Production certificates come from the hospital's CA; private keys are never committed.
set -eu
out=$1
shift
mkdir -p "$out"
cd "$out"
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=perimon test CA" -out ca.crt

key server.key
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days 2 -sha256 -extfile server.ext -out server.crt 2>/dev/null

for name in "$@"; do
    key "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days 2 -sha256 -extfile client.ext -out "$name.crt" 2>/dev/null
done
rm -f ./*.csr ./*.ext ca.srl
chmod 644 ./*.crt
