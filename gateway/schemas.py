"""The JSON Schemas of docs/schemas on a running gateway, and the one-line errors they give.

`load_schema(name)` finds a schema wherever perimon runs: in the installed package data first,
else in the checkout's docs/schemas. `SchemaCheck` compiles a schema, or one of its `$defs`,
once (Draft 2020-12, with a format checker) and says what is wrong with a value in one line a
person can read, naming the key: `"<key>: <what it must be>"`, where "what it must be" is the
schema's own `description` of that key (or its `enum`). The schema is the one statement of the
rules; the words of every rejection live beside them (docs/schemas/command.schema.json).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

import perimon_schemas
from gateway.times import parse_time

MAX_MESSAGE_CHARS = 200  # one line a person reads; docs/mqtt.md promises it for every rejection
_NAMED_KEYS = 3  # unknown keys named in a message; the rest are counted
_KEY_CHARS = 32  # each named key cut to this
_CLEARED = "#/$defs/cleared"  # "null clears a setting": not worth saying in every rejection


@cache
def load_schema(name: str) -> dict[str, Any]:
    """`docs/schemas/{name}.schema.json`, found by the contract's own package (installed as
    `perimon_schemas`, the checkout's docs/schemas in an editable install).

    Shared between callers: read it, never change it."""
    schema: dict[str, Any] = perimon_schemas.load_schema(name)
    return schema


def _finite_number(checker: Any, instance: object) -> bool:
    # JSON has no NaN or Infinity, but Python's json module reads them: without this, NaN
    # would pass every "minimum" and "maximum" (each comparison with NaN is false)
    return Draft202012Validator.TYPE_CHECKER.is_type(instance, "number") and math.isfinite(
        instance  # type: ignore[arg-type]
    )


# jsonschema's validators.extend is unannotated in its stubs; the result is a validator class
_Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number),
)

FORMATS = FormatChecker()


def _date_time(value: object) -> bool:
    # jsonschema checks date-time only with the optional rfc3339-validator installed; the
    # wire's times are ISO 8601 with a time zone (docs/mqtt.md), as gateway/times.py reads them
    return not isinstance(value, str) or parse_time(value) is not None


FORMATS.checks("date-time")(_date_time)


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An error as one line of at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def name_keys(keys: Sequence[str]) -> str:
    """A few keys by name (each on one line, cut short), the rest as a count."""
    named = ", ".join(" ".join(k.split())[:_KEY_CHARS] for k in keys[:_NAMED_KEYS])
    rest = len(keys) - _NAMED_KEYS
    return f"{named} and {rest} more" if rest > 0 else named


class SchemaCheck:
    """One schema (or one of its `$defs`), compiled once, and the words of its rejections."""

    __slots__ = ("root", "schema", "validator")

    def __init__(self, name: str, definition: str | None = None) -> None:
        self.root = load_schema(name)
        self.schema = self.root if definition is None else self.root["$defs"][definition]
        compiled = self.root
        if definition is not None:  # the definition, with the others it refers to
            compiled = {"$defs": self.root["$defs"], "$ref": f"#/$defs/{definition}"}
        self.validator = _Validator(compiled, format_checker=FORMATS)

    def problem(self, instance: object) -> str | None:
        """What is wrong with `instance`, in one line naming the key; None if nothing is."""
        errors = list(self.validator.iter_errors(instance))
        if not errors:
            return None
        return one_line(self._explain(min(errors, key=self._rank)))

    def check(self, instance: object) -> None:
        """Raise ValueError with `problem(instance)` if there is one."""
        problem = self.problem(instance)
        if problem is not None:
            raise ValueError(problem)

    def describe(self, *path: str | int) -> str:
        """What the value at `path` must be, in the schema's words ("" if it does not say)."""
        return self._words(path)[1]

    # ---- how an error is worded ----

    def _rank(self, error: ValidationError) -> int:
        """Errors about the whole object first, then by the key's place in the schema, so the
        answer does not depend on the order of keys in what was sent."""
        path = self._key_path(error)
        if not path or not isinstance(path[0], str):
            return -1
        order = list(self._properties(self.schema))
        return order.index(path[0]) if path[0] in order else len(order)

    @staticmethod
    def _key_path(error: ValidationError) -> list[str | int]:
        """Where the error is: the value's path, or for a missing key, that key's."""
        path: list[str | int] = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            required = cast(list[str], error.validator_value)  # "required" holds a list of keys
            missing = [k for k in required if k not in error.instance]
            path += missing[:1]
        return path

    def _explain(self, error: ValidationError) -> str:
        path = self._key_path(error)
        where = "".join(f"{p}: " for p in path if isinstance(p, str))
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            schema = cast(dict[str, Any], error.schema)  # the object schema that refused the key
            allowed = list(self._properties(schema))
            extra = sorted(k for k in error.instance if k not in allowed)
            return f"{where}{name_keys(extra)}: not accepted; only {', '.join(allowed)}"
        if error.validator == "dependentRequired" and isinstance(error.instance, dict):
            dependent = cast(dict[str, list[str]], error.validator_value)
            for key, needs in dependent.items():
                missing = [k for k in needs if key in error.instance and k not in error.instance]
                if missing:
                    what = self.describe(*path, missing[0])
                    return f"{where}{key} needs {missing[0]}: {what}"
        if any(isinstance(p, str) for p in path):
            key, what = self._words(path)
            return f"{key}: {what or 'not valid here'}"
        if error.validator == "type":
            return f"a JSON {error.validator_value}"
        said = error.schema.get("description") if isinstance(error.schema, dict) else None
        return str(said or f"not valid ({error.validator})")

    # ---- walking the schema ----

    def _words(self, path: Sequence[str | int]) -> tuple[str, str]:
        """The innermost key on `path` the schema has words for, and those words: an error in
        settings.risk_colour is about "risk_colour", one in times[2] about "times"."""
        node: dict[str, Any] | None = self.schema
        key, what = "", ""
        for part in path:
            node = self._child(node, part) if node is not None else None
            said = self._what(node) if node is not None else None
            if isinstance(part, str) and (said or not what):
                key, what = part, said or ""
        return key, what

    def _chain(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """`node` and, through `$ref`, what it refers to."""
        out = [node]
        while isinstance(node.get("$ref"), str) and len(out) < 16:
            node = self._pointer(node["$ref"])
            out.append(node)
        return out

    def _pointer(self, ref: str) -> dict[str, Any]:
        """A reference inside this schema's own document."""
        _, _, fragment = ref.partition("#")
        node: Any = self.root
        for part in fragment.strip("/").split("/") if fragment.strip("/") else []:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node if isinstance(node, dict) else {}

    def _properties(self, node: dict[str, Any]) -> dict[str, Any]:
        for n in self._chain(node):
            properties = n.get("properties")
            if isinstance(properties, dict):
                return properties
        return {}

    def _child(self, node: dict[str, Any], part: str | int) -> dict[str, Any] | None:
        if isinstance(part, str):
            return self._properties(node).get(part)
        for n in self._chain(node):
            items = n.get("items")
            if isinstance(items, dict):
                return items
        return None

    def _what(self, node: dict[str, Any]) -> str | None:
        """A node's own words: its description, or its choices; for "cleared or X", X's."""
        for n in self._chain(node):
            description = n.get("description")
            if isinstance(description, str):
                return description
            if isinstance(n.get("enum"), list):
                return "one of " + ", ".join(str(v) for v in n["enum"])
            branches = [b for b in n.get("anyOf", []) if b.get("$ref") != _CLEARED]
            if len(branches) == 1:
                return self._what(branches[0])
        return None
