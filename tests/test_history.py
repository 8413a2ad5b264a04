"""The history on disk (gateway/state/history.py, history_store.py): what the gateway published
survives a restart or a kill (the last batch copied back from the outbox), is written in batches,
is pruned by age, and a damaged or missing file is started empty with an alert to the nurses,
never a crash and never a risk to the outbox. Also the recording session in progress resumed
from it (gateway/processing/recording/service.py). Time is passed in (a fake clock)."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, config_from_dict
from gateway.processing.recording import Recordings
from gateway.publish.mqtt import Publisher
from gateway.publish.outbox import Outbox
from gateway.state.history import FLUSH_S, HISTORY_LOST, History
from gateway.times import iso_time

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0  # unix s: the fake clock starts here


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fhr(seq: int, t: float, boot: int = 1, values: list[float | None] | None = None) -> dict:
    values = values if values is not None else [140.0, 141.0, None, 142.0]
    return {"msg_id": f"fh-01:{boot}:fhr:{seq}", "device_id": "fh-01", "boot": boot, "seq": seq,
            "count": len(values), "interval_s": 0.25, "t_start": iso_time(t),
            "fhr_bpm": values, "quality": [0.9] * len(values),
            "maternal": [False] * len(values)}  # fmt: skip


def mhr(seq: int, t: float, boot: int = 1) -> dict:
    return {"msg_id": f"fh-01:{boot}:mhr:{seq}", "device_id": "fh-01", "boot": boot, "seq": seq,
            "count": 4, "interval_s": 0.25, "t_start": iso_time(t),
            "mhr_bpm": [80.0, 80.5, 81.0, 81.5]}  # fmt: skip


def alert(kind: str, state: str, raised: float, t: float, dev: str = "tcb-01") -> dict:
    return {"msg_id": f"{dev}:alert:{kind}:{int(raised * 1000)}:{state}", "device_id": dev,
            "alert": kind, "state": state, "severity": "medium", "detail": f"{kind} detail",
            "t": iso_time(t), "raised_at": iso_time(raised)}  # fmt: skip


def tcb(seq: int, t: float) -> dict:
    return {"msg_id": f"tcb-01:1:tcb:{seq}", "device_id": "tcb-01", "boot": 1, "seq": seq,
            "t": iso_time(t), "tcb_mg_dl": 16.1, "flag": ""}  # fmt: skip


def status(dev: str, t: float, **kw: Any) -> dict:
    return {"device_id": dev, "link": "connected", "battery_pct": 80, "t": iso_time(t), **kw}


def stream(h: History, clock: Clock, seconds: int, first_seq: int = 0) -> list[dict]:
    """One FHR and one MHR message a second, as a fetal monitor publishes them."""
    sent = []
    for i in range(seconds):
        clock.now += 1.0
        seq = first_seq + 4 * i
        m = fhr(seq, clock.now - 3)
        h.record(("device", "fh-01", "fhr"), m)
        h.record(("device", "fh-01", "mhr"), mhr(seq, clock.now - 3))
        sent.append(m)
    return sent


def rows(path: Path, table: str = "block", where: str = "1") -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0])
    finally:
        db.close()


def whole_window(h: History, dev: str = "fh-01") -> dict:
    return h.window(dev, T0 - 3600, T0 + 10 * 3600)


def test_everything_published_is_back_after_a_clean_restart(tmp_path):
    clock = Clock()
    h = History(tmp_path, clock=clock)
    h.record(("device", "fh-01", "status"), status("fh-01", clock.now, on_skin=True))
    sent = stream(h, clock, 30)
    h.record(("device", "fh-01", "ctg"), {"msg_id": "fh-01:1:ctg:119", "device_id": "fh-01",
                                          "window_s": 30.0, "t": iso_time(clock.now),
                                          "figo_class": "normal"})  # fmt: skip
    h.record(("device", "tcb-01", "tcb"), tcb(1, clock.now))
    h.record(("device", "tcb-01", "alert"), alert("tcb_above_phototherapy", "raised", clock.now,
                                                  clock.now))  # fmt: skip
    aid = f"tcb-01:alert:tcb_above_phototherapy:{int(clock.now * 1000)}"
    clock.now += 5
    assert h.ack(aid, "amy")["acked_by"] == "amy"
    before = whole_window(h), whole_window(h, "tcb-01"), h.device_summary("fh-01"), dict(h.alerts)
    h.close()

    again = History(tmp_path, clock=clock)
    after = (whole_window(again), whole_window(again, "tcb-01"), again.device_summary("fh-01"),
             dict(again.alerts))  # fmt: skip
    assert after == before
    assert [m["seq"] for m in after[0]["fhr"]] == [m["seq"] for m in sent]
    assert after[0]["ctg"][0]["window_start"]  # as recorded: from the last FHR point
    assert after[1]["alerts"][0]["acked_by"] == "amy" and after[1]["alerts"][0]["acked_at"]
    assert after[2]["last_fhr"]["bpm"] == 142.0 and after[2]["status"]["on_skin"] is True
    assert HISTORY_LOST not in json.dumps(after)


def test_a_kill_loses_nothing_the_outbox_holds(tmp_path):
    """The last batch was never written (the process died): the restarted history copies it
    from the outbox's recent trace, which the real publisher keeps for each device."""
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0, recent_points=240)
    pub = Publisher(config_from_dict({}).mqtt, "gw-t", outbox)
    h = History(tmp_path, clock=clock, recent_trace=outbox.recent_trace)

    def publish(parts: tuple[str, ...], payload: dict) -> None:  # Gateway.publish
        h.record(parts, pub.publish(parts, payload))

    for i in range(25):  # 25 s: two batches written, the rest pending
        clock.now += 1
        publish(("device", "fh-01", "fhr"), fhr(4 * i, clock.now - 3))
        publish(("device", "fh-01", "mhr"), mhr(4 * i, clock.now - 3))
    publish(("device", "tcb-01", "alert"), alert("tcb_rapid_rise", "raised", clock.now, clock.now))
    written = {kind: len(h.store.last("fh-01", kind)) for kind in ("fhr", "mhr")}
    assert 0 < rows(tmp_path / "history.sqlite") and written  # written in batches...
    assert h.messages("fh-01", "fhr", 0, math.inf)[-1]["seq"] == 96  # ...read with the pending
    # kill -9: no close(), no flush; the pending batch exists only in this process
    again = History(tmp_path, clock=clock, recent_trace=outbox.recent_trace)
    got = again.messages("fh-01", "fhr", 0, math.inf)
    assert [m["seq"] for m in got] == [4 * i for i in range(25)]
    assert [m["seq"] for m in again.messages("fh-01", "mhr", 0, math.inf)][-1] == 96
    assert list(again.alerts) == [h.alert_id(alert("tcb_rapid_rise", "raised", clock.now, 0))]
    outbox.close()


def test_the_trace_is_written_in_batches_readings_and_alerts_at_once(tmp_path):
    clock = Clock()
    h = History(tmp_path, clock=clock)
    path = tmp_path / "history.sqlite"
    stream(h, clock, int(FLUSH_S))
    assert rows(path) == 0  # nothing written for the first FLUSH_S seconds
    stream(h, clock, 1, first_seq=400)
    assert rows(path) == 2 and h.writes == 1  # FLUSH_S seconds of FHR, of MHR: a row each
    h.record(("device", "tcb-01", "tcb"), tcb(1, clock.now))
    assert h.writes == 2 and rows(path, where="kind = 'tcb'") == 1  # a reading: at once
    h.record(("device", "tcb-01", "alert"), alert("tcb_rapid_rise", "raised", clock.now, clock.now))
    assert rows(path, "alert") == 1
    h.close()


def test_pruned_by_age_and_nothing_kept_in_memory_but_the_newest(tmp_path):
    clock = Clock()
    h = History(tmp_path, keep_s=3600, clock=clock)
    stream(h, clock, 120)
    h.record(("device", "tcb-01", "alert"),
             alert("tcb_rapid_rise", "raised", clock.now, clock.now))  # fmt: skip
    h.record(("device", "tcb-01", "alert"),
             alert("tcb_rapid_rise", "cleared", clock.now, clock.now + 1))  # fmt: skip
    h.flush()
    assert len(h.messages("fh-01", "fhr", 0, math.inf)) == 120
    assert sum(len(v) for v in h._pending.values()) == 0  # nothing of the trace in memory
    clock.now += 3600 + 200
    stream(h, clock, 70, first_seq=10_000)  # a prune runs within a minute
    got = h.messages("fh-01", "fhr", 0, math.inf)
    assert got and all(m["seq"] >= 10_000 for m in got)
    assert h.alerts == {}
    h.close()
    assert rows(tmp_path / "history.sqlite", "alert") == 0


def test_a_device_is_kept_by_when_its_status_came_not_by_the_time_it_carries(tmp_path):
    clock = Clock()
    h = History(tmp_path, keep_s=3600, clock=clock)
    h.record(("device", "tcb-01", "status"), {"device_id": "tcb-01", "link": "connected"})
    clock.now += 120
    h.prune(clock.now)
    assert list(h.devices) == ["tcb-01"]
    h.close()
    again = History(tmp_path, keep_s=3600, clock=clock)
    assert again.device_summary("tcb-01")["status"]["link"] == "connected"
    clock.now += 3600
    again.prune(clock.now)
    assert again.devices == {}


def test_a_damaged_file_is_started_empty_with_an_alert_and_the_outbox_is_untouched(tmp_path):
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0)
    outbox.add("t/a", b"kept", msg_id="a", retain=False, priority=2)
    (tmp_path / "history.sqlite").write_bytes(b"not a database at all" * 500)
    h = History(tmp_path, clock=clock, expect_store=True)
    (lost,) = h.alerts.values()
    assert lost["alert"] == HISTORY_LOST and lost["state"] == "raised"
    assert "damaged" in lost["detail"] and "hospital" in lost["detail"]
    assert (tmp_path / "history.sqlite.corrupt").read_bytes().startswith(b"not a database")
    stream(h, clock, 15)
    assert len(h.messages("fh-01", "fhr", 0, math.inf)) == 15  # works again
    assert h.ack(lost["id"], "amy")["acked_by"] == "amy"
    h.close()
    again = History(tmp_path, clock=clock, expect_store=True)
    assert again.alerts[lost["id"]]["acked_by"] == "amy"  # kept, not raised again
    assert [r.payload for r in outbox.pending(0, 10)] == [b"kept"]
    outbox.close()


def test_damage_found_while_running_starts_it_empty_without_an_exception(tmp_path):
    clock = Clock()
    h = History(tmp_path, clock=clock)
    stream(h, clock, 2000)
    h.close()
    path = tmp_path / "history.sqlite"
    db = sqlite3.connect(path)
    pages = sorted(n for (n,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'block'"
                                            " AND pagetype = 'leaf'"))  # fmt: skip
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    for n in pages[: len(pages) // 2]:  # the oldest blocks' pages; the newest stay readable
        start = (n - 1) * page_size
        data[start : start + page_size] = b"\xa5" * page_size
    path.write_bytes(bytes(data))
    h = History(tmp_path, clock=clock)
    assert h.alerts == {} and h.device_summary("fh-01")["last_fhr"]  # opened as it was
    assert whole_window(h)["fhr"] == []  # reading meets the damage: started empty
    (lost,) = h.alerts.values()
    assert lost["alert"] == HISTORY_LOST and "malformed" in lost["detail"]
    assert (tmp_path / "history.sqlite.corrupt").exists()
    stream(h, clock, 15, first_seq=100_000)
    assert [m["seq"] for m in h.messages("fh-01", "fhr", 0, math.inf)][:1] == [100_000]
    h.close()
    assert list(History(tmp_path, clock=clock).alerts) == [lost["id"]]


def test_a_missing_file_alerts_only_on_a_gateway_that_ran_before(tmp_path):
    assert History(tmp_path / "new", expect_store=False).alerts == {}
    (lost,) = History(tmp_path / "old", expect_store=True).alerts.values()
    assert lost["alert"] == HISTORY_LOST and "missing" in lost["detail"]


def test_a_file_that_cannot_be_opened_is_replaced_by_memory_and_publishing_goes_on(tmp_path):
    (tmp_path / "history.sqlite").mkdir()  # not a file: cannot be opened at all
    outbox = Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0)
    pub = Publisher(config_from_dict({}).mqtt, "gw-t", outbox)
    clock = Clock()
    h = History(tmp_path, clock=clock, recent_trace=outbox.recent_trace)
    (lost,) = h.alerts.values()
    assert "kept in memory" in lost["detail"]
    for i in range(20):
        clock.now += 1
        h.record(("device", "fh-01", "fhr"), pub.publish(("device", "fh-01", "fhr"),
                                                         fhr(4 * i, clock.now)))  # fmt: skip
    assert outbox.rows == 20 and len(h.messages("fh-01", "fhr", 0, math.inf)) == 20
    outbox.close()


def test_an_alert_raised_again_after_a_restart_replaces_the_open_one(tmp_path):
    clock = Clock()
    h = History(tmp_path, clock=clock)
    h.record(("device", "tcb-01", "alert"), alert("tcb_above_phototherapy", "raised", T0, T0))
    (first,) = h.alerts
    h.ack(first, "amy")
    h.close()
    clock.now += 600  # the restarted gateway raises what still holds
    again = History(tmp_path, clock=clock)
    again.record(("device", "tcb-01", "alert"),
                 alert("tcb_above_phototherapy", "raised", clock.now, clock.now))  # fmt: skip
    old, new = again.alerts[first], [a for a in again.alerts.values() if a["id"] != first][0]
    assert old["state"] == "cleared" and old["replaced_by"] == new["id"]
    assert old["acked_by"] == "amy" and new["acked_by"] is None and new["state"] == "raised"
    assert again.device_summary("tcb-01")["active_alerts"] == [new["id"]]


class Published:
    """Gateway.publish: through the real publisher's outbox, then recorded by the history."""

    def __init__(self, history: History, outbox: Outbox) -> None:
        self.history = history
        self.publisher = Publisher(config_from_dict({}).mqtt, "gw-t", outbox)

    def __call__(self, parts: tuple[str, ...], payload: dict, **kw: Any) -> None:
        self.history.record(parts, self.publisher.publish(parts, payload, **kw))


def test_the_session_in_progress_goes_on_after_a_kill(tmp_path):
    """The mother's page shows the same session (start, minutes recorded) after the gateway
    was killed: its identity was stored at the last tick, its points are in the history."""
    clock = Clock()
    out = Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0, recent_points=240)
    h = History(tmp_path, clock=clock, recent_trace=out.recent_trace)
    pub = Published(h, out)
    rec = Recordings(tmp_path, out, h, pub)
    tracker = rec.tracker("fh-01")
    for i in range(200):  # 200 s of trace, batch by batch as the fetal processor feeds them
        clock.now += 1
        m = fhr(4 * i, clock.now - 3, values=[140.0, 141.0, None, 142.0])
        pub(("device", "fh-01", "fhr"), m)
        tracker.feed(1, m["seq"], [math.nan if v is None else v for v in m["fhr_bpm"]],
                     m["quality"], True, clock.now - 3, now=clock.now)  # fmt: skip
        if i % 5 == 4:
            rec.tick(clock.now)
    before = tracker.progress()
    assert before is not None and before["recorded_min"] == pytest.approx(200 * 4 * 0.25 / 60, 0.1)
    # kill -9: nothing closed; a new gateway on the same files
    clock.now += 20
    h2 = History(tmp_path, clock=clock, recent_trace=out.recent_trace)
    rec2 = Recordings(tmp_path, out, h2, Published(h2, out))
    rec2.resume()
    after = rec2.trackers["fh-01"].progress()
    assert after is not None
    assert (after["session_id"], after["start"]) == (before["session_id"], before["start"])
    assert after["recorded_min"] >= before["recorded_min"] - 5 * 4 * 0.25 / 60  # last tick
    active = rec2.trackers["fh-01"].active
    assert active is not None and active.next_point == 800 and len(active.fhr) == 800
    # the monitor never comes back: the session ends as link lost, recorded once
    rec2.tick(clock.now + 200)
    (ended,) = rec2.store.sessions("fh-01")
    assert ended["session_id"] == before["session_id"] and ended["end_reason"] == "link_lost"
    assert ended["recorded_min"] == pytest.approx(800 * 0.25 / 60, abs=0.01)
    assert rec2.store.progress() == {}
    rec2.stop()
    rec.stop()
    out.close()


def test_a_session_report_draws_the_maternal_rate_from_the_history(tmp_path):
    clock = Clock()
    h = History(tmp_path, clock=clock)
    out = Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0)
    rec = Recordings(tmp_path, out, h, Published(h, out))
    tracker = rec.tracker("fh-01")
    for i in range(100):
        clock.now += 1
        h.record(("device", "fh-01", "mhr"), mhr(4 * i, clock.now - 3))
        tracker.feed(1, 4 * i, [140.0] * 4, [0.9] * 4, True, clock.now - 3, now=clock.now)
    assert tracker.active is not None
    maternal = rec._mhr(tracker.active)
    assert maternal is not None and len(maternal) == 400 and maternal[5] == 80.5
    rec.stop()
    out.close()


@pytest.mark.parametrize("value", [0.5, 169, "24"])
def test_history_hours_is_checked(value):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"gateway": {"history_h": value}}, "perimon.toml")
    assert str(err.value).startswith("perimon.toml: [gateway] history_h")
    assert "\n" not in str(err.value)
    assert config_from_dict({"gateway": {"history_h": 48}}).gateway.history_h == 48.0
