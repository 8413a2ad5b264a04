#!/usr/bin/env bash
# Set up what perimon needs on a Debian 12 / Raspberry Pi OS (bookworm) machine with python3:
# a .venv with the locked packages (requirements/dev.lock), and (for the tests, with --system)
# the Debian packages the tests use, listed below. Safe to run again: it only installs what is
# missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {  # apt_install PKG... : install missing Debian packages when we can
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else
            echo "perimon: please install: ${missing[*]} (apt-get install ${missing[*]})" >&2
            return 1
        fi
    fi
    echo "perimon: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

if [ "${1:-}" = "--system" ]; then
    # mosquitto: the real broker of the tests; dbus: the private bus of the virtual BlueZ;
    # systemd: systemd-analyze for the service unit; poppler-utils: reports rendered to PNG.
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || apt_install mosquitto
    # postgresql: the hospital ingest's tests and benchmark start a throw-away cluster of their own
    dpkg -s postgresql >/dev/null 2>&1 || apt_install postgresql
    command -v dbus-daemon >/dev/null || apt_install dbus
    command -v systemd-analyze >/dev/null || apt_install systemd
    command -v pdftoppm >/dev/null || apt_install poppler-utils
    # debootstrap: the installer is tested in a clean Debian chroot; zbar-tools: the monitors'
    # pairing labels are read back as a phone camera would.
    command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || apt_install debootstrap
    command -v zstd >/dev/null || apt_install zstd  # the cached chroot is a .tar.zst
    command -v zbarimg >/dev/null || apt_install zbar-tools
    # chromium: the nurse and mother pages are tested in a real headless browser (Playwright
    # drives Debian's build; it never downloads one); fonts-noto-cjk: the Chinese pages.
    command -v chromium >/dev/null || apt_install chromium
    dpkg -s fonts-noto-cjk >/dev/null 2>&1 || apt_install fonts-noto-cjk
fi

if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    apt_install python3-venv
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# The packages: exactly requirements/dev.lock (every extra, the tests' tools, the build backend),
# each file checked against its sha256 (docs/security.md, "Dependencies"); then perimon itself,
# editable, with no dependency of its own fetched and built by the locked setuptools. Done again
# only when pyproject.toml or the lock changed.
stamp=".venv/.perimon-installed"
want="$(cat pyproject.toml requirements/dev.lock | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "perimon: installing Python packages into .venv (requirements/dev.lock)"
    rm -f "$stamp"  # until this install succeeds: a failed one is done again on the next run
    pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
    "${pip[@]}" install --require-hashes -r requirements/dev.lock
    "${pip[@]}" install --no-deps --no-build-isolation -e .
    # a pin changed in pyproject.toml but not in the lock: perimon asks for what is not there
    if ! broken="$(.venv/bin/python -m pip check 2>&1)"; then
        echo "perimon: $broken" >&2
        echo "perimon: the lock does not match pyproject.toml: run scripts/lock.sh" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
