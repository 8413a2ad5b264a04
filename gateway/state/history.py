"""What the gateway has published in the last 24 hours (configurable), kept for the nurse view,
the recording sessions and their reports, and the per-device settings that nurses and the
hospital set on the gateway.

`History.record` is called with every message the gateway publishes, as the outbox stored it
(gateway/app.py wraps `Gateway.publish`), so the nurse view shows exactly what the hospital
receives: the same FHR points with the same gaps, the same CTG findings, TcB readings and
alerts, never re-derived. Alert acknowledgements (who, when) are kept here and appended to an
audit file under the gateway's data_dir.

What was published is kept on disk (gateway/state/history_store.py, `{data_dir}/history.sqlite`)
and survives a restart or a crash (docs/reliability.md says what a power cut may take):

* CTG findings, TcB readings, movement marks, alerts and acknowledgements are written as they
  happen (a few a minute), and so is a status that changes the link, the probe's contact or the
  battery warning;
* the live trace (4 Hz points, about two messages a second per fetal monitor) is written in
  batches, every `FLUSH_S`, and other statuses every `STATUS_S`, so an SD card sees one small
  transaction per batch rather than one per message. What a crash takes from the last batch is
  still in the outbox, which keeps every device's last minute of trace whether sent or not
  (`Outbox.recent_trace`): a restarted gateway copies it back (`recent_trace` below) before it
  publishes anything new.

Memory holds only what is not written yet and, per device, its newest status and messages (for
the device list); windows of trace are read from the database.

Per-device settings live in gateway/state/settings.py, the audit file in gateway/state/audit.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from gateway.state.audit import AuditLog
from gateway.state.history_store import (
    BLOCK_SPAN_S,
    Block,
    HistoryStore,
    Message,
    Status,
    is_corrupt,
)
from gateway.state.settings import DeviceSettings
from gateway.times import iso_time, parse_time

log = logging.getLogger(__name__)

KEEP_S = 24 * 3600.0  # the default of `[gateway] history_h`
FLUSH_S = 10.0  # live trace is written this often; the outbox's recent trace (the last 240
# points, 60 s, of each device) covers what a crash takes from a batch
STATUS_S = 60.0  # device statuses (every 5 s each) are written this often, and at once when
# the link, the probe's contact or the battery warning changes
PRUNE_S = 60.0  # messages older than keep_s are deleted this often
MAX_PENDING = 20_000  # messages held while the database cannot be written (about 10 min of 7
# fetal monitors); beyond this the batch is dropped from the history (logged), never the outbox
TRACE_KINDS = ("fhr", "mhr")
STORED_KINDS = ("fhr", "mhr", "ctg", "tcb", "movement")
HISTORY_LOST = "history_lost"  # the alert raised when the history had to be started empty
EVENT_QUEUE = 2000  # events a page's live stream may fall behind before it is dropped
_SAME_S = 60.0  # a message published again is looked for this far either side of its time

RecentTrace = Callable[[str, int, str], list[bytes]]  # Outbox.recent_trace(device, boot, kind)


def span(kind: str, m: Message) -> tuple[float, float]:
    """The time a message covers (unix s): a trace message its points, others their time."""
    if kind in TRACE_KINDS:
        t0 = parse_time(m.get("t_start")) or 0.0
        return t0, t0 + m.get("count", 0) * m.get("interval_s", 0.0)
    t = parse_time(m.get("t")) or 0.0
    return t, t


def last_rate(messages: Iterable[Message]) -> tuple[str, float] | None:
    """(t_start of its message, bpm) of the last FHR point with a rate, newest message first."""
    for m in messages:
        for v in reversed(m.get("fhr_bpm") or []):
            if v is not None:
                return m["t_start"], v
    return None


def _block(dev: str, kind: str, msgs: list[Message], t_first: float, t_last: float) -> Block:
    boot = seq_last = None
    last = msgs[-1]
    if kind in TRACE_KINDS and isinstance(last.get("boot"), int):
        boot, seq_last = last["boot"], int(last["seq"]) + int(last.get("count", 1)) - 1
    return Block(dev, kind, list(msgs), t_first, t_last, boot, seq_last)


def _changes(old: Message | None, new: Message) -> bool:
    """A status that changes what the device list shows at a glance: written at once."""
    keys = ("link", "on_skin", "battery_low")
    return old is None or any(old.get(k) != new.get(k) for k in keys)


class DeviceHistory:
    """What the device list shows of one device without reading the database."""

    __slots__ = ("device_id", "last", "last_fhr", "seen", "status")

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.status: Message | None = None
        self.seen = 0.0  # when its newest status was recorded (unix s, the history's clock)
        self.last: dict[str, Message] = {}  # kind -> its newest message
        self.last_fhr: tuple[str, float] | None = None  # the last FHR with a rate

    def remember(self, kind: str, m: Message) -> None:
        self.last[kind] = m
        if kind == "fhr":
            self.last_fhr = last_rate([m]) or self.last_fhr


class History:
    """What the gateway published in the last `keep_s` seconds, on disk under `data_dir`
    (None: in memory), with alerts and their acknowledgements; live listeners for the page.

    `recent_trace` (the outbox's) fills in the trace a crash took from the last batch;
    `expect_store` says the gateway has run here before (its outbox exists), so a missing
    history file is a loss the nurses are told about. `clock` (unix s) times batches, pruning
    and acknowledgements."""

    def __init__(
        self,
        data_dir: Path | None = None,
        keep_s: float = KEEP_S,
        *,
        recent_trace: RecentTrace | None = None,
        expect_store: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keep_s = keep_s
        self.data_dir = data_dir
        self.clock = clock
        path = data_dir / "history.sqlite" if data_dir else None
        missing = path is not None and not path.exists()
        self._lock = threading.RLock()  # record and ack on the loop; a gateway that stops
        # ends recording sessions (and publishes them) from a worker thread
        self.store = HistoryStore(path)
        self.devices: dict[str, DeviceHistory] = {}
        self.alerts: dict[str, Message] = {}  # alert id -> record
        self.settings = DeviceSettings(data_dir / "devices.json" if data_dir else None)
        self.audit = AuditLog(data_dir)
        self.listeners: set[asyncio.Queue[Message]] = set()
        self.on_ack: Callable[[Message], None] | None = None
        # not written yet: batches of messages, statuses, alerts; when the oldest came
        self._pending: dict[tuple[str, str], list[Message]] = {}
        self._pending_status: dict[str, Status] = {}
        self._pending_alerts: dict[str, Message] = {}
        self._pending_n = 0
        self._pending_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._this_run: set[str] = set()  # alerts raised since this gateway started
        self._last_prune = 0.0
        self._status_written = self.clock()  # statuses were last written (or started)
        self.write_s = 0.0  # time spent writing (it runs on the event loop)
        self.writes = 0  # transactions
        self._load()
        if recent_trace is not None:
            self._catch_up(recent_trace)
        if self.store.lost is not None:
            self._lost(f"history.sqlite {self.store.lost}")
        elif missing and expect_store:
            self._lost("history.sqlite was missing (deleted, or the first start after an "
                       "update): started empty")  # fmt: skip
        self.flush()  # what was copied back, and the alert if any

    def device(self, device_id: str) -> DeviceHistory:
        d = self.devices.get(device_id)
        if d is None:
            d = self.devices[device_id] = DeviceHistory(device_id)
        return d

    # ---- starting: what the database holds, and what the outbox has beyond it ----

    def _load(self) -> None:
        try:
            for rec in self.store.alerts():
                self.alerts[rec["id"]] = rec
            for dev, (t, status) in self.store.statuses().items():
                d = self.device(dev)
                d.status, d.seen = status, t
            for dev, kind in self.store.kinds():
                d = self.device(dev)
                last = self.store.last(dev, kind)
                if last:
                    d.last[kind] = last[-1]
                if kind == "fhr":
                    blocks = self.store.blocks(dev, "fhr", 0.0, float("inf"), newest_first=True)
                    d.last_fhr = last_rate(m for _, _, b in blocks for m in reversed(b))
        except sqlite3.Error as exc:
            self.devices.clear()
            self.alerts.clear()
            self._unreadable(exc)

    def _catch_up(self, recent_trace: RecentTrace) -> None:
        """Trace the outbox holds beyond the newest batch written (a crash took the rest)."""
        n = 0
        try:
            for dev, kind in self.store.kinds():
                end = self.store.trace_end(dev, kind) if kind in TRACE_KINDS else None
                if end is None:
                    continue
                boot, last = end
                for raw in recent_trace(dev, boot, kind):
                    m = json.loads(raw)
                    if m.get("seq", -1) > last:
                        self._queue(dev, kind, m, self.clock())
                        self.device(dev).remember(kind, m)
                        n += 1
        except sqlite3.Error as exc:
            self._unreadable(exc)
        if n:
            log.info("history: %d trace messages copied back from the outbox", n)

    def _unreadable(self, exc: sqlite3.Error) -> None:
        """Starting, the database could not be read: a damaged one is started empty, one that
        fails otherwise is left alone and the history kept in memory (the nurses told)."""
        if is_corrupt(exc):
            self.store.rebuild(f"was damaged ({exc})")
        else:
            self.store.rebuild(f"cannot be read ({exc})", damaged=False)

    def _lost(self, why: str) -> None:
        """The history was started empty: the nurses are told, on this gateway only (the
        hospital's record is complete; nothing of this goes over MQTT)."""
        now = self.clock()
        rec: Message = {
            "id": f"gateway:alert:{HISTORY_LOST}:{int(now * 1000)}",
            "device_id": "gateway",
            "alert": HISTORY_LOST,
            "severity": "medium",
            "detail": f"The nurse view's history {why}. Earlier readings are with the "
            "hospital; new ones are kept again from now on.",
            "raised_at": iso_time(now),
            "cleared_at": None,
            "state": "raised",
            "acked_by": None,
            "acked_at": None,
        }
        self.alerts[rec["id"]] = rec
        self._this_run.add(rec["id"])
        self._pending_alerts[rec["id"]] = rec

    # ---- in: everything the gateway publishes ----

    def record(self, parts: tuple[str, ...], payload: Message) -> None:
        try:
            with self._lock:
                events = self._record(parts, payload)
        except Exception:  # the nurse view must never stop the gateway publishing
            log.exception("history: cannot record %s", "/".join(parts))
            return
        for event in events:
            self._notify(event)

    def _record(self, parts: tuple[str, ...], payload: Message) -> list[Message]:
        now = self.clock()
        events: list[Message] = []
        if len(parts) == 3 and parts[0] == "device":
            dev, kind = parts[1], parts[2]
            if kind == "status":
                d = self.device(dev)
                if _changes(d.status, payload):  # connected, disconnected...: written at once
                    self._write_now(statuses={dev: (now, payload)})
                else:
                    self._pending_status[dev] = (now, payload)
                    self._started(now)
                d.status, d.seen = payload, now
                events.append({"type": "status", "device_id": dev, "data": payload})
            elif kind in STORED_KINDS:
                if kind == "movement" and self._known(dev, kind, payload):
                    return events  # a mark sent again after a gateway restart: kept once
                d = self.device(dev)
                m = payload
                if kind == "ctg":
                    m = {**payload, "window_start": self._ctg_window_start(d, payload)}
                d.remember(kind, m)
                if kind in TRACE_KINDS:
                    self._queue(dev, kind, m, now)
                else:  # readings and findings: written at once
                    self._write_now(blocks=self._blocks(dev, kind, [m]))
                events.append({"type": kind, "device_id": dev, "data": m})
            elif kind == "alert":
                events += self._alert(payload)
                self._write_now(alerts=[e["data"] for e in events])
        if self._pending_since is not None and now - self._pending_since >= FLUSH_S:
            self.flush()
        if now - self._last_prune >= PRUNE_S:
            self._last_prune = now
            self.prune(now)
        self._arm_timer()
        return events

    def _known(self, dev: str, kind: str, m: Message) -> bool:
        """Whether a message with this msg_id is kept already, at about the same time (a device
        time mapped again after a restart, by a new time sync, may differ by milliseconds)."""
        t0, t1 = span(kind, m)
        kept = self.messages(dev, kind, t0 - _SAME_S, t1 + _SAME_S)
        return any(k.get("msg_id") == m.get("msg_id") for k in kept)

    def _queue(self, dev: str, kind: str, m: Message, now: float) -> None:
        self._pending.setdefault((dev, kind), []).append(m)
        self._pending_n += 1
        self._started(now)

    def _started(self, now: float) -> None:
        """Something is pending: the batch's age counts from the first of it."""
        if self._pending_since is None:
            self._pending_since = now

    def _arm_timer(self) -> None:
        """A batch is written after FLUSH_S even when nothing else is published."""
        if self._timer is not None or self._pending_since is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop (a worker thread, a tool): the next
            return  # record or close() writes it
        self._timer = loop.call_later(FLUSH_S, self._timer_due)

    def _timer_due(self) -> None:
        self._timer = None
        try:
            with self._lock:
                self.flush()
        except Exception:  # the nurse view must never stop the gateway publishing
            log.exception("history: cannot write")

    @staticmethod
    def _ctg_window_start(d: DeviceHistory, ctg: Message) -> str | None:
        """Wall time of the first point of the CTG window: the window ends with the last FHR
        point published (lost samples keep their time as gaps, so the span is exact)."""
        last = d.last.get("fhr")
        if last is None:
            return None
        t0 = parse_time(last.get("t_start"))
        if t0 is None:
            return None
        end = t0 + last["count"] * last["interval_s"]
        return iso_time(end - float(ctg.get("window_s") or 0))

    @staticmethod
    def alert_id(payload: Message) -> str:
        return str(payload["msg_id"]).rsplit(":", 1)[0]  # the same for raised and cleared

    def _alert(self, payload: Message) -> list[Message]:
        aid = self.alert_id(payload)
        rec = self.alerts.get(aid)
        events = []
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
            self._this_run.add(aid)
            events += self._replace_earlier(rec)
        if payload["state"] == "cleared":
            rec["state"] = "cleared"
            rec["cleared_at"] = payload["t"]
        else:
            rec["detail"] = payload["detail"]
        events.append({"type": "alert", "device_id": rec["device_id"], "data": rec})
        return events

    def _replace_earlier(self, new: Message) -> list[Message]:
        """A gateway raises a condition once until it clears; the same condition raised while
        an earlier alert of it is still open comes from a restarted gateway, which raises
        again what still holds. The earlier one is closed as replaced by the new one (its
        acknowledgement stays with it; the new one is acknowledged on its own)."""
        events = []
        same = (new["device_id"], new["alert"], "raised")
        for rec in self.alerts.values():
            if (rec["device_id"], rec["alert"], rec["state"]) == same and rec["id"] != new["id"]:
                rec["state"] = "cleared"
                rec["cleared_at"] = new["raised_at"]
                rec["replaced_by"] = new["id"]
                events.append({"type": "alert", "device_id": rec["device_id"], "data": rec})
        return events

    # ---- acknowledgement ----

    def ack(self, alert_id: str, who: str, source: str = "nurse") -> Message | None:
        """Record who acknowledged an alert and when; None if there is no such alert."""
        with self._lock:
            rec = self.alerts.get(alert_id)
            if rec is None:
                return None
            if rec["acked_by"] is not None:
                return rec
            rec["acked_by"] = who
            rec["acked_at"] = iso_time(self.clock())
            rec["acked_via"] = source
            self._write_now(alerts=[rec])
        self.audit.append({"event": "alert_ack", **rec})
        self._notify({"type": "alert", "device_id": rec["device_id"], "data": rec})
        if self.on_ack is not None:
            self.on_ack(rec)
        return rec

    # ---- writing and pruning ----

    def flush(self, statuses: bool = False) -> None:
        """Write the pending batch in one transaction: the live trace, and the devices' statuses
        when STATUS_S have passed since they were last written (or `statuses`). A batch that
        cannot be written (the disk full or read-only) waits for the next try, up to
        MAX_PENDING messages."""
        with self._lock:
            now = self.clock()
            blocks = [b for (dev, kind), msgs in self._pending.items()
                      for b in self._blocks(dev, kind, msgs)]  # fmt: skip
            due = statuses or now - self._status_written >= STATUS_S
            status = dict(self._pending_status) if due else {}
            alerts = list(self._pending_alerts.values())
            if not (blocks or status or alerts):
                self._pending_since = None if not self._pending_status else self._pending_since
                return
            if not self._write(blocks, status, alerts):
                self._pending_since = now  # tried now: again after FLUSH_S
                if self._pending_n > MAX_PENDING:
                    log.error("history: %d messages not kept (the outbox has them)",
                              self._pending_n)  # fmt: skip
                    self._pending.clear()
                    self._pending_n = 0
                return
            self._pending.clear()
            self._pending_n = 0
            for a in alerts:
                self._pending_alerts.pop(a["id"], None)
            if due:
                self._pending_status.clear()
                self._status_written = now
            self._pending_since = now if self._pending_status else None

    def _write_now(
        self,
        blocks: list[Block] | None = None,
        statuses: dict[str, Status] | None = None,
        alerts: list[Message] | None = None,
    ) -> None:
        """Readings, findings, alerts and acknowledgements, written as they happen (a few a
        minute): on their own, the pending batch left to its time. Kept pending if the
        database cannot be written."""
        if self._write(blocks or [], statuses or {}, alerts or []):
            return
        for b in blocks or []:
            for m in b.messages:
                self._queue(b.device, b.kind, m, self.clock())
        self._pending_status.update(statuses or {})
        self._pending_alerts.update((a["id"], a) for a in alerts or [])
        self._started(self.clock())

    def _write(self, blocks: list[Block], statuses: dict[str, Status],
               alerts: list[Message]) -> bool:  # fmt: skip
        """One transaction; False if the database cannot be written. A damaged one is started
        empty (the nurses told) and written again."""
        t0 = time.perf_counter()
        try:
            try:
                self.store.write(blocks, statuses, alerts)
            except sqlite3.Error as exc:
                if not is_corrupt(exc):
                    raise
                self._damaged(exc)
                self.store.write(blocks, statuses, alerts)
        except sqlite3.Error as exc:
            log.error("history: cannot write (%s); %d messages wait", exc, self._pending_n)
            return False
        self.write_s += time.perf_counter() - t0
        self.writes += 1
        return True

    def _damaged(self, exc: sqlite3.Error) -> None:
        """SQLite found the database damaged: start it empty, tell the nurses, and write into
        the new one, with the next batch, what is known now (alerts with their
        acknowledgements, statuses)."""
        self.store.rebuild(f"was damaged ({exc})")
        self._lost(f"history.sqlite {self.store.lost}")
        self._pending_alerts.update(self.alerts)
        self._pending_status.update(self._statuses())
        self._status_written = 0.0
        self._started(self.clock())

    def _statuses(self) -> dict[str, Status]:
        return {d.device_id: (d.seen, d.status) for d in self.devices.values()
                if d.status is not None}  # fmt: skip

    @staticmethod
    def _blocks(dev: str, kind: str, msgs: list[Message]) -> list[Block]:
        """A device's messages of one kind as blocks of at most BLOCK_SPAN_S each."""
        out: list[Block] = []
        chunk: list[Message] = []
        t_first = t_last = 0.0
        for m in msgs:
            t0, t1 = span(kind, m)
            if chunk and max(t1, t_last) - min(t0, t_first) > BLOCK_SPAN_S:
                out.append(_block(dev, kind, chunk, t_first, t_last))
                chunk = []
            t_first, t_last = (min(t0, t_first), max(t1, t_last)) if chunk else (t0, t1)
            chunk.append(m)
        if chunk:
            out.append(_block(dev, kind, chunk, t_first, t_last))
        return out

    def prune(self, now: float) -> None:
        """Forget what ended more than keep_s ago: messages, statuses, cleared alerts, and open
        alerts raised before this gateway started (no one will clear them)."""
        before = now - self.keep_s
        with self._lock:
            stale = [aid for aid, r in self.alerts.items()
                     if (parse_time(r["raised_at"]) or 0) < before
                     and (r["state"] == "cleared" or aid not in self._this_run)]  # fmt: skip
            for aid in stale:
                del self.alerts[aid]
                self._pending_alerts.pop(aid, None)
                self._this_run.discard(aid)
            for dev, d in list(self.devices.items()):
                ends = [span(kind, m)[1] for kind, m in d.last.items()]
                if max([d.seen, *ends]) < before and dev not in self._pending_status:
                    del self.devices[dev]
            try:
                self.store.prune(before, stale)
            except sqlite3.Error as exc:
                if not is_corrupt(exc):
                    log.error("history: cannot prune (%s)", exc)
                    return
                self._damaged(exc)
                self._arm_timer()

    def close(self) -> None:
        """Write what is pending and close the database (the gateway stops)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            try:
                self.flush(statuses=True)
            finally:
                self.store.close()

    # ---- out: queries and live events ----

    def messages(self, device_id: str, kind: str, since: float, until: float) -> list[Message]:
        """A device's messages of `kind` (fhr, mhr, ctg, tcb, movement) that overlap [since,
        until], in time order (as published)."""
        out: list[Message] = []

        def take(msgs: Iterable[Message]) -> None:
            for m in msgs:
                t0, t1 = span(kind, m)
                if t1 >= since and t0 <= until:
                    out.append(m)

        with self._lock:
            try:
                for t_first, t_last, block in self.store.blocks(device_id, kind, since, until):
                    if t_first >= since and t_last <= until:
                        out.extend(block)  # all of it within
                    else:
                        take(block)
            except sqlite3.Error as exc:
                out.clear()
                if not is_corrupt(exc):
                    log.error("history: cannot read %s %s (%s)", device_id, kind, exc)
                else:
                    self._damaged(exc)
                    self._arm_timer()
            take(self._pending.get((device_id, kind), []))
        return out

    def device_summary(self, device_id: str) -> Message:
        with self._lock:
            d = self.device(device_id)
            active = sorted(a["id"] for a in self.alerts.values()
                            if a["device_id"] == device_id and a["state"] == "raised")  # fmt: skip
            return {
                "device_id": device_id,
                "status": d.status,
                "settings": self.settings.get(device_id),
                "last_fhr": {"t": d.last_fhr[0], "bpm": d.last_fhr[1]} if d.last_fhr else None,
                "last_tcb": d.last.get("tcb"),
                "last_ctg": d.last.get("ctg"),
                "active_alerts": active,
            }

    def window(self, device_id: str, since: float, until: float) -> Message:
        with self._lock:
            alerts = [
                a
                for a in self.alerts.values()
                if a["device_id"] == device_id
                and (parse_time(a["raised_at"]) or 0) <= until
                and (a["cleared_at"] is None or (parse_time(a["cleared_at"]) or 0) >= since)
            ]
        return {
            "device_id": device_id,
            "since": since,
            "until": until,
            **{kind: self.messages(device_id, kind, since, until) for kind in STORED_KINDS},
            "alerts": alerts,
        }

    def subscribe(self) -> asyncio.Queue[Message]:
        q: asyncio.Queue[Message] = asyncio.Queue(maxsize=EVENT_QUEUE)
        self.listeners.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Message]) -> None:
        self.listeners.discard(q)

    def _notify(self, event: Message) -> None:
        for q in list(self.listeners):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:  # a stalled page: it reloads when it reconnects
                self.listeners.discard(q)  # its stream notices and closes; the page reloads
