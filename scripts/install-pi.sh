#!/usr/bin/env bash
# Install the perimon gateway on Raspberry Pi OS / Debian 12 (bookworm) as a systemd service:
#   sudo ./scripts/install-pi.sh
# Code and its venv go to /opt/perimon, the configuration to /etc/perimon/perimon.toml (kept if
# present), state (outbox, enrolment) to /var/lib/perimon, logs to the journal.
# Options: --prefix DIR --config FILE --data DIR (for staging), --no-start.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/perimon config=/etc/perimon/perimon.toml data=/var/lib/perimon start=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --data) data="$2"; shift 2 ;;
        --no-start) start=0; shift ;;
        *) echo "install-pi: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "install-pi: run as root (sudo $0)" >&2; exit 1; }

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv bluez >/dev/null
id perimon >/dev/null 2>&1 || useradd --system --home-dir "$data" --shell /usr/sbin/nologin perimon
getent group bluetooth >/dev/null && usermod -aG bluetooth perimon || true
getent group dialout >/dev/null && usermod -aG dialout perimon || true

mkdir -p "$prefix" "$(dirname "$config")" "$data"
cp -r "$src/." "$prefix/" 2>/dev/null || true
rm -rf "$prefix/.venv"
python3 -m venv "$prefix/.venv"
"$prefix/.venv/bin/pip" install -q --disable-pip-version-check "$prefix"
if [ ! -f "$config" ]; then
    sed -e "s|^data_dir = .*|data_dir = \"$data\"|" "$src/docs/perimon.example.toml" \
        | sed -e '/^\[devices\./,$d' > "$config"
    echo "install-pi: wrote $config: set [gateway] id and [mqtt] before starting"
fi
chown -R perimon:perimon "$data"
chmod 640 "$config"; chgrp perimon "$config"

unit=/etc/systemd/system/perimon-gateway.service
sed -e "s|@PREFIX@|$prefix|g" -e "s|@CONFIG@|$config|g" -e "s|@DATA@|$data|g" \
    "$src/deploy/systemd/perimon-gateway.service.in" > "$unit"
systemctl daemon-reload
systemctl enable perimon-gateway.service
if [ "$start" -eq 1 ]; then
    systemctl restart perimon-gateway.service
    echo "install-pi: started; follow it with: journalctl -fu perimon-gateway"
fi
