"""The gateway never shows the mother's pulse as the baby's heart rate: the fetal monitor's PPG
waveform reaches the FHR estimator as beats, a probe that hears only the mother gives null
points marked maternal, the coincidence alert and the "move the probe" feedback flag; with her
finger off the PPG no point is shown unchecked, and after an outage the points wait for her
PPG. Her pulse unmonitored (finger off) raises maternal_unmonitored, and a restarted gateway
hearing the resent Doppler before the PPG shows nothing until the PPG comes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway import protocol as p
from gateway.app import Gateway
from gateway.config import ProcessingSection, config_from_dict
from gateway.device.session import DeviceSession
from gateway.processing.fetal import FetalProcessor
from gateway.processing.resume import resume_plan
from gateway.web.mother import mother_state
from simulators.doppler import DopplerSignal
from simulators.maternal import MaternalBeats
from simulators.ppg import PpgSignal
from tests.harness.chain import gateway_config

pytestmark = pytest.mark.unit

T0_MS = 3_000
FRAME = {p.Stream.DOPPLER: 240, p.Stream.PPG: 25}
RATE = {p.Stream.DOPPLER: 4000, p.Stream.PPG: 50}
SECONDS = 90.0


def run(
    fhr_bpm: float,
    mhr_bpm: float,
    fetal_absent: bool,
    finger_off: str | None = None,
    off_s: float = 30.0,
    outage_s: tuple[float, float] | None = None,
    ppg_back_s: float | None = None,
    seconds: float = SECONDS,
    gateway: Gateway | None = None,
    flat_spans: list[tuple[float, float]] = (),
):
    """(processor, published messages, fetal rate heard at each point: NaN while the probe
    is off the fetus or the fetal signal has faded).

    finger_off: her finger comes off the PPG at off_s, which then reads "flat" (its last
    level), "noise" (that level +-1 count) or "adc noise" (the device ADC's noise): no pulse. outage_s: the radio drops the link
    for that stretch, and the device then resends it as its store does, the Doppler range
    first and the PPG range after it. ppg_back_s: her finger is back on the PPG from then.
    gateway: the session is that gateway's, its processor fed to its recording sessions.
    flat_spans: (from, to) in s: her finger is off the PPG then too (it reads flat)."""
    x, doppler = scene(fhr_bpm, mhr_bpm, fetal_absent, seconds)
    for a, b in flat_spans:
        x[p.Stream.PPG][int(a * 50) : int(b * 50)] = x[p.Stream.PPG][int(a * 50) - 1]
    if finger_off is not None:
        ppg, k = x[p.Stream.PPG], int(off_s * 50)
        back = ppg[int(ppg_back_s * 50) :].copy() if ppg_back_s is not None else ppg[:0]
        ppg[k:] = ppg[k - 1]
        rng = np.random.default_rng(0)
        if finger_off == "noise":
            ppg[k:] += rng.integers(-1, 2, ppg.size - k).astype(ppg.dtype)
        if finger_off == "adc noise":  # the device's ADC noise: 8 steps of 16 counts RMS
            ppg[k:] += (16 * np.round(rng.normal(0.0, 8.0, ppg.size - k))).astype(ppg.dtype)
        ppg[ppg.size - back.size :] = back
    published: list[tuple[tuple, dict]] = []
    gap_timeout_s = 0.0 if outage_s is None else 60.0  # the gaps wait for the resend
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=gap_timeout_s)
    proc = FetalProcessor(
        s, lambda parts, payload, **kw: published.append((parts, payload)), ProcessingSection(),
        recording=None if gateway is None else gateway.recordings.tracker(s.state.device_id),
    )  # fmt: skip
    s.processor = proc
    if gateway is not None:
        gateway.sessions[s.state.device_id] = s
    out = encoded_frames(x)
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
    truth = doppler.truth_fhr_bpm(np.arange(1, int(seconds * 4) + 1) * 0.25)
    return proc, published, truth


def scene(
    fhr_bpm: float, mhr_bpm: float, fetal_absent: bool, seconds: float
) -> tuple[dict[int, np.ndarray], DopplerSignal]:
    """The monitor's Doppler and PPG samples over `seconds` (the probe beside her vessel)."""
    n = int(seconds * 4)
    mhr = np.full(n, mhr_bpm)
    beats = MaternalBeats.from_rate(mhr, seed=11)
    absent = [(0.0, seconds)] if fetal_absent else []
    doppler = DopplerSignal(
        np.full(n, fhr_bpm), mhr, 4000, 15.0, seed=12, maternal_model="wall_inband",
        beats=beats, fetal_absent=absent, absent_maternal_db=3.0,
    )  # fmt: skip
    x = {
        p.Stream.DOPPLER: doppler.read(int(seconds * 4000)),
        p.Stream.PPG: PpgSignal(mhr, 50, seed=13, beats=beats).read(int(seconds * 50)),
    }
    return x, doppler


def encoded_frames(x: dict[int, np.ndarray]) -> list[tuple[float, int, bytes]]:
    """(time in the boot, stream, frame) for both streams' frames, in time order."""
    out = []
    for stream, size in FRAME.items():
        for seq in range(0, len(x[stream]) - size, size):
            body = x[stream][seq : seq + size].astype("<i2").tobytes()
            t_ms = T0_MS + seq * 1000 // RATE[stream]
            f = p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART, stream, 1, seq, t_ms, body)
            out.append((seq / RATE[stream], stream, p.encode_frame(f)))
    out.sort(key=lambda a: a[0])
    return out


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
    proc, published, _ = run(140.0, 138.0, fetal_absent=True, finger_off=ppg)
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


def alert_log(published) -> list[tuple[float, str, str, str]]:
    """(trace time in s when published: FHR points out so far x 0.25, kind, state, detail)."""
    out, points = [], 0
    for parts, m in published:
        if parts[-1] == "fhr":
            points += m["count"]
        elif parts[-1] == "alert":
            out.append((points * 0.25, m["alert"], m["state"], m["detail"]))
    return out


@pytest.fixture(scope="module")
def finger_off_then_back():
    # The probe hears only her pulse (138 bpm, a fetal-looking rate); her finger comes off the
    # PPG at 30 s (it reads flat) and is back at 100 s.
    return run(140.0, 138.0, fetal_absent=True, finger_off="flat", ppg_back_s=100.0,
               seconds=170.0)  # fmt: skip


BACK_S = 100.0


def test_the_nurse_is_told_her_pulse_is_not_monitored_until_it_is_again(finger_off_then_back):
    proc, published, _ = finger_off_then_back
    log = alert_log(published)
    unmonitored = [(t, state, detail) for t, kind, state, detail in log
                   if kind == "maternal_unmonitored"]  # fmt: skip
    assert [state for _, state, _ in unmonitored] == ["raised", "cleared"], log
    (raised_s, _, detail), (cleared_s, _, _) = unmonitored
    assert 30.0 < raised_s < 30.0 + 60.0, "within the minute her pulse is not watched"
    assert "not being monitored" in detail and "finger sensor" in detail
    # cleared once a quarter or less of the minute has been unchecked for 10 s: her rate is
    # measured again 5 s after her finger, so about 60 s after it
    assert BACK_S < cleared_s < BACK_S + 65.0, "cleared once her pulse is back"
    # The probe still hears only her: the coincidence alert, raised before her finger came
    # off the PPG could say so, is not cleared for want of her pulse, nor after it returns.
    coincidence = [(t, state) for t, kind, state, _ in log if kind == "maternal_coincidence"]
    assert [state for _, state in coincidence] == ["raised"], log
    assert "maternal_coincidence" in proc.alerts.active()
    assert "maternal_unmonitored" not in proc.alerts.active()
    # No point near her rate is shown as fetal while her pulse is not watched, nor after it
    # is back (points up to 3 s before it: their windows and her rate's do not reach it).
    fhr, _ = fhr_points(published)
    near = np.isfinite(fhr) & (np.abs(fhr - 138.0) < 10.0)
    t = (np.arange(len(fhr)) + 1) * 0.25
    assert len(fhr) > 600
    assert not near[(t >= 30.0) & (t < BACK_S - 3.0)].any(), "her pulse shown as the baby's"
    assert not near[t >= BACK_S].any(), "her pulse shown as the baby's"


def test_no_point_near_her_rate_is_shown_as_her_pulse_returns_nor_before_it_formed(
    finger_off_then_back,
):
    # Before dsp/mhr.py measured a window only with her pulse across it, the first maternal
    # rates as her pulse returned came from windows still mostly flat, 5-10 bpm off (146.9
    # for 138), and 3 points at her rate (97.5-98.25 s) passed the check against them at
    # quality 1.0; and 2 points at 1.0-1.25 s (135 bpm, quality 0.52 and 0.44) passed against
    # the rates of her first beats (147.4 for 138), found before any window showed a pulse.
    _, published, _ = finger_off_then_back
    fhr, _ = fhr_points(published)
    t = (np.arange(len(fhr)) + 1) * 0.25
    near = np.isfinite(fhr) & (np.abs(fhr - 138.0) < 10.0)
    assert len(fhr) > 600
    assert not near.any(), t[near]


@pytest.mark.parametrize(("off_s", "on_s"), [(10.0, 10.0), (10.0, 13.0), (12.0, 12.0)])
def test_a_finger_going_on_and_off_the_sensor_is_one_alert(off_s, on_s):
    # Her finger is off the PPG for off_s, on for on_s, from 30 s to 150 s, then stays on; the
    # probe hears only her (138 bpm). The share of the last minute withheld unchecked swings
    # about a half; the alert is raised once and cleared at most once (after her pulse is
    # steadily back), not once each swing; and no point at her rate is shown meanwhile. Before
    # (raised and cleared at a half of the minute at once): raised 4 times off 10 s and on
    # 13 s, 3 times off and on 12 s each.
    toggles = [(a, a + off_s) for a in np.arange(30.0, 150.0, off_s + on_s)]
    _, published, _ = run(140.0, 138.0, fetal_absent=True, seconds=240.0, flat_spans=toggles)
    log = alert_log(published)
    unmonitored = [(t, state) for t, kind, state, _ in log if kind == "maternal_unmonitored"]
    assert [state for _, state in unmonitored][:1] == ["raised"], log
    assert [state for _, state in unmonitored] in (["raised"], ["raised", "cleared"]), log
    assert all(t > 150.0 for t, state in unmonitored if state == "cleared"), log
    fhr, _ = fhr_points(published)
    t = (np.arange(len(fhr)) + 1) * 0.25
    near = np.isfinite(fhr) & (np.abs(fhr - 138.0) < 10.0)
    assert len(fhr) > 900 and not near[t >= 30.0].any(), t[near]


def test_a_probe_hearing_only_her_for_four_minutes_shows_none_of_her_pulse():
    # Her finger stays on the PPG. Before her beats needed her pulse across a window reaching
    # LOOKAHEAD_S past them (dsp/mhr.py), 7 points at her rate (19.5-21.5 s, quality
    # 0.92-1.0) were shown: her last beats before an arm movement in the PPG gave rates of
    # 132.5 and 147.0 for 138, and points 9 bpm from 147.0 passed the rate-only check.
    _, published, _ = run(140.0, 138.0, fetal_absent=True, seconds=240.0)
    fhr, _ = fhr_points(published)
    t = (np.arange(len(fhr)) + 1) * 0.25
    near = np.isfinite(fhr) & (np.abs(fhr - 138.0) < 10.0)
    assert len(fhr) > 900 and not near.any(), t[near]


def test_a_restarted_gateway_shows_nothing_of_the_resent_doppler_until_her_ppg_comes():
    # A gateway restarted 30 s into a boot, the probe hearing only the mother (138 bpm). The
    # device resends from the gateway's resume point one range at a time: the Doppler first,
    # then the PPG. Before (no maternal channel known to the restarted estimator), all 86
    # points of the resent Doppler were published at her rate (quality 0.6) before her PPG came.
    x, _ = scene(140.0, 138.0, fetal_absent=True, seconds=SECONDS)
    frames = encoded_frames(x)

    def gateway(marks=None):
        published: list[tuple[tuple, dict]] = []
        s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=60.0)
        proc = FetalProcessor(
            s, lambda parts, payload, **kw: published.append((parts, payload)), ProcessingSection()
        )
        s.processor = proc

        def resume(boot: int) -> None:  # as gateway/processing/resume.py from the outbox
            for kind, stream in (("fhr", p.Stream.DOPPLER), ("mhr", p.Stream.PPG)):
                s.resume_from[stream] = resume_plan(kind, marks[kind])
                proc.published_upto(kind, marks[kind], [])

        if marks is not None:
            s.on_new_boot = resume
        return s, proc, published

    s1, proc1, _ = gateway()
    for t, _, f in frames:
        if t < 30.0:
            s1.on_frame(f)
    proc1.flush()
    marks = {"fhr": proc1.next_point - 1, "mhr": proc1.next_mhr_point - 1}
    s2, proc2, published = gateway(marks)
    resume_s = {
        p.Stream.DOPPLER: resume_plan("fhr", marks["fhr"]) / RATE[p.Stream.DOPPLER],
        p.Stream.PPG: resume_plan("mhr", marks["mhr"]) / RATE[p.Stream.PPG],
    }

    def resend(stream: int) -> None:  # the frames holding the resume point up to 50 s
        for t, st, f in frames:
            if st == stream and resume_s[st] - FRAME[st] / RATE[st] < t < 50.0:
                s2.on_frame(f)
        proc2.flush()

    resend(p.Stream.DOPPLER)
    assert not fhr_points(published)[0].size, "nothing shown before her PPG"
    resend(p.Stream.PPG)
    fhr, maternal = fhr_points(published)
    assert fhr.size > 4 * 20, "the resent Doppler's points, once her PPG came"
    assert not np.isfinite(fhr).any(), "her pulse shown as the baby's"
    assert maternal.mean() > 0.8, "checked against her PPG"
    for i, (t, _, f) in enumerate(frames):
        if t >= 50.0:
            s2.on_frame(f)
        if i % 50 == 0:
            proc2.flush()
    proc2.flush()
    fhr, _ = fhr_points(published)
    assert fhr.size > 4 * 55 and not np.isfinite(fhr).any(), "her pulse shown as the baby's"


def test_the_mothers_page_asks_for_her_finger_back_in_the_sensor(tmp_path):
    # A fetal heart beside her vessel, recorded; her finger comes off the PPG at 45 s, once
    # the baby's rate (heard from about 32 s) has started the session. The baby's rate is
    # withheld from then on; her page must not ask her to move the probe (which would not
    # help) but to put her finger back.
    gw = Gateway(config_from_dict(gateway_config(tmp_path, "gw-home", web=True)))
    proc, published, _ = run(
        140.0, 80.0, fetal_absent=False, finger_off="flat", off_s=45.0, seconds=120.0, gateway=gw
    )
    fhr, _ = fhr_points(published)
    assert np.isfinite(fhr).any(), "a session was started"
    assert "maternal_unmonitored" in proc.alerts.active()
    recording = mother_state(gw, "fh-01", "en")["recording"]
    assert recording is not None and recording["signal"] == "no_finger"
    page = (Path(__file__).resolve().parents[1] / "gateway/web/static/mother/mother.js").read_text()
    assert page.count("signal_no_finger:") == 2, "said in English and in Chinese"
