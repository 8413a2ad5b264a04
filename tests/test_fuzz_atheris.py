"""Every fuzz target (fuzz/targets.py) under atheris, coverage-guided, for a few seconds in one
process (the target `every`, whose first byte chooses one): long enough to catch a target that
no longer runs or an input class that crashes at once, short enough for every run of the
suite. Longer runs, one target each: fuzz/run_atheris.py TARGET -max_total_time=600 (a crash
leaves its input in crash-*)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness.paths import REPO

pytestmark = pytest.mark.system

SECONDS = 15  # all targets together, after the imports (about 3 s)


def test_every_target_runs_clean_under_atheris(tmp_path):
    res = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "run_atheris.py"), "every",
         f"-max_total_time={SECONDS}", "-rss_limit_mb=1024", "-timeout=10",
         f"-artifact_prefix={tmp_path}/"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Done" in res.stderr and not list(tmp_path.glob("crash-*"))
