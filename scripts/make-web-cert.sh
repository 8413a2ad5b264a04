#!/bin/sh
# The nurse view's certificate: self-signed (no public CA names a home or ward gateway), EC
# P-256, ten years, for perimon.local, <hostname>.local, <hostname>, localhost and 127.0.0.1.
# Made once by scripts/install-pi.sh and kept; prints its SHA-256 fingerprint, which the nurse
# compares with the browser's certificate warning the first time (docs/security.md).
#   make-web-cert.sh DIR [HOSTNAME]   -> DIR/nurse-view.crt, DIR/nurse-view.key (0600)
set -eu
dir="$1"
host="${2:-$(hostname)}"
if [ ! -s "$dir/nurse-view.crt" ] || [ ! -s "$dir/nurse-view.key" ]; then
    mkdir -p "$dir"
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj "/CN=perimon.local" \
            -addext "subjectAltName=DNS:perimon.local,DNS:$host.local,DNS:$host,DNS:localhost,IP:127.0.0.1" \
            -keyout "$dir/nurse-view.key" -out "$dir/nurse-view.crt" 2>/dev/null
    )
    chmod 644 "$dir/nurse-view.crt"
fi
openssl x509 -in "$dir/nurse-view.crt" -noout -fingerprint -sha256 | sed 's/^.*=//'
