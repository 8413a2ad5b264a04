#!/usr/bin/env bash
# Install the perimon gateway on Raspberry Pi OS / Debian 12 (bookworm) as a systemd service,
# from this checkout (or a wheel built from it):
#   sudo ./scripts/install-pi.sh
# The package and its dependencies (from PyPI: those of requirements/gateway.lock, each file
# checked against its sha256) go to a venv in /opt/perimon/venv, the configuration to
# /etc/perimon/perimon.toml (written once, kept afterwards), state (outbox, enrolment list,
# nurse accounts) to /var/lib/perimon, owned by the service user perimon; logs go to the
# journal. Safe to run again: it upgrades the package and the unit, keeps the
# configuration and the data. docs/home.md, "Installing on a Raspberry Pi". The nurse view is
# served over HTTPS on port 8443 with a self-signed certificate made here (kept in DATA/web);
# its SHA-256 fingerprint is printed at the end, for the nurse to compare with her browser's.
# Options: --from WHEEL|DIR (what to install; default: this checkout), --prefix DIR,
#   --config FILE, --data DIR, --no-start (install and enable, do not start now).
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/perimon config=/etc/perimon/perimon.toml data=/var/lib/perimon start=1 from=""
while [ $# -gt 0 ]; do
    case "$1" in
        --from) from="$2"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --data) data="$2"; shift 2 ;;
        --no-start) start=0; shift ;;
        *) echo "install-pi: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "install-pi: run as root (sudo $0)" >&2; exit 1; }
say() { echo "install-pi: $*"; }

# Debian packages: only what is missing (a second run needs no network for these).
missing=()
for p in python3-venv bluez openssl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The service user: no login, no home of its own beyond the data directory.
if ! id -u perimon >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$data" --no-create-home \
        --shell /usr/sbin/nologin perimon
    say "created the service user perimon"
fi
for g in bluetooth dialout; do  # BlueZ's D-Bus policy; USB serial devices
    if getent group "$g" >/dev/null && ! id -nG perimon | tr ' ' '\n' | grep -qx "$g"; then
        usermod -aG "$g" perimon
    fi
done

# The code: a venv with the dependencies of requirements/gateway.lock, each file checked
# against its sha256 (docs/security.md, "Dependencies"), then the package with none of its own
# fetched. From a checkout, pip builds the wheel in a copy, so the checkout gets no root-owned
# build files, with the locked setuptools (no build environment fetched from PyPI).
mkdir -p "$prefix"
[ -x "$prefix/venv/bin/python" ] || python3 -m venv "$prefix/venv"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -z "$from" ]; then
    # what the wheel is built from (setup.py: the code, the contract's schemas, the firmware)
    tar -C "$src" --exclude=__pycache__ -cf - pyproject.toml setup.py README.md gateway dsp \
        simulators hospital devtools firmware docs/schemas | tar -C "$work" -xf -
    from="$work"
fi
pip=("$prefix/venv/bin/python" -m pip -q --disable-pip-version-check)
say "installing the dependencies of requirements/gateway.lock into $prefix/venv (from PyPI)"
"${pip[@]}" install --require-hashes -r "$src/requirements/gateway.lock"
if [ -d "$from" ]; then
    "${pip[@]}" wheel --no-deps --no-build-isolation -w "$work/dist" "$from"
    from="$(ls "$work"/dist/perimon-*.whl)"
fi
say "installing $(basename "$from") into $prefix/venv"
"${pip[@]}" install --force-reinstall --no-deps "$from"  # this build, even at the same version
# the wheel asks for what the lock does not hold (pyproject.toml changed, the lock not)
if ! broken="$("$prefix/venv/bin/python" -m pip check 2>&1)"; then
    echo "install-pi: $broken" >&2
    echo "install-pi: requirements/gateway.lock does not match the package: scripts/lock.sh" >&2
    exit 1
fi
mkdir -p "$prefix/docs"
cp "$src/README.md" "$prefix/"
cp "$src"/docs/*.md "$src/docs/perimon.example.toml" "$prefix/docs/"

# Configuration: written once from the documented example; kept on later runs. The nurse
# view's certificate: made once, kept (a new one would make every browser warn again).
mkdir -p "$(dirname "$config")" "$data"
fingerprint="$(sh "$src/scripts/make-web-cert.sh" "$data/web")"
if [ ! -f "$config" ]; then
    sh "$src/scripts/first-config.sh" "$src/docs/perimon.example.toml" "$data" "$data/web" \
        > "$config.new"
    mv "$config.new" "$config"
    say "wrote $config: set [gateway] id and [mqtt] before starting"
fi
chown root:perimon "$config"
chmod 640 "$config"
chown -R perimon:perimon "$data"
chmod 750 "$data"

# The service: installed, enabled at boot, (re)started when systemd runs here.
unit=/etc/systemd/system/perimon-gateway.service
sed -e "s|@PREFIX@|$prefix|g" -e "s|@CONFIG@|$config|g" -e "s|@DATA@|$data|g" \
    "$src/deploy/systemd/perimon-gateway.service.in" > "$unit.new"
mv "$unit.new" "$unit"
chmod 644 "$unit"
systemctl enable perimon-gateway.service 2>&1 | grep -v "^Created symlink" || true
[ -L /etc/systemd/system/multi-user.target.wants/perimon-gateway.service ] \
    || { echo "install-pi: enabling the service failed" >&2; exit 1; }
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$start" -eq 1 ]; then
        systemctl restart perimon-gateway.service
        say "started; follow it with: journalctl -fu perimon-gateway"
    fi
else
    say "systemd is not running here: the service starts at the next boot"
fi
# The service user reads the config the way the service will; a broken one is said here.
if ! check=$(runuser -u perimon -- "$prefix/venv/bin/perimon" gateway --check-config -c "$config" 2>&1); then
    echo "install-pi: $check" >&2
    exit 1
fi
say "$check"
say "done: $("$prefix/venv/bin/perimon" --version) in $prefix/venv"
if grep -q "^cert_file = \"$data/web/nurse-view.crt\"" "$config"; then
    say "the nurse view: https://$(hostname).local:8443/ (or https://perimon.local:8443/)"
    say "its certificate's SHA-256 fingerprint (the browser shows it the first time):"
    say "  $fingerprint"
else
    say "the nurse view uses the certificate $config names, not $data/web/nurse-view.crt"
fi
