"""Sessions end to end: real firmware -> gateway -> Mosquitto. A prescribed session completes,
is published on the session topic (validated against the contract), is confirmed delivered, and
its report PDF is fetched over the MQTT command channel, rendered to PNG and checked."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import matplotlib.image as mpimg
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.processing import recording, report
from simulators.fleet import DeviceSpec
from tests.harness.chain import run_chain
from tests.harness.contract import validator
from tests.harness.mqtt import PREFIX
from tests.harness.paths import ARTIFACTS
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system

REPLY_TO = "hospital/replies/home-visits"


class Hospital:
    """Sends commands and keeps raw answers: (payload bytes, content type, correlation)."""

    def __init__(self, broker) -> None:
        self.got: list[tuple[bytes, str, bytes]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(REPLY_TO, qos=1)
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = lambda c, u, m: self.got.append(
            (bytes(m.payload), m.properties.ContentType, m.properties.CorrelationData)
        )
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self.ready.wait(5)

    def command(self, body: dict, corr: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = REPLY_TO
        props.CorrelationData = corr
        topic = f"{PREFIX}/gw-test/device/fh-01/cmd"
        self.c.publish(topic, json.dumps(body), 1, False, props).wait_for_publish(5)

    async def answer(self, corr: bytes, timeout_s: float = 15.0):
        def answered():
            return next(((payload, ctype) for payload, ctype, c in self.got if c == corr), None)

        return await eventually_async(answered, timeout_s, f"no answer to {corr!r}")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_a_prescribed_session_is_published_delivered_and_its_report_fetched(
    broker, tmp_path, monkeypatch
):
    monkeypatch.setattr(recording.tracker, "MIN_SESSION_S", 5.0)
    monkeypatch.setattr(recording.service, "TICK_S", 0.5)
    # a 15 s prescription keeps the test short (the command itself allows 1 to 120 minutes):
    # a session's "minute" is 15 s here, so that one minute with a heart rate completes it
    monkeypatch.setattr(recording.tracker, "POINTS_PER_MIN", 60)
    store = recording.SessionStore(tmp_path / "gw" / "sessions.sqlite")
    short = recording.check_schedule({"sessions_per_day": 1, "duration_min": 20,
                                      "risk_colour": "orange"})  # fmt: skip
    store.set_schedule("fh-01", {**short, "duration_min": 0.25})
    store.close()
    hospital = Hospital(broker)
    specs = [DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0, snr_db=15)]
    seen: dict = {}

    async def during(gw, fleet):
        completed = []
        rec = gw.recordings
        rec.on_session_complete = lambda dev, s: completed.append((dev, s["session_id"]))

        def done():
            return [s for s in rec.store.sessions("fh-01") if s["status"] == "complete"]

        (s,) = (await eventually_async(done, 45, "a complete session"))[:1]
        seen["completed"] = list(completed)
        seen["session"] = s
        await eventually_async(lambda: rec.store.get(s["session_id"])["report"], 30, "the report")
        await eventually_async(lambda: rec.store.get(s["session_id"])["delivered"], 20, "delivery")
        hospital.command({"command": "get_report", "session_id": s["session_id"]}, b"r-1")
        hospital.command({"command": "get_report", "session_id": "fh-01:9:9"}, b"r-2")
        hospital.command(
            {
                "command": "set_schedule",
                "sessions_per_day": 1,
                "duration_min": 20,
                "from_ga_weeks": 32,
                "ga_weeks": 33,
                "risk_colour": "orange",
            },
            b"s-1",
        )
        hospital.command({"command": "set_schedule", "sessions_per_day": 1, "duration_min": 20,
                          "risk_colour": "blue"}, b"s-2")  # fmt: skip
        hospital.command({"command": "get_schedule"}, b"s-3")
        for corr in (b"r-1", b"r-2", b"s-1", b"s-2", b"s-3"):
            seen[corr] = await hospital.answer(corr)

    sub, gw = run_chain(broker, tmp_path, specs, seconds=0, during=during)
    hospital.close()

    s = seen["session"]
    assert seen["completed"] == [("fh-01", s["session_id"])]  # the device-feedback hook
    assert s["recorded_min"] == 0.25 and 0.125 < s["good_signal_min"] <= 0.25
    assert s["heart_rate_min"] == 1  # the prescription, in minutes with a heart rate
    published = sub.of("fh-01", "session")
    assert published and published[0]["session_id"] == s["session_id"]
    v = validator("session")
    for m in published:
        assert not list(v.iter_errors(m)), m
    assert published[0]["heart_rate_min"] == 1 and published[0]["status"] == "complete"
    # the session's points are the FHR messages' points: first..last, 15 s at 4 Hz
    assert published[0]["last_point"] - published[0]["first_point"] + 1 == 60

    pdf, ctype = seen[b"r-1"]
    assert ctype == "application/pdf" and pdf.startswith(b"%PDF")
    err = json.loads(seen[b"r-2"][0])
    assert err["status"] == "rejected" and err["error"] == "unknown session"
    ok = json.loads(seen[b"s-1"][0])
    assert ok["status"] == "ok" and ok["schedule"]["risk_colour"] == "orange"
    assert ok["schedule"]["sessions_per_day"] == 1 and ok["schedule"]["from_ga_weeks"] == 32
    bad = json.loads(seen[b"s-2"][0])
    assert bad["status"] == "rejected" and "risk_colour" in bad["error"]
    assert json.loads(seen[b"s-3"][0])["schedule"]["duration_min"] == 20
    resp_v = validator("command-response")
    for corr in (b"r-2", b"s-1", b"s-2", b"s-3"):
        assert not list(resp_v.iter_errors(json.loads(seen[corr][0])))

    # the report, as a person would look at it: A4 portrait with a trace on the grid
    assert shutil.which("pdftoppm")
    (tmp_path / "r.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "100", "-png", "-singlefile", str(tmp_path / "r.pdf"),
                    str(tmp_path / "r")], check=True)  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "r.png", ARTIFACTS / "session-report-from-mqtt.png")
    img = mpimg.imread(tmp_path / "r.png")
    h, w = img.shape[:2]
    assert abs(w - report.PAGE_W_CM / 2.54 * 100) < 3
    assert abs(h - report.PAGE_H_CM / 2.54 * 100) < 3
    rgb = img[..., :3]
    grid = (rgb[..., 0] > 0.85) & (rgb[..., 1] < 0.75) & (rgb[..., 2] < 0.75)  # light red rules
    ys, xs = np.nonzero(grid)
    assert len(ys) > 100, "no CTG grid"
    # the strip to scale: its frame spans the chart's range at 20 bpm/cm (50..210 bpm: 8 cm);
    # the FHR trace is black inside it
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    dark = rgb[:, left : right + 1].sum(axis=2) < 0.6
    frame = np.nonzero(dark.sum(axis=1) > 0.8 * (right - left + 1))[0]  # the top and bottom edge
    chart_cm = (report.FHR_MAX_BPM - report.FHR_MIN_BPM) / 20
    assert abs((frame.max() - frame.min()) / (100 / 2.54) - chart_cm) < 0.2
    inside = rgb[top:bottom, left : right + 1].sum(axis=2) < 0.6
    assert inside.sum() > 10, "no trace in the strip"
