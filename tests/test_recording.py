"""Recording sessions as a state machine, the schedule's slots, missed sessions, delivery and the
session report, without a broker (gateway/processing/recording/)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from gateway.processing import recording as r
from gateway.publish.outbox import Outbox
from gateway.state.history import History
from gateway.times import iso_time_or_none
from tests.harness.contract import validator

pytestmark = pytest.mark.unit

BATCH = 4  # points a batch, as the fetal processor publishes about once a second


def feed_minutes(tracker, minutes, t0, *, boot=1, first=1, fhr=140.0, on_skin=True, gap=None):
    """Feed `minutes` of 4 Hz points in 1 s batches; `gap` = (from_min, to_min) without a rate."""
    n = int(minutes * 240)
    for i in range(0, n, BATCH):
        t_min = i / 240
        v = np.nan if gap and gap[0] <= t_min < gap[1] else fhr
        pts = np.full(BATCH, v)
        t = t0 + i * 0.25
        tracker.feed(boot, first + i, pts, np.where(np.isnan(pts), 0, 0.9), on_skin, t, now=t)
    return t0 + n * 0.25


def test_a_prescribed_session_completes_at_its_duration_and_counts_good_minutes():
    ended, completed = [], []
    tr = r.SessionTracker("fh-01", lambda: 20)
    tr.on_end = lambda rec, a: ended.append(rec)
    tr.on_complete = completed.append
    t0 = 1_800_000_000.0
    # nothing starts while the probe is off the skin, or without a fetal rate
    tr.feed(1, 1, np.full(4, 140.0), np.ones(4), False, t0, now=t0)
    tr.feed(1, 5, np.full(4, np.nan), np.zeros(4), True, t0 + 1, now=t0 + 1)
    assert tr.active is None
    feed_minutes(tr, 12, t0, first=9, gap=(5, 7))
    p = tr.progress()
    assert p["recorded_min"] == 12.0 and p["prescribed_min"] == 20 and p["good_signal_min"] == 10.0
    assert p["heart_rate_min"] == 10 and p["signal"] == "good" and not ended
    # 20 minutes recorded, 18 of them with a heart rate: not complete (before, it was)
    end = feed_minutes(tr, 8, t0 + 720, first=9 + 12 * 240)
    assert not ended and tr.progress()["heart_rate_min"] == 18
    feed_minutes(tr, 3, end, first=9 + 20 * 240)
    assert len(ended) == 1 and completed == ended
    rec = ended[0]
    assert rec["status"] == "complete" and rec["end_reason"] == "duration_reached"
    # cut at the end of the minute that made the 20th with a heart rate
    assert rec["recorded_min"] == 22.0 and rec["good_signal_min"] == 20.0
    assert rec["heart_rate_min"] == 20
    assert rec["session_id"] == "fh-01:1:9" and rec["msg_id"] == "fh-01:1:session:9"
    assert rec["last_point"] - rec["first_point"] + 1 == 22 * 240
    assert rec["start"].startswith("2027-01-15T08:00:00")
    assert tr.active is None  # the probe kept on after completion records no new session
    end = feed_minutes(tr, 2, t0 + 1382, first=9000)
    assert tr.active is None
    tr.feed(1, 9480, np.full(4, np.nan), np.zeros(4), False, end, now=end)  # taken off
    feed_minutes(tr, 0.1, end + 5, first=9484)
    assert tr.active is not None  # put on again: a new session


def test_a_minute_counts_when_most_of_it_has_a_heart_rate():
    """docs/home.md, "Sessions": a whole minute of the session (240 points from its first)
    counts when more than half of its points carry a rate; lost points count as without."""
    minute = r.tracker.POINTS_PER_MIN
    assert minute == 240
    half = [140.0] * 120 + [np.nan] * 120
    assert r.heart_rate_minutes(half) == 0  # half is not most
    assert r.heart_rate_minutes([140.0] * 121 + [np.nan] * 119) == 1
    assert r.heart_rate_minutes([140.0] * 239) == 0  # not yet a whole minute
    assert r.heart_rate_minutes([140.0] * 240 + half + [140.0] * 240 + [140.0] * 200) == 2
    assert r.heart_rate_minutes([]) == 0
    # the tracker counts the same, batch by batch, and a gap of lost points counts as no rate
    tr = r.SessionTracker("fh-01", lambda: 3)
    ended = []
    tr.on_end = lambda rec, a: ended.append(rec)
    t0 = 1_800_000_000.0
    end = feed_minutes(tr, 1.5, t0)
    assert tr.progress()["heart_rate_min"] == 1
    # points 361..480 never arrived (lost on the radio): the second minute has 120 with a rate
    end = feed_minutes(tr, 1, end + 30, first=1 + 480)
    assert tr.progress()["heart_rate_min"] == 2 and tr.progress()["recorded_min"] == 3.0
    feed_minutes(tr, 1, end, first=1 + 720)
    (rec,) = ended
    assert rec["status"] == "complete" and rec["heart_rate_min"] == 3
    assert rec["recorded_min"] == 4.0  # minutes 1, 3 and 4 had a rate; minute 2 did not
    # a prescription of part of a minute asks for the whole minute
    tr = r.SessionTracker("fh-01", lambda: 1.5)
    tr.on_end = lambda rec, a: ended.append(rec)
    feed_minutes(tr, 1.75, t0 + 3600)
    assert tr.active is not None
    feed_minutes(tr, 0.5, t0 + 3600 + 105, first=1 + 420)
    assert ended[-1]["status"] == "complete" and ended[-1]["recorded_min"] == 2.0


def test_a_session_that_never_reaches_its_prescription_ends_at_twice_its_length():
    """A probe left on with a poor signal does not record for ever: after twice the
    prescription without enough minutes with a heart rate the session ends short
    (`time_limit`), and the next one starts only after the probe was taken off."""
    ended = []
    tr = r.SessionTracker("fh-01", lambda: 5)
    tr.on_end = lambda rec, a: ended.append(rec)
    t0 = 1_800_000_000.0
    end = feed_minutes(tr, 9.9, t0, gap=(1, 9.9))  # 1 minute with a rate, then none
    assert not ended and tr.active is not None
    end = feed_minutes(tr, 0.2, end, first=1 + round(9.9 * 240), gap=(0, 1))
    (rec,) = ended
    assert rec["status"] == "short" and rec["end_reason"] == "time_limit"
    assert rec["recorded_min"] == 10.0 and rec["heart_rate_min"] == 1
    assert not list(validator("session").iter_errors({**rec, "seq": 1}))
    feed_minutes(tr, 1, end, first=1 + 10 * 240 + 48)  # still on: no new session
    assert tr.active is None and len(ended) == 1


def test_session_messages_carry_minutes_with_a_heart_rate_in_the_contract():
    """docs/schemas/session.schema.json: `heart_rate_min` (an integer) on finished and missed
    sessions; a message of a gateway that did not count them (no field) is still valid."""
    v = validator("session")
    tr = r.SessionTracker("fh-01", lambda: 2)
    ended = []
    tr.on_end = lambda rec, a: ended.append(rec)
    feed_minutes(tr, 3, 1_800_000_000.0, gap=(0.2, 0.7))
    slot = r.Slot(1_800_000_000.0, 1_799_996_400.0, 1_800_043_200.0)
    sched = r.check_schedule({"sessions_per_day": 1, "duration_min": 2, "risk_colour": "red"})
    missed = r.missed_record("fh-01", slot, sched, 1_800_050_000.0)
    for rec in (ended[0], missed):
        msg = {**rec, "seq": 1}
        assert not list(v.iter_errors(msg)), msg
        old = {k: x for k, x in msg.items() if k != "heart_rate_min"}
        assert not list(v.iter_errors(old))
        for bad in (-1, 1.5, "2"):
            assert list(v.iter_errors({**msg, "heart_rate_min": bad})), bad
    assert ended[0]["heart_rate_min"] == 2 and ended[0]["recorded_min"] == 3.0
    assert missed["heart_rate_min"] == 0


def test_probe_off_link_lost_and_restart_end_a_session_and_blips_are_not_kept():
    ended = []
    tr = r.SessionTracker("fh-01", lambda: 20)
    tr.on_end = lambda rec, a: ended.append(rec)
    t0 = 1_800_000_000.0
    end = feed_minutes(tr, 3, t0)
    assert tr.progress()["signal"] == "good"
    tr.feed(1, 1 + 3 * 240, np.full(4, np.nan), np.zeros(4), False, end, now=end)
    assert tr.progress()["signal"] == "off_skin"
    tr.tick(end + r.OFF_SKIN_GRACE_S - 1)
    assert tr.active is not None  # lifted briefly to move it: the session goes on
    tr.tick(end + r.OFF_SKIN_GRACE_S + 1)
    assert [e["end_reason"] for e in ended] == ["probe_off"]
    assert ended[0]["status"] == "short"

    end = feed_minutes(tr, 2, t0 + 600, first=5000)
    tr.tick(end + r.LINK_LOST_S - 5)
    assert tr.active is not None
    tr.tick(end + r.LINK_LOST_S + 1)
    assert ended[-1]["end_reason"] == "link_lost" and ended[-1]["recorded_min"] == 2.0

    feed_minutes(tr, 2, t0 + 900, boot=1, first=9000)
    feed_minutes(tr, 0.5, t0 + 1100, boot=2, first=1)  # the device rebooted
    assert ended[-1]["end_reason"] == "device_restarted"
    n = len(ended)
    tr.end("gateway_stopped")  # 30 s: a probe touched and removed is no session
    assert len(ended) == n


def test_weak_signal_asks_to_move_the_probe():
    tr = r.SessionTracker("fh-01")
    t0 = 1_800_000_000.0
    feed_minutes(tr, 2, t0, gap=(1.9, 2.0))
    assert tr.progress()["signal"] == "weak" and tr.progress()["prescribed_min"] is None


@pytest.mark.parametrize(
    "cmd, needle",
    [
        ({"sessions_per_day": 1, "sessions_per_week": 2, "duration_min": 20, "risk_colour": "red"},
         "exactly one"),
        ({"sessions_per_day": 1, "duration_min": 20, "risk_colour": "blue"}, "risk_colour"),
        ({"sessions_per_day": 1, "duration_min": 500, "risk_colour": "red"}, "duration_min"),
        ({"sessions_per_day": 2, "duration_min": 20, "risk_colour": "red", "times": ["09:00"]},
         "times"),
        ({"sessions_per_day": 1, "duration_min": 20, "risk_colour": "red", "from_ga_weeks": 32},
         "ga_weeks"),
        ({"sessions_per_day": True, "duration_min": 20, "risk_colour": "red"}, "sessions_per_day"),
    ],
)  # fmt: skip
def test_schedule_validation_names_the_problem(cmd, needle):
    with pytest.raises(ValueError, match=needle):
        r.check_schedule(cmd)


def test_schedule_starts_at_the_prescribed_gestational_week():
    now = datetime(2027, 3, 1, 10, 0).timestamp()
    s = r.check_schedule({"sessions_per_day": 1, "duration_min": 20, "from_ga_weeks": 32,
                          "ga_weeks": 30, "risk_colour": "orange"}, now)  # fmt: skip
    assert s["starts_on"] == "2027-03-15" and s["times"] == ["09:00"]
    week = r.check_schedule({"sessions_per_week": 3, "duration_min": 30, "risk_colour": "yellow",
                             "times": ["19:30"]}, now)  # fmt: skip
    got = r.slots(week, now, now + 14 * 86400)
    assert 5 <= len(got) <= 7
    assert all(datetime.fromtimestamp(s.due).strftime("%H:%M") == "19:30" for s in got)
    assert all(s.opens < s.due < s.closes for s in got)


class FakeGateway:
    def __init__(self, tmp_path):
        self.cfg = SimpleNamespace(data_dir=tmp_path, web=SimpleNamespace(help_phone="120"))
        self.outbox = Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0)
        self.history = History(None)
        self.sessions: dict = {}
        self.published: list[tuple[tuple, dict]] = []

    def publish(self, parts, payload, **kw):
        self.published.append((parts, payload))
        self.outbox.add("/".join(parts), json.dumps(payload).encode(), msg_id=payload.get("msg_id"),
                        retain=False, priority=2)  # fmt: skip


def test_missed_sessions_are_published_once_and_reminded(tmp_path):
    gw = FakeGateway(tmp_path)
    rec = r.Recordings(tmp_path, gw.outbox, gw.history, gw.publish)
    set_at = datetime(2027, 3, 1, 7, 0).timestamp()
    sched = r.check_schedule({"sessions_per_day": 1, "duration_min": 20, "risk_colour": "red",
                              "times": ["09:00"]}, set_at)  # fmt: skip
    rec.store.set_schedule("fh-01", sched)
    nine = datetime(2027, 3, 1, 9, 0).timestamp()
    plan = rec.plan("fh-01", nine + 600)
    assert plan["reminder"] == {"kind": "due", "due": iso_time_or_none(nine)}
    assert plan["next_due"] == iso_time_or_none(nine + 86400)
    # a complete session on day 1 keeps the slot; nothing on day 2
    tr = rec.tracker("fh-01")
    feed_minutes(tr, 20, nine + 300)
    assert gw.published[-1][1]["status"] == "complete"
    day3 = nine + 2 * 86400 + 3600
    rec.check_missed(day3)
    missed = [p for _, p in gw.published if p["status"] == "missed"]
    assert [m["due"] for m in missed] == [iso_time_or_none(nine + 86400)]
    assert missed[0]["risk_colour"] == "red" and missed[0]["prescribed_min"] == 20
    rec.check_missed(day3 + 60)
    again = r.Recordings(
        tmp_path, gw.outbox, gw.history, gw.publish
    )  # a restarted gateway does not report it twice
    again.check_missed(day3 + 120)
    assert len([p for _, p in gw.published if p["status"] == "missed"]) == 1
    assert again.plan("fh-01", day3)["reminder"]["kind"] in ("due", "missed")
    assert again.plan("fh-01", nine + 86400 + 13 * 3600)["reminder"] == {
        "kind": "missed", "due": iso_time_or_none(nine + 86400)}  # fmt: skip
    rec.stop()


def test_delivered_once_the_broker_acknowledged_every_message_and_the_report_exists(tmp_path):
    gw = FakeGateway(tmp_path)
    rec = r.Recordings(tmp_path, gw.outbox, gw.history, gw.publish)
    completed = []
    rec.on_session_complete = lambda dev, s: completed.append((dev, s["session_id"]))
    rec.store.set_schedule("fh-01", r.check_schedule(
        {"sessions_per_day": 1, "duration_min": 2, "risk_colour": "orange"}))  # fmt: skip
    tr = rec.tracker("fh-01")
    t0 = time.time() - 200
    for i in range(0, 2 * 240 + 8, BATCH):  # the processor's own messages go first
        gw.publish(("device", "fh-01", "fhr"), {"msg_id": f"fh-01:1:fhr:{1 + i}"})
        feed_minutes(tr, BATCH / 240, t0 + i / 4, first=1 + i)
    assert completed == [("fh-01", "fh-01:1:1")]
    (s,) = rec.store.sessions("fh-01")
    assert s["status"] == "complete" and s["delivered"] is False
    rec.check_delivered()
    assert rec.store.get("fh-01:1:1")["delivered"] is False  # nothing acknowledged yet
    rows = gw.outbox.pending(0, 10_000)
    gw.outbox.ack([row.id for row in rows if row.msg_id < "fh-01:1:fhr:3"])
    rec.check_delivered()
    assert rec.store.get("fh-01:1:1")["delivered"] is False  # some still waiting
    gw.outbox.ack([row.id for row in rows])
    rec.check_delivered()
    assert rec.store.get("fh-01:1:1")["delivered"] is True
    deadline = time.monotonic() + 30
    while rec.pending_reports and time.monotonic() < deadline:
        time.sleep(0.05)
    pdf = rec.report_pdf("fh-01:1:1")
    assert pdf is not None and pdf.startswith(b"%PDF")
    assert rec.report_pdf("fh-01:1:999") is None
    rec.stop()


def test_mother_links_are_random_per_device_and_renewable(tmp_path):
    store = r.SessionStore(tmp_path / "s.sqlite")
    a, b = store.mother_token("fh-01"), store.mother_token("fh-02")
    assert a != b and len(a) >= 32 and store.mother_token("fh-01") == a
    assert store.device_for_token(a) == "fh-01" and store.device_for_token("nope") is None
    c = store.renew_mother_token("fh-01")
    assert c != a and store.device_for_token(a) is None and store.device_for_token(c) == "fh-01"


def test_slots_split_a_day_between_its_sessions():
    s = r.check_schedule({"sessions_per_day": 2, "duration_min": 20, "risk_colour": "red"},
                         datetime(2027, 3, 1, 6).timestamp())  # fmt: skip
    day = datetime(2027, 3, 2)
    got = r.slots(s, day.timestamp(), (day + timedelta(days=1)).timestamp() - 1)
    dues = [datetime.fromtimestamp(x.due).strftime("%d %H:%M") for x in got]
    assert "02 09:00" in dues and "02 18:00" in dues
    nine = [x for x in got if datetime.fromtimestamp(x.due).strftime("%d %H:%M") == "02 09:00"][0]
    assert nine.closes <= datetime(2027, 3, 2, 18).timestamp() - 3600 + 1
