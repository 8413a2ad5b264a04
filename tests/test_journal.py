"""The gateway's sample journal (gateway/device/journal.py): a gateway killed while its points
wait for the audio and the mother's pulse after them gets that audio back from its own
journal, not from the device's few seconds of buffer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gateway import protocol as p
from gateway.config import MqttSection, ProcessingSection
from gateway.device.journal import SampleJournal, journal_dir, open_journal
from gateway.device.session import DeviceSession
from gateway.processing.fetal import FetalProcessor
from gateway.processing.resume import resume_boot
from gateway.publish.mqtt import Publisher
from gateway.publish.outbox import Outbox
from tests.harness.paths import REPO
from tests.test_restart_timing import T0_MS, frames, points, signals, trace

pytestmark = pytest.mark.unit

DOPPLER = int(p.Stream.DOPPLER)
CLOCK_MS = 1_800_000_000_000.0 - T0_MS  # the boot's offset to wall time, as synced


def item(seq: int, n: int = 240) -> np.ndarray:
    return (np.arange(seq, seq + n) % 30000).astype(np.int16)


def test_since_gives_the_samples_from_a_point_on_up_to_the_first_gap(tmp_path):
    j = SampleJournal(tmp_path / "j.sqlite")
    for seq in (0, 240, 480, 960):  # 720 never came
        j.append("fh-01", 1, DOPPLER, seq, T0_MS + seq // 4, item(seq))
    got = list(j.since("fh-01", 1, DOPPLER, 300))
    assert [g.seq for g in got] == [240, 480], "from the frame holding sample 300, to the gap"
    assert np.array_equal(got[1].samples, item(480)) and got[1].t_ms == T0_MS + 120
    assert list(j.since("fh-01", 1, DOPPLER, 800)) == [], "nothing contiguous from 800"
    assert list(j.since("fh-01", 2, DOPPLER, 0)) == [], "another boot"
    assert list(j.since("fh-02", 1, DOPPLER, 0)) == [], "another device"


def test_it_keeps_the_last_seconds_of_the_current_boot_only(tmp_path):
    j = SampleJournal(tmp_path / "j.sqlite", keep_s=2.0)
    j.append("fh-01", 1, DOPPLER, 0, T0_MS, item(0))
    for k in range(200):  # 12 s of boot 2
        j.append("fh-01", 2, DOPPLER, 240 * k, k * 60, item(240 * k))
    assert list(j.since("fh-01", 1, DOPPLER, 0)) == [], "the old boot is dropped"
    first = next(iter(j.since("fh-01", 2, DOPPLER, 0)), None)
    assert first is None, "boot 2's start is beyond the 2 s kept"
    kept = list(j.since("fh-01", 2, DOPPLER, 240 * 199))
    assert [g.seq for g in kept] == [240 * 199]
    rows = j._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert rows <= 2 * 4000 / 240 + 64, rows


def test_a_row_written_is_there_after_the_process_is_killed(tmp_path):
    path = tmp_path / "j.sqlite"
    script = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        import numpy as np
        from gateway.device.journal import SampleJournal
        j = SampleJournal(Path(sys.argv[1]))
        for seq in range(0, 2400, 240):
            j.append("fh-01", 1, 0, seq, seq // 4, np.arange(240, dtype=np.int16))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO, check=False)
    assert proc.returncode == -9
    got = list(SampleJournal(path).since("fh-01", 1, 0, 0))
    assert [g.seq for g in got] == list(range(0, 2400, 240))


def test_the_journal_goes_in_the_service_runtime_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert journal_dir(tmp_path / "data") == tmp_path / "data"
    monkeypatch.setenv("RUNTIME_DIRECTORY", f"{tmp_path}/run:{tmp_path}/other")
    assert journal_dir(tmp_path / "data") == tmp_path / "run"


def test_a_journal_that_cannot_be_kept_is_logged_and_left_out(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert open_journal(blocker / "samples.sqlite") is None
    assert "not kept" in caplog.text


def gateway(outbox: Outbox, journal: SampleJournal) -> tuple[DeviceSession, list[dict]]:
    """A session, processor and journal as gateway/app.py wires them."""
    published: list[dict] = []
    publisher = Publisher(MqttSection(), "gw-test", outbox)  # stores; never started
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=0.0)
    s.processor = FetalProcessor(
        s, lambda *a, **kw: published.append(publisher.publish(*a, **kw)), ProcessingSection()
    )
    s.journal = journal
    s.on_new_boot = lambda boot: resume_boot(s, outbox, boot)
    return s, published


def killed_at_30_s(tmp_path, x) -> tuple[list[dict], Path, Path]:
    """A gateway that received the first 30 s of `x` (a boot's frames), published what was
    ready and was killed: what it published, and its outbox's and journal's paths."""
    outbox_path, journal_path = tmp_path / "outbox.sqlite", tmp_path / "samples.sqlite"
    s1, pub1 = gateway(Outbox(outbox_path, 1 << 30, 0, recent_points=240),
                       SampleJournal(journal_path))  # fmt: skip
    for k, f in enumerate(frames(x, 0.0, 30.0)):
        s1.on_frame(f)
        if k == 0:
            s1.set_clock(CLOCK_MS)  # after_connect's TIME_SYNC
    s1.processor.flush()  # type: ignore[union-attr]  # the points ready, as its loop would
    return pub1, outbox_path, journal_path


@pytest.mark.parametrize("with_journal", [True, False])
def test_a_restart_replays_the_journal_and_needs_the_device_only_after_the_kill(
    with_journal, tmp_path
):
    """Killed 30 s into a boot, restarted when the device's buffer reaches back only to the
    kill: with its journal the gateway loses nothing; without it, the seconds its points were
    still waiting for (the failure the journal exists for)."""
    x = signals(70.0)
    pub1, outbox_path, journal_path = killed_at_30_s(tmp_path, x)
    # then SIGKILL: what was published is in the outbox, what was received in the journal
    published_fhr = max(points(trace(pub1, "fhr"), "fhr_bpm"))
    assert published_fhr * 0.25 < 30.0 - 2.0, "points were waiting at the kill"
    journal = SampleJournal(journal_path if with_journal else tmp_path / "empty.sqlite")
    s2, pub2 = gateway(Outbox(outbox_path, 1 << 30, 0, recent_points=240), journal)
    again = frames(x, 29.0, 70.0)  # the device's buffer reaches back about to the kill
    for f in again:  # the boot again: resumed, the journal replayed before its first frame
        s2.on_frame(f)
        s2.tick()  # no link to resend over: a gap is given up at once
    s2.processor.flush()  # type: ignore[union-attr]

    before, after = points(trace(pub1, "fhr"), "fhr_bpm"), points(trace(pub2, "fhr"), "fhr_bpm")
    assert min(after) == published_fhr + 1 and max(after) > 4 * 60
    assert sorted(before) + sorted(after) == list(range(1, max(after) + 1)), "contiguous"
    lost = [k for k, (_, _, is_lost) in after.items() if is_lost]
    if with_journal:
        assert s2.state.stats.lost_samples == 0 and lost == []
        first = min(m["seq"] for m in trace(pub2, "fhr"))  # at its own time, not the replay's
        (msg,) = [m for m in trace(pub2, "fhr") if m["seq"] == first]
        assert msg["t_start"].startswith("2027-01-15T08:00:2"), msg["t_start"]
        values = [v for k, (v, _, _) in after.items() if k * 0.25 < 34.0 and v is not None]
        assert len(values) > 4 * 3 and abs(np.median(values) - 125) < 3, values
    else:
        assert s2.state.stats.lost_samples > 4000 and lost, "the test can see a loss"


def test_the_replay_comes_before_the_live_frames_and_keeps_its_clock(tmp_path):
    """Restarted under load, the device's frames after the kill came and ticks passed before
    TIME_SYNC's answer. When the replay waited for that sync, the gap from the resume point
    was asked of the device, which no longer held it, or given up, and counted lost (8300
    samples in test_faults' kill -9). The replay now runs when the boot resumes, timed by the
    clock the journal kept, so no gap opens and no sync is needed."""
    x = signals(40.0)
    _, outbox_path, journal_path = killed_at_30_s(tmp_path, x)
    s2, pub2 = gateway(Outbox(outbox_path, 1 << 30, 0, recent_points=240),
                       SampleJournal(journal_path))  # fmt: skip
    for f in frames(x, 29.0, 40.0):  # never synced
        s2.on_frame(f)
        s2.tick()  # no link: a gap would be given up at once (gap_timeout_s 0)
    s2.processor.flush()  # type: ignore[union-attr]
    assert s2.state.stats.lost_samples == 0
    fhr = trace(pub2, "fhr")
    assert fhr and not [k for k, (_, _, lost) in points(fhr, "fhr_bpm").items() if lost]
    first = min(fhr, key=lambda m: m["seq"])
    assert first["t_start"].startswith("2027-01-15T08:00:2"), "timed by the kept clock"


def test_a_boot_whose_clock_was_never_synced_is_not_replayed(tmp_path):
    """Without the boot's clock the replayed points would be timed at their replay, up to the
    journal's 30 s late: the device is asked for them instead (here it no longer holds them,
    so they are lost, and said to be)."""
    x = signals(40.0)
    outbox_path, journal_path = tmp_path / "outbox.sqlite", tmp_path / "samples.sqlite"
    s1, _ = gateway(Outbox(outbox_path, 1 << 30, 0, recent_points=240),
                    SampleJournal(journal_path))  # fmt: skip
    for f in frames(x, 0.0, 30.0):  # never synced
        s1.on_frame(f)
    s1.processor.flush()  # type: ignore[union-attr]
    assert list(SampleJournal(journal_path).since("fh-01", 1, DOPPLER, 0)), "journaled"
    s2, pub2 = gateway(Outbox(outbox_path, 1 << 30, 0, recent_points=240),
                       SampleJournal(journal_path))  # fmt: skip
    for f in frames(x, 29.0, 40.0):
        s2.on_frame(f)
        s2.tick()
    s2.processor.flush()  # type: ignore[union-attr]
    assert s2.state.stats.lost_samples > 4000
