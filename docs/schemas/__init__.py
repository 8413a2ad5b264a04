"""The MQTT contract's JSON Schemas (docs/mqtt.md), as the package `perimon_schemas`.

This folder is the one copy of the schemas. The wheel ships it as the package `perimon_schemas`
(setup.py and pyproject.toml map it), and an editable install maps that package back to this
folder, so `schema_path` finds the same files installed and in a checkout. The hospital's
ingest validates every message against them, the gateway the commands it receives.
"""

from __future__ import annotations

import json
from pathlib import Path

_DIR = Path(__file__).resolve().parent
_SUFFIX = ".schema.json"


def schema_names() -> list[str]:
    """Every schema's name: its file name without `.schema.json`."""
    return sorted(p.name.removesuffix(_SUFFIX) for p in _DIR.glob(f"*{_SUFFIX}"))


def schema_path(name: str) -> Path:
    """The file of the schema `name` ("command", "observation", ...; see `schema_names`)."""
    path = _DIR / f"{name}{_SUFFIX}"
    if not path.is_file():
        raise FileNotFoundError(f"no JSON Schema {name!r} (known: {', '.join(schema_names())})")
    return path


def load_schema(name: str) -> dict:
    """The schema `name`, parsed."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))
