"""What the gateway has published in the last 24 hours, kept for the nurse view, and the
per-device settings that nurses and the hospital set on the gateway.

`History.record` is called with every message the gateway publishes (gateway/app.py wraps
`Gateway.publish`), so the nurse view shows exactly what the hospital receives: the same FHR
points with the same gaps, the same CTG findings, TcB readings and alerts, never re-derived.
Alert acknowledgements (who, when) are kept here and appended to an audit file under the
gateway's data_dir. Readings are kept in memory: a gateway restart starts an empty history
(the hospital holds the record).

Per-device settings live in gateway/state/settings.py, the audit file in gateway/state/audit.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from gateway.state.audit import AuditLog
from gateway.state.settings import DeviceSettings
from gateway.times import iso_time, parse_time

log = logging.getLogger(__name__)

KEEP_S = 24 * 3600.0


class DeviceHistory:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.status: dict | None = None
        self.fhr: deque[dict] = deque()
        self.mhr: deque[dict] = deque()
        self.ctg: deque[dict] = deque()
        self.tcb: deque[dict] = deque()

    def prune(self, before: float) -> None:
        for q, key in ((self.fhr, "t_start"), (self.mhr, "t_start"), (self.ctg, "t"),
                       (self.tcb, "t")):  # fmt: skip
            while q and (parse_time(q[0].get(key)) or 0) < before:
                q.popleft()


class History:
    def __init__(self, data_dir: Path | None = None, keep_s: float = KEEP_S) -> None:
        self.keep_s = keep_s
        self.data_dir = data_dir
        self.devices: dict[str, DeviceHistory] = {}
        self.alerts: dict[str, dict] = {}  # alert id -> record
        self.settings = DeviceSettings(data_dir / "devices.json" if data_dir else None)
        self.audit = AuditLog(data_dir)
        self.listeners: set[asyncio.Queue] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_ack: Callable[[dict], None] | None = None
        self._last_prune = 0.0

    def device(self, device_id: str) -> DeviceHistory:
        d = self.devices.get(device_id)
        if d is None:
            d = self.devices[device_id] = DeviceHistory(device_id)
        return d

    # ---- in: everything the gateway publishes ----

    def record(self, parts: tuple[str, ...], payload: dict) -> None:
        try:
            self._record(parts, payload)
        except Exception:  # the nurse view must never stop the gateway publishing
            log.exception("history: cannot record %s", "/".join(parts))

    def _record(self, parts: tuple[str, ...], payload: dict) -> None:
        if len(parts) != 3 or parts[0] != "device":
            return
        dev, kind = parts[1], parts[2]
        d = self.device(dev)
        event: dict | None = None
        if kind == "status":
            d.status = payload
            event = {"type": "status", "device_id": dev, "data": payload}
        elif kind in ("fhr", "mhr"):
            (d.fhr if kind == "fhr" else d.mhr).append(payload)
            event = {"type": kind, "device_id": dev, "data": payload}
        elif kind == "ctg":
            c = dict(payload)
            c["window_start"] = self._ctg_window_start(d, payload)
            d.ctg.append(c)
            event = {"type": "ctg", "device_id": dev, "data": c}
        elif kind == "tcb":
            d.tcb.append(payload)
            event = {"type": "tcb", "device_id": dev, "data": payload}
        elif kind == "alert":
            rec = self._alert(payload)
            event = {"type": "alert", "device_id": dev, "data": rec}
        now = time.time()
        if now - self._last_prune > 60:
            self._last_prune = now
            self.prune(now)
        if event is not None:
            self._notify(event)

    @staticmethod
    def _ctg_window_start(d: DeviceHistory, ctg: dict) -> str | None:
        """Wall time of the first point of the CTG window: the window ends with the last FHR
        point published (lost samples keep their time as gaps, so the span is exact)."""
        if not d.fhr:
            return None
        last = d.fhr[-1]
        t0 = parse_time(last.get("t_start"))
        if t0 is None:
            return None
        end = t0 + last["count"] * last["interval_s"]
        return iso_time(end - float(ctg.get("window_s") or 0))

    @staticmethod
    def alert_id(payload: dict) -> str:
        return payload["msg_id"].rsplit(":", 1)[0]  # the same for raised and cleared

    def _alert(self, payload: dict) -> dict:
        aid = self.alert_id(payload)
        rec = self.alerts.get(aid)
        if rec is None:
            rec = self.alerts[aid] = {
                "id": aid,
                "device_id": payload["device_id"],
                "alert": payload["alert"],
                "severity": payload["severity"],
                "detail": payload["detail"],
                "raised_at": payload["raised_at"],
                "cleared_at": None,
                "state": "raised",
                "acked_by": None,
                "acked_at": None,
            }
        if payload["state"] == "cleared":
            rec["state"] = "cleared"
            rec["cleared_at"] = payload["t"]
        else:
            rec["detail"] = payload["detail"]
        return rec

    # ---- acknowledgement ----

    def ack(self, alert_id: str, who: str, source: str = "nurse") -> dict | None:
        """Record who acknowledged an alert and when; None if there is no such alert."""
        rec = self.alerts.get(alert_id)
        if rec is None:
            return None
        if rec["acked_by"] is None:
            rec["acked_by"] = who
            rec["acked_at"] = iso_time(time.time())
            rec["acked_via"] = source
            self.audit.append({"event": "alert_ack", **rec})
            self._notify({"type": "alert", "device_id": rec["device_id"], "data": rec})
            if self.on_ack is not None:
                self.on_ack(rec)
        return rec

    # ---- out: queries and live events ----

    def prune(self, now: float) -> None:
        before = now - self.keep_s
        for d in self.devices.values():
            d.prune(before)
        for aid in [a for a, r in self.alerts.items() if (parse_time(r["raised_at"]) or 0) < before
                    and r["state"] == "cleared"]:  # fmt: skip
            del self.alerts[aid]

    def device_summary(self, device_id: str) -> dict:
        d = self.device(device_id)
        last_fhr = next(
            (
                (m["t_start"], v)
                for m in reversed(d.fhr)
                for v in reversed(m["fhr_bpm"])
                if v is not None
            ),
            None,
        )
        return {
            "device_id": device_id,
            "status": d.status,
            "settings": self.settings.get(device_id),
            "last_fhr": {"t": last_fhr[0], "bpm": last_fhr[1]} if last_fhr else None,
            "last_tcb": d.tcb[-1] if d.tcb else None,
            "last_ctg": d.ctg[-1] if d.ctg else None,
            "active_alerts": sorted(
                (
                    a["id"]
                    for a in self.alerts.values()
                    if a["device_id"] == device_id and a["state"] == "raised"
                ),
            ),  # fmt: skip
        }

    def window(self, device_id: str, since: float, until: float) -> dict:
        d = self.device(device_id)

        def within(q, key: str, span: bool = False) -> list[dict]:
            out = []
            for m in q:
                t = parse_time(m.get(key)) or 0
                end = t + (m["count"] * m["interval_s"] if span else 0)
                if end >= since and t <= until:
                    out.append(m)
            return out

        return {
            "device_id": device_id,
            "since": since,
            "until": until,
            "fhr": within(d.fhr, "t_start", True),
            "mhr": within(d.mhr, "t_start", True),
            "ctg": within(d.ctg, "t"),
            "tcb": within(d.tcb, "t"),
            "alerts": [
                a
                for a in self.alerts.values()
                if a["device_id"] == device_id
                and (parse_time(a["raised_at"]) or 0) <= until
                and (a["cleared_at"] is None or (parse_time(a["cleared_at"]) or 0) >= since)
            ],
        }

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=2000)
        self.listeners.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self.listeners.discard(q)

    def _notify(self, event: dict) -> None:
        for q in list(self.listeners):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:  # a stalled page: it reloads when it reconnects
                self.listeners.discard(q)  # its stream notices and closes; the page reloads
