"""The audit file: who acknowledged which alert and who changed which setting, and when.

An append-only JSON-lines file under the gateway's data_dir (`audit.jsonl`), one object per
line, kept beside the data it explains. A write that fails is logged, never raised: losing an
audit line must not stop an acknowledgement or a reading.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, data_dir: Path | None) -> None:
        self.path = data_dir / "audit.jsonl" if data_dir is not None else None

    def append(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")
        except OSError as exc:
            log.error("cannot write the audit log: %s", exc)
