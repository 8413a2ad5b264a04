"""The gateway: devices in through a transport, readings out over MQTT.

`Gateway(config).run()` is the whole public surface; everything else is wiring.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

from gateway import protocol as p
from gateway import systemd
from gateway.config import Config
from gateway.device.auth import FrameAuth, report_failed_frames, report_verification
from gateway.device.enrolment import Enrolment, EnrolmentError, enrolment_path
from gateway.device.session import DeviceSession
from gateway.processing.fhir import TRACE_POINTS_PER_OBSERVATION
from gateway.publish.mqtt import Publisher, iso_time
from gateway.publish.outbox import Outbox, resume_plan
from gateway.state.history import History
from gateway.transports.base import DeviceLink, Transport

log = logging.getLogger(__name__)

_TICK_S = 0.25
_MAX_UNKNOWN = 32  # refused device ids listed at most (an attacker may invent many)
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def make_transport(cfg: Config) -> Transport:
    if cfg.radio.transport == "sim":
        from gateway.transports.simradio import SimRadioTransport

        return SimRadioTransport(cfg.radio.listen, cfg.radio.att_mtu)
    if cfg.radio.transport == "ble":
        from gateway.transports.ble import BleTransport, parse_ids

        r = cfg.radio
        return BleTransport(r.ble_adapter, r.ble_max_connections, parse_ids(r.enrolled),
                            r.ble_scan_mode)  # fmt: skip
    if cfg.radio.transport == "serial":
        from gateway.transports.serial import SerialTransport

        return SerialTransport(cfg.radio.serial_ports.split(","), cfg.radio.serial_baud)
    raise ValueError(f"unknown transport {cfg.radio.transport!r}")


class Gateway:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.outbox = Outbox(cfg.outbox_path, cfg.outbox.max_bytes, cfg.outbox.max_age_h * 3600,
                             recent_points=TRACE_POINTS_PER_OBSERVATION)  # fmt: skip
        self.publisher = Publisher(cfg.mqtt, cfg.gateway.id, self.outbox,
                                   status_interval_s=cfg.processing.status_interval_s)  # fmt: skip
        self.transport = make_transport(cfg)
        self.sessions: dict[str, DeviceSession] = {}
        self.processors: dict[str, object] = {}
        self.ready = asyncio.Event()
        self.history = History(cfg.data_dir)  # what was published, for the nurse view
        for dev_id, saved in self.history.settings.values.items():
            baby = {k: saved[k] for k in ("label", "birth_time", "ga_weeks", "risk_factors")
                    if k in saved}  # fmt: skip
            self.cfg.devices.setdefault(dev_id, {}).update(baby)
        self.web = None
        self.downlink = None
        self.enrolment = Enrolment(enrolment_path(cfg))
        self.unknown: dict[str, dict] = {}  # refused devices, reported on MQTT

    def publish(self, parts: tuple[str, ...], payload: dict, **kw) -> None:
        self.history.record(parts, self.publisher.publish(parts, payload, **kw))

    async def _start_extras(self) -> None:
        """The hospital's command topic (MQTT 5) and the nurse view (when enabled)."""
        if self.cfg.mqtt.protocol == "5":
            from gateway.publish.downlink import Downlink

            self.downlink = Downlink(self)
            self.downlink.start()
        if self.cfg.web.enabled:
            from gateway.web.server import WebServer

            self.web = WebServer(self)
            await self.web.start()

    async def _stop_extras(self) -> None:
        if self.web is not None:
            await self.web.stop()
        if self.downlink is not None:
            await asyncio.to_thread(self.downlink.stop)

    def _processor_for(self, session: DeviceSession):
        dev_id = session.state.device_id
        if session.state.device_type == p.DeviceType.FETAL_HEART:
            from gateway.processing.fetal import FetalProcessor
            from gateway.processing.recording import recordings_for

            proc = FetalProcessor(session, self.publish, self.cfg.processing)
            proc.recording = recordings_for(self).tracker(dev_id)  # sessions (docs/home.md)
            return proc
        if session.state.device_type == p.DeviceType.JAUNDICE:
            from gateway.processing.jaundice import JaundiceProcessor

            return JaundiceProcessor(session, self.publish, self.cfg.devices.get(dev_id, {}))
        return None

    async def _on_link(self, link: DeviceLink) -> None:
        if link.device_type not in (p.DeviceType.FETAL_HEART, p.DeviceType.JAUNDICE):
            log.warning("%s: unknown device type %s, ignored", link.device_id, link.device_type)
            await link.close()
            return
        pairing = getattr(self, "pairing", None)  # gateway/device/pairing.py, made on first use
        if getattr(link, "pairing", False) or (pairing is not None and pairing.wants(link)):
            # its button opened a pairing window, or a pairing by its label waits for it
            from gateway.device.pairing import pairing_for

            await pairing_for(self).on_link(link)
            return
        try:
            enrolled = self.enrolment.get(link.device_id)
        except EnrolmentError as exc:
            log.error("%s", exc)
            enrolled = None
        if enrolled is None or enrolled.device_type != link.device_type:
            await self._refuse(link, "not enrolled" if enrolled is None else "wrong type")
            return
        session = self.sessions.get(link.device_id)
        if session is None or session.state.device_type != link.device_type:
            session = DeviceSession(
                link.device_id, link.device_type, self.cfg.processing.gap_timeout_s
            )
            session.processor = self._processor_for(session)
            session.on_new_boot = lambda boot, s=session: self._resume(s, boot)
            session.gateway_id = (
                self.cfg.gateway.id
            )  # for FHIR references (gateway/processing/fhir.py)
            self.sessions[link.device_id] = session
            from gateway.publish.downlink import apply_risk_policy

            apply_risk_policy(self, link.device_id, self.history.settings.get(link.device_id))
        if session.auth is None or session.auth.device_key != enrolled.key:
            session.auth = FrameAuth(enrolled.key, session.state.stats)
        await session.attach(link)
        closed = link.on_close

        def on_close(reason: str) -> None:
            closed(reason)
            log.info("%s: disconnected (%s)", link.device_id, reason)
            self.publish_device_status(session)

        link.on_close = on_close
        log.info("%s: connected (%s, MTU %d)", link.device_id, p.DeviceType(link.device_type).name,
                 link.att_mtu)  # fmt: skip
        asyncio.get_running_loop().create_task(self._after_connect(session))

    async def _refuse(self, link: DeviceLink, why: str) -> None:
        """An unknown device is never connected; it is logged and listed on MQTT."""
        dev_id = link.device_id if _SAFE_ID.match(link.device_id) else "(invalid id)"
        log.warning("%s: refused (%s)", dev_id, why)
        now = iso_time(time.time())
        entry = self.unknown.get(dev_id)
        if entry is None:
            if len(self.unknown) >= _MAX_UNKNOWN:
                self.unknown.pop(next(iter(self.unknown)))
            entry = self.unknown[dev_id] = {"device_id": dev_id, "first_seen": now, "attempts": 0}
        entry.update(device_type=int(link.device_type), reason=why, last_seen=now)
        entry["attempts"] += 1
        await link.close()
        self.publish_unknown()

    def publish_unknown(self) -> None:
        payload = {"gateway_id": self.cfg.gateway.id, "devices": list(self.unknown.values()),
                   "t": iso_time(time.time())}  # fmt: skip
        self.publish(("unknown_devices",), payload, retain=True)

    async def _after_connect(self, session: DeviceSession) -> None:
        await session.after_connect()
        report_verification(
            session, self.publish
        )  # alert device_unverified (gateway/device/auth.py)
        self.publish_device_status(session)

    def _resume(self, session: DeviceSession, boot: int) -> None:
        """After a restart, continue a device's boot where the outbox says publishing stopped:
        the session asks the device to resend from there (docs/reliability.md)."""
        marks = self.outbox.marks(session.state.device_id, boot)
        proc = session.processor
        if session.state.device_type == p.DeviceType.FETAL_HEART and proc is not None:
            for kind, stream in (("fhr", p.Stream.DOPPLER), ("mhr", p.Stream.PPG)):
                if kind in marks:
                    session.resume_from[stream] = resume_plan(kind, marks[kind])
                    recent = self.outbox.recent_trace(session.state.device_id, boot, kind)
                    proc.published_upto(kind, marks[kind], [json.loads(m) for m in recent])
        elif "tcb" in marks:
            session.resume_from[p.Stream.TCB] = marks["tcb"] + 1
        if marks:
            log.info("%s: boot %d resumes after %s", session.state.device_id, boot, marks)

    def publish_device_status(self, session: DeviceSession) -> None:
        report_failed_frames(
            session, self.publish
        )  # alert device_unverified (gateway/device/auth.py)
        st = session.state
        payload = st.to_dict()
        payload["last_seen"] = iso_time(st.last_seen) if st.last_seen else None
        payload["t"] = iso_time(time.time())
        if session.processor is not None:
            payload.update(session.processor.status_fields())
        radio_stats = getattr(self.transport, "device_stats", None)  # RSSI, reconnects... (BLE)
        if radio_stats is not None:
            payload["radio"] = radio_stats(st.device_id)
        self.publish(("device", st.device_id, "status"), payload, retain=True)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or forever); an unreachable broker is retried, not fatal."""
        stop = stop or asyncio.Event()
        self.publisher.start()
        await self._start_extras()
        self.publish_unknown()  # replaces a stale retained list from an earlier run
        await self.transport.start(self._on_link)
        self.ready.set()
        systemd.notify("READY=1")
        watchdog_s = systemd.watchdog_interval_s()
        last_status = last_watchdog = 0.0
        try:
            while not stop.is_set():
                if watchdog_s and time.monotonic() - last_watchdog >= watchdog_s:
                    last_watchdog = time.monotonic()
                    systemd.notify("WATCHDOG=1")  # the loop is alive: systemd need not restart
                for session in list(self.sessions.values()):
                    try:
                        session.tick()
                    except Exception:  # one device's bad data must not stop the others
                        log.exception("%s: processing failed", session.state.device_id)
                now = time.monotonic()
                if now - last_status >= self.cfg.processing.status_interval_s:
                    last_status = now
                    for session in self.sessions.values():
                        self.publish_device_status(session)
                try:
                    await asyncio.wait_for(stop.wait(), _TICK_S)
                except TimeoutError:
                    pass
        finally:
            systemd.notify("STOPPING=1")
            await self.transport.stop()
            for session in self.sessions.values():
                if session.processor is not None and hasattr(session.processor, "flush"):
                    session.processor.flush()
                self.publish_device_status(session)
            if getattr(self, "recordings", None) is not None:
                await asyncio.to_thread(self.recordings.stop)  # sessions end with the gateway
            await asyncio.to_thread(self.publisher.stop)
            await self._stop_extras()
