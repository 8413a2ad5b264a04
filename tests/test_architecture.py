"""The folders import only what docs/architecture.md allows them to, and no package cycle exists.

Read with `ast` from the source: an import added in the wrong place fails here with the module
and the import named. Imports under `if TYPE_CHECKING:` are annotations, not dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("gateway", "dsp", "hospital", "devtools", "simulators")
LEAVES = {"gateway", "gateway.protocol", "gateway.times", "gateway.config", "gateway.schemas",
          "gateway.systemd"}  # fmt: skip
GATEWAY_PARTS = {"gateway.transports", "gateway.device", "gateway.state", "gateway.publish",
                 "gateway.processing", "gateway.web", "gateway.app", "gateway.context"}  # fmt: skip

# component -> components it may import at run time (docs/architecture.md, "Each folder's job")
ALLOWED: dict[str, set[str]] = {
    "dsp": set(),
    **{leaf: LEAVES for leaf in LEAVES},
    "gateway.transports": LEAVES,
    "gateway.device": LEAVES | {"gateway.transports"},
    "gateway.state": LEAVES,
    "gateway.publish": LEAVES | {"gateway.state"},
    "gateway.processing": LEAVES | {"dsp", "gateway.device", "gateway.state", "gateway.publish"},
    "gateway.web": LEAVES
    | {
        "dsp",
        "gateway.device",
        "gateway.state",
        "gateway.processing",
        "gateway.publish",
    },  # fmt: skip
    "gateway.context": LEAVES,
    "gateway.app": LEAVES | GATEWAY_PARTS,
    "gateway.cli": LEAVES | GATEWAY_PARTS | {"dsp", "hospital"},
    "hospital": set(),
    "simulators": LEAVES | GATEWAY_PARTS | {"dsp", "devtools"},
    "devtools": LEAVES,
}
# The demo and simulate commands start virtual devices and a broker: only there, and only
# inside the commands, may the gateway's code reach for simulators/ and devtools/.
EXCEPTIONS = {("gateway.cli.run_commands", "simulators"), ("gateway.cli.run_commands", "devtools")}


def component(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "gateway" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def runtime_imports(path: Path) -> list[tuple[str, int]]:
    """First-party modules imported by `path`, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return [(m, line) for m, line in found if m.split(".")[0] in FIRST_PARTY]


def modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in FIRST_PARTY:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out.append((".".join(p for p in parts if p != "__init__"), path))
    return out


@pytest.mark.parametrize("module,path", modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_follow_the_architecture(module, path):
    mine = component(module)
    for imported, line in runtime_imports(path):
        theirs = component(imported)
        if theirs == mine or (module, theirs) in EXCEPTIONS:
            continue
        assert theirs in ALLOWED[mine], (
            f"{path.relative_to(REPO)}:{line}: {mine} may not import {imported} "
            "(docs/architecture.md)"
        )


def test_simulators_and_devtools_only_inside_the_demo_commands():
    """run_commands.py reaches them lazily, so `perimon gateway` never loads a simulator."""
    path = REPO / "gateway/cli/run_commands.py"
    top_level = [n for n in ast.parse(path.read_text()).body
                 if isinstance(n, ast.Import | ast.ImportFrom)]  # fmt: skip
    for node in top_level:
        name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        assert not (name or "").startswith(("simulators", "devtools")), ast.unparse(node)


def test_no_cycle_between_components():
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        for imported, _ in runtime_imports(path):
            a, b = component(module), component(imported)
            if a != b and (module, b) not in EXCEPTIONS:
                graph.setdefault(a, set()).add(b)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(c for c in graph if c in reach(c) and c not in LEAVES)
    assert not cycles, f"components in an import cycle: {cycles}"
