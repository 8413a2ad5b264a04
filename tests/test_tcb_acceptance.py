"""How far a unit's band correction may be trusted (dsp.tcb_unit.correction_uncertainty): the
estimate grows when LEDs sit off their nominal peaks where skin's spectrum is steep and names
those LEDs. It is advisory (docs/jaundice.md, "Factory calibration" and "Limits": it did not
predict the error on an independent skin model): the factory stores it and warns above the
limit but calibrates the unit, and the gateway reports it and keeps every reading a number."""

from __future__ import annotations

import logging
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from dsp.tcb_unit import (
    _CASES,
    _CENTRE_STEP_NM,
    _SENSITIVITY_RISING,
    CORRECTION_UNCERTAINTY_LIMIT_MG_DL,
    UnitCalibration,
    corrected_bias,
    correction_uncertainty,
    unit_correction_uncertainty,
)
from dsp.tissue_optics import NOMINAL_FWHM_NM, NOMINAL_LED_NM

pytestmark = pytest.mark.unit

NOMINAL = np.array(NOMINAL_LED_NM)
WIDTHS = np.array(NOMINAL_FWHM_NM)
AMBER = 4  # the 590 nm LED: haemoglobin's absorption falls steeply under it


def _off(led: int, nm: float) -> np.ndarray:
    centre = NOMINAL.copy()
    centre[led] += nm
    return centre


def test_a_nominal_unit_is_accepted():
    for exact in (False, True):
        found = correction_uncertainty(NOMINAL, WIDTHS, exact=exact)
        assert found.accepted
        assert found.mg_dl < 0.03, found


def test_a_unit_with_its_amber_led_10_nm_off_is_above_the_limit_and_the_led_named():
    centre = _off(AMBER, -10.0)
    found = correction_uncertainty(centre, WIDTHS, exact=True)
    assert not found.accepted and found.mg_dl > CORRECTION_UNCERTAINTY_LIMIT_MG_DL
    assert found.culprits() == (AMBER,)
    assert "590 nm" in found.message() and "above" in found.message()
    # the linear estimate the gateway uses agrees on the verdict
    assert not correction_uncertainty(centre, WIDTHS).accepted
    # the same offset on the 470 nm LED, which the correction carries well, is accepted
    assert correction_uncertainty(_off(1, 10.0), WIDTHS, exact=True).accepted


def test_the_kept_sensitivity_is_what_the_correction_gives_now():
    """The secants are computed once (correction_sensitivity, minutes); if the correction, the
    optics or the shipped estimator change, they must be computed again. One column checked."""
    column = corrected_bias(_off(AMBER, _CENTRE_STEP_NM), WIDTHS) / _CENTRE_STEP_NM
    assert column.shape == (len(_CASES),)
    assert np.allclose(column, _SENSITIVITY_RISING[:, AMBER], atol=1e-4)
    assert np.max(np.abs(column)) > 0.01  # a column that says something


def test_bad_bands_are_an_error_not_a_verdict():
    with pytest.raises(ValueError):
        correction_uncertainty(NOMINAL[:5], WIDTHS[:5])
    with pytest.raises(ValueError):
        correction_uncertainty(_off(0, float("nan")), WIDTHS)


def _unit(centre: np.ndarray, stored: float | None = None) -> UnitCalibration:
    return UnitCalibration(
        tuple(centre), tuple(WIDTHS), (0.0,) * 6, (-0.002,) * 6, (3000.0,) * 6,
        ((1000.0, 100.0),) * 6, ((0.5, 0.2),) * 6, "set-1", stored,
    )  # fmt: skip


def test_the_factory_value_travels_with_the_calibration_and_is_what_counts():
    unit = _unit(NOMINAL, stored=0.12)
    d = unit.to_dict()
    assert d["correction_uncertainty_mg_dl"] == 0.12
    back = UnitCalibration.from_dict(d)
    assert back.correction_uncertainty_mg_dl == 0.12
    assert unit_correction_uncertainty(back).mg_dl == 0.12
    # a calibration made before the factory judged it: the gateway's own estimate
    legacy = dict(d)
    del legacy["correction_uncertainty_mg_dl"]
    assert UnitCalibration.from_dict(legacy).correction_uncertainty_mg_dl is None
    assert not unit_correction_uncertainty(_unit(_off(AMBER, -10.0))).accepted
    # a value stored above the limit is not overruled by the estimate
    assert not unit_correction_uncertainty(_unit(NOMINAL, stored=0.45)).accepted
    for bad in (-0.1, float("nan"), "x"):
        with pytest.raises(ValueError):
            UnitCalibration.from_dict({**d, "correction_uncertainty_mg_dl": bad})


def test_the_factory_stores_and_warns_but_does_not_refuse_the_unit():
    from gateway.cli.tcb_factory import judged

    above, lines = judged(_unit(_off(AMBER, -10.0)))
    assert above.correction_uncertainty_mg_dl is not None
    assert above.correction_uncertainty_mg_dl > CORRECTION_UNCERTAINTY_LIMIT_MG_DL
    assert UnitCalibration.from_dict(above.to_dict()).correction_uncertainty_mg_dl == round(
        above.correction_uncertainty_mg_dl, 3
    )  # stored with the calibration
    assert len(lines) == 2, lines
    assert f"{above.correction_uncertainty_mg_dl:.2f} mg/dL" in lines[0]
    assert "590 nm LED at 580.0 nm" in lines[0]  # the LED that dominates it
    assert lines[1].startswith("warning: above the 0.3 mg/dL limit")
    assert "estimated; not validated on an independent skin model" in lines[1]
    assert "refused" not in " ".join(lines)
    within, lines = judged(_unit(_off(1, 3.0)))
    assert within.correction_uncertainty_mg_dl is not None
    assert within.correction_uncertainty_mg_dl < CORRECTION_UNCERTAINTY_LIMIT_MG_DL
    assert len(lines) == 1 and "470 nm LED at 473.0 nm" in lines[0]
    assert not any("warning" in x for x in lines)


def _payload(press) -> bytes:
    """The firmware's TcB record (gateway/protocol.py decode_tcb's layout) of one press."""
    flashes = np.asarray(press.flashes, dtype="<u2")
    head = struct.pack(
        "<Bh4HBB", 1, int(round(press.temperature_c * 100)), *press.dark_before,
        *press.dark_after, flashes.shape[0], flashes.shape[2],
    )  # fmt: skip
    return head + struct.pack(f"<{len(press.led_drive)}H", *press.led_drive) + flashes.tobytes()


def _gateway_readings(calibration: dict, device, n: int = 3, status: bool = False):
    """Presses of a simulated unit on a medium-skinned baby at 11 mg/dL, through the
    gateway's jaundice processing (real decoding, calibration, band correction, estimate);
    with status=True also the processor's status fields after them."""
    from gateway import protocol as p
    from gateway.processing import jaundice
    from simulators.skin import random_newborn, skin_reflectance

    state = SimpleNamespace(device_id="tcb-01", boot=1,
                            info={"calibration": calibration,
                                  "self_check": device.self_check_info()})  # fmt: skip
    session = SimpleNamespace(state=state, unix_time=lambda t_ms: 1_700_000_000.0 + t_ms / 1e3)
    sent: list[dict] = []
    proc = jaundice.JaundiceProcessor(session, lambda topic, msg, **kw: sent.append(msg), {})
    rng = np.random.default_rng(3)
    baby = random_newborn(rng, "medium", 11.0)
    for seq in range(n):
        near, far = skin_reflectance(baby, *device.bands_at(30.0))
        proc.on_record(p.Stream.TCB, seq, 1000 * seq, _payload(device.press(near, far)))
    readings = [m for m in sent if "tcb_mg_dl" in m]
    return (readings, proc.status_fields()) if status else readings


def test_an_estimate_above_the_limit_is_reported_and_readings_stay_numbers(caplog):
    from simulators.tcb_device import TcbDeviceModel, random_factory_calibration

    good = random_factory_calibration(5)  # LEDs up to 6 nm off, where it matters little
    device = TcbDeviceModel(good, seed=5)
    readings = _gateway_readings(good.to_dict(), device)
    assert readings and all(r["tcb_mg_dl"] is not None for r in readings), readings
    assert all(abs(r["tcb_mg_dl"] - 11.0) < 4.0 for r in readings)
    # the same unit with the factory's estimate stored above the limit: the same numbers (the
    # estimate is advisory), the stored value in the status, a warning logged once
    above = good.to_dict()
    above["unit"] = {**above["unit"], "correction_uncertainty_mg_dl": 0.5}
    with caplog.at_level(logging.WARNING, logger="gateway.processing.jaundice"):
        same, status = _gateway_readings(above, TcbDeviceModel(good, seed=5), status=True)
    assert [r["tcb_mg_dl"] for r in same] == [r["tcb_mg_dl"] for r in readings]
    assert all(r["flag"] == "" for r in same), same
    assert status["tcb_correction_uncertainty_mg_dl"] == 0.5
    said = [r.getMessage() for r in caplog.records if "0.50 mg/dL" in r.getMessage()]
    assert len(said) == 1 and "not withheld" in said[0], said
    # a unit calibrated before the factory estimated it, whose 590/650 nm LEDs sit 9 and 5 nm
    # off (simulated unit 1003): its readings stay numbers, the status has no stored value, and
    # the gateway's own estimate, above the limit, is logged once
    caplog.clear()
    bad = random_factory_calibration(1003)
    assert "correction_uncertainty_mg_dl" not in bad.to_dict()["unit"]
    with caplog.at_level(logging.WARNING, logger="gateway.processing.jaundice"):
        readings, status = _gateway_readings(bad.to_dict(), TcbDeviceModel(bad, seed=1003),
                                             status=True)  # fmt: skip
    assert readings and all(r["tcb_mg_dl"] is not None for r in readings), readings
    assert status["tcb_correction_uncertainty_mg_dl"] is None
    said = [r.getMessage() for r in caplog.records if "band correction" in r.getMessage()]
    assert len(said) == 1 and "590 nm" in said[0], said
