"""Where things are."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"  # screenshots and reports a person may want to look at
DOCS = REPO / "docs"
