"""The gateway never shows the mother's pulse as the baby's heart rate: the fetal monitor's PPG
waveform reaches the FHR estimator as beats, a probe that hears only the mother gives null
points marked maternal, the coincidence alert and the "move the probe" feedback flag; with her
finger off the PPG no point is shown unchecked, and after an outage the points wait for her
PPG."""

from __future__ import annotations

import numpy as np
import pytest

from gateway import protocol as p
from gateway.config import ProcessingSection
from gateway.device.session import DeviceSession
from gateway.processing.fetal import FetalProcessor
from simulators.doppler import DopplerSignal
from simulators.maternal import MaternalBeats
from simulators.ppg import PpgSignal

pytestmark = pytest.mark.unit

T0_MS = 3_000
FRAME = {p.Stream.DOPPLER: 240, p.Stream.PPG: 25}
RATE = {p.Stream.DOPPLER: 4000, p.Stream.PPG: 50}
SECONDS = 90.0


def run(
    fhr_bpm: float,
    mhr_bpm: float,
    fetal_absent: bool,
    ppg_from_30_s: str | None = None,
    outage_s: tuple[float, float] | None = None,
):
    """(processor, published messages, fetal rate heard at each point: NaN while the probe
    is off the fetus or the fetal signal has faded).

    ppg_from_30_s: her finger comes off the PPG at 30 s, which then reads "flat" (its last
    level), "noise" (that level +-1 count) or "adc noise" (the device ADC's noise): no pulse. outage_s: the radio drops the link
    for that stretch, and the device then resends it as its store does, the Doppler range
    first and the PPG range after it."""
    n = int(SECONDS * 4)
    mhr = np.full(n, mhr_bpm)
    beats = MaternalBeats.from_rate(mhr, seed=11)
    absent = [(0.0, SECONDS)] if fetal_absent else []
    doppler = DopplerSignal(
        np.full(n, fhr_bpm), mhr, 4000, 15.0, seed=12, maternal_model="wall_inband",
        beats=beats, fetal_absent=absent, absent_maternal_db=3.0,
    )  # fmt: skip
    x = {
        p.Stream.DOPPLER: doppler.read(int(SECONDS * 4000)),
        p.Stream.PPG: PpgSignal(mhr, 50, seed=13, beats=beats).read(int(SECONDS * 50)),
    }
    if ppg_from_30_s is not None:
        ppg, k = x[p.Stream.PPG], 30 * 50
        ppg[k:] = ppg[k - 1]
        rng = np.random.default_rng(0)
        if ppg_from_30_s == "noise":
            ppg[k:] += rng.integers(-1, 2, ppg.size - k).astype(ppg.dtype)
        if ppg_from_30_s == "adc noise":  # the device's ADC noise: 8 steps of 16 counts RMS
            ppg[k:] += (16 * np.round(rng.normal(0.0, 8.0, ppg.size - k))).astype(ppg.dtype)
    published: list[tuple[tuple, dict]] = []
    gap_timeout_s = 0.0 if outage_s is None else 60.0  # the gaps wait for the resend
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=gap_timeout_s)
    proc = FetalProcessor(
        s, lambda parts, payload, **kw: published.append((parts, payload)), ProcessingSection()
    )
    s.processor = proc
    out = []
    for stream, size in FRAME.items():
        for seq in range(0, len(x[stream]) - size, size):
            body = x[stream][seq : seq + size].astype("<i2").tobytes()
            t_ms = T0_MS + seq * 1000 // RATE[stream]
            f = p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART, stream, 1, seq, t_ms, body)
            out.append((seq / RATE[stream], stream, p.encode_frame(f)))
    out.sort(key=lambda a: a[0])
    if outage_s is not None:
        during = [f for f in out if outage_s[0] <= f[0] < outage_s[1]]
        resent = [f for f in during if f[1] == p.Stream.DOPPLER]
        resent += [f for f in during if f[1] == p.Stream.PPG]
        before = [f for f in out if f[0] < outage_s[0]]
        out = before + resent + [f for f in out if f[0] >= outage_s[1]]
    for i, (_, _, frame) in enumerate(out):
        s.on_frame(frame)
        if i % 50 == 0:
            proc.flush()
    proc.flush()
    truth = doppler.truth_fhr_bpm(np.arange(1, int(SECONDS * 4) + 1) * 0.25)
    return proc, published, truth


def fhr_points(published) -> tuple[np.ndarray, np.ndarray]:
    vals, mat = [], []
    for parts, m in published:
        if parts[-1] == "fhr":
            vals += [np.nan if v is None else v for v in m["fhr_bpm"]]
            mat += m["maternal"]
    return np.array(vals, dtype=float), np.array(mat, dtype=bool)


@pytest.mark.parametrize("mhr_bpm", [72.0, 138.0])  # her usual rate; labour tachycardia
def test_a_probe_hearing_only_the_mother_shows_no_rate(mhr_bpm):
    proc, published, _ = run(140.0, mhr_bpm, fetal_absent=True)
    fhr, maternal = fhr_points(published)
    late = slice(int(30 * 4), None)  # once her pulse template has formed (16 beats)
    assert len(fhr) > 300
    assert np.isfinite(fhr[late]).mean() < 0.01, "her pulse shown as the baby's"
    assert maternal[late].mean() > 0.8, "withheld points say why"
    alerts = [m for parts, m in published if parts[-1] == "alert"]
    assert any(a["alert"] == "maternal_coincidence" and a["state"] == "raised" for a in alerts)
    assert proc.feedback_flags() & p.FEEDBACK_MATERNAL, "the mother is told to move the probe"


def test_a_fetal_heart_beside_her_vessel_is_shown():
    proc, published, truth = run(140.0, 80.0, fetal_absent=False)
    fhr, maternal = fhr_points(published)
    heard = np.isfinite(truth[: len(fhr)])
    heard[: 30 * 4] = False  # once her pulse template has formed
    assert heard.sum() > 40, "the scene hears the fetal heart for a while"
    shown = np.isfinite(fhr)
    assert shown[heard].mean() > 0.8 and np.all(np.abs(fhr[heard & shown] - 140.0) < 5)
    assert maternal[heard].mean() < 0.1  # at most where a window still holds a fade
    # While the fetal signal fades, her vessel at 80 bpm is not shown as the baby's (the
    # target: under 1% of such points; docs/fhr.md).
    faded = ~np.isfinite(truth[: len(fhr)])
    faded[: 30 * 4] = False
    assert faded.sum() > 40
    assert (shown & faded & (np.abs(fhr - 80.0) < 10)).sum() <= 0.01 * faded.sum()


@pytest.mark.parametrize("ppg", ["flat", "noise", "adc noise"])
def test_a_finger_off_the_ppg_shows_no_rate_where_her_pulse_is_not_watched(ppg):
    # Her finger comes off the PPG after 30 s while the probe hears only her pulse (a
    # tachycardic mother, 138 bpm: a fetal-looking rate). With no maternal channel for those
    # points nothing can tell her pulse from the baby's: they are withheld, never shown as
    # fetal (before: all shown at 138 bpm at quality 1.0, the device told GOOD; with the ADC's
    # noise, 96%, its random "beats" taken for hers).
    proc, published, _ = run(140.0, 138.0, fetal_absent=True, ppg_from_30_s=ppg)
    fhr, maternal = fhr_points(published)
    late = slice(int(40 * 4), None)
    assert len(fhr) > 300
    assert not np.isfinite(fhr[late]).any(), "her pulse shown as the baby's"
    quality = np.concatenate([m["quality"] for parts, m in published if parts[-1] == "fhr"])
    assert np.all(quality[late] == 0.0)
    assert not maternal[late].any(), "not proven hers either: not flagged as her pulse"
    assert proc.feedback_level() != p.FeedbackLevel.GOOD


def test_an_outage_resent_doppler_first_waits_for_her_ppg():
    # A 20 s outage; the device resends the Doppler it kept, then the PPG. The outage's
    # points wait for her PPG and are checked against it, not passed because their audio came
    # first (before: 62% of them published at her rate).
    _, published, _ = run(140.0, 138.0, fetal_absent=True, outage_s=(30.0, 50.0))
    fhr, maternal = fhr_points(published)
    outage = slice(30 * 4, 50 * 4)
    assert not np.isfinite(fhr[outage]).any(), "her pulse shown as the baby's"
    assert maternal[outage].mean() > 0.8, "checked against her PPG once it came"
