"""Coverage-guided fuzzing of one target with atheris, bounded in time.

    .venv/bin/python fuzz/run_atheris.py frame -max_total_time=60 -rss_limit_mb=512 -timeout=5

Targets (fuzz/targets.py): frame, control, config, auth, pairing, pairing_replies, slip,
downlink, label, wav, csv, and every (all of them, its first byte choosing one). libFuzzer's
-timeout (seconds per input) catches hangs and -rss_limit_mb unbounded memory; a crash leaves
the input in crash-*. tests/test_fuzz_atheris.py runs `every` for a few seconds in the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# coverage of perimon's own code only: instrumenting numpy and scipy would take longer than
# a short run fuzzes
with atheris.instrument_imports(include=["fuzz", "gateway", "dsp"]):
    from fuzz.targets import TARGETS, load_all

    load_all()  # what the targets import when first called: instrumented too


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: run_atheris.py {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
