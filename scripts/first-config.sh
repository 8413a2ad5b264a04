#!/bin/sh
# The gateway's first configuration, from the documented example (docs/perimon.example.toml):
# data in DATA, the BLE radio, and the nurse view on for the home or ward network over HTTPS
# (port 8443, the certificate scripts/make-web-cert.sh made in CERT_DIR). scripts/install-pi.sh
# writes it once; the example's per-device examples are left out.
#   first-config.sh EXAMPLE DATA CERT_DIR > perimon.toml
set -eu
example="$1" data="$2" certs="$3"
sed -e "s|^data_dir = .*|data_dir = \"$data\"|" \
    -e 's|^transport = "sim" |transport = "ble"  |' \
    -e '/^\[web\]/,/^$/s|^enabled = false|enabled = true |' \
    -e '/^\[web\]/,/^$/s|^listen = "127.0.0.1:8080" |listen = "0.0.0.0:8443"   |' \
    -e "/^\[web\]/,/^\$/s|^cert_file = \"\" *#|cert_file = \"$certs/nurse-view.crt\"  #|" \
    -e "/^\[web\]/,/^\$/s|^key_file = \"\"|key_file = \"$certs/nurse-view.key\"|" \
    -e '/^# Per device, set by/,$d' \
    "$example"
