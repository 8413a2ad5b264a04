"""The hospital contract: the JSON Schemas of docs/schemas, one per kind of message."""

from __future__ import annotations

import json

import jsonschema

from tests.harness.paths import DOCS

SCHEMAS = DOCS / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    """The validator of docs/schemas/<name>.schema.json, the schema itself checked first."""
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)
