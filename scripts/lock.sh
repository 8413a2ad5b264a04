#!/usr/bin/env bash
# Regenerate the hashed lock files from pyproject.toml; run it after changing a dependency there
# (then scripts/bootstrap.sh installs the new lock):
#   scripts/lock.sh             keeps every other package at its locked version
#   scripts/lock.sh --upgrade   moves the unpinned transitive packages to their newest releases
# requirements/dev.lock: every extra and dependency group, and the build backend (bootstrap.sh:
# the .venv of the tests). requirements/gateway.lock: the package's own dependencies and the
# build backend (install-pi.sh), at the versions of dev.lock. Each lists every transitive
# package at one version, with the sha256 of each file PyPI publishes for that version (all
# platforms and Pythons from requires-python on), so one lock installs on an x86-64 CI machine
# and on an aarch64 Raspberry Pi; pip's --require-hashes then refuses anything else.
# docs/security.md, "Dependencies". Needs PyPI; uv (the resolver) is itself installed from a
# hashed lock into a venv under ~/.cache (or $PERIMON_LOCK_TOOLS), never into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
upgrade=()
case "${1:-}" in
    "") ;;
    --upgrade) upgrade=(--upgrade) ;;
    *) echo "lock: unknown option $1 (only --upgrade)" >&2; exit 2 ;;
esac

# The resolver, at one version; its wheels' hashes in requirements/lock-tool.lock.
tools="${PERIMON_LOCK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/perimon-lock}"
want="$(sha256sum < requirements/lock-tool.lock | cut -d' ' -f1)"
if [ "$(cat "$tools/.installed" 2>/dev/null)" != "$want" ]; then
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
        -r requirements/lock-tool.lock
    echo "$want" > "$tools/.installed"
fi
uv="$tools/bin/uv"

# What pyproject.toml asks for besides the package's own dependencies: the build backend
# ([build-system] requires) and the dependency groups, if any.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$work/build.in" > "$work/groups" <<'EOF'
import sys, tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)
with open(sys.argv[1], "w") as out:
    out.writelines(f"{r}\n" for r in project["build-system"]["requires"])
print(" ".join(f"--group={g}" for g in project.get("dependency-groups", {})))
EOF
read -r -a groups < "$work/groups" || true

# --python-version: the oldest Python of requires-python (Debian 12's 3.11); --universal makes
# the lock hold, under markers, what newer ones and other platforms need.
compile=("$uv" pip compile -q --universal --generate-hashes --python-version 3.11
         --custom-compile-command scripts/lock.sh "${upgrade[@]}")
# (the build requirements come on standard input, "-": no temporary path in the locks)
"${compile[@]}" --all-extras "${groups[@]}" pyproject.toml - -o requirements/dev.lock \
    < "$work/build.in"
"${compile[@]}" -c requirements/dev.lock pyproject.toml - -o requirements/gateway.lock \
    < "$work/build.in"
echo "lock: wrote requirements/dev.lock ($(grep -c '^[a-z]' requirements/dev.lock) packages)" \
    "and requirements/gateway.lock ($(grep -c '^[a-z]' requirements/gateway.lock))"
