"""The gateway: devices in through a transport, readings out over MQTT.

`Gateway(config).run()` is the whole public surface; everything else is wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Unpack

from gateway import protocol as p
from gateway import systemd
from gateway.config import Config
from gateway.device.enrolment import Enrolment, EnrolmentError, enrolment_path
from gateway.device.journal import journal_dir, open_journal
from gateway.device.pairing import PairingManager
from gateway.device.session import DeviceSession, Processor
from gateway.processing.alerts import PublishOptions
from gateway.processing.fetal import FetalProcessor
from gateway.processing.fhir import TRACE_POINTS_PER_OBSERVATION
from gateway.processing.jaundice import JaundiceProcessor
from gateway.processing.recording import Recordings
from gateway.processing.resume import resume_boot
from gateway.processing.verification import VerificationAlerts
from gateway.publish.downlink import Downlink
from gateway.publish.mqtt import Publisher
from gateway.publish.outbox import Outbox
from gateway.state.history import History
from gateway.state.settings import baby_profile
from gateway.times import iso_time
from gateway.transports.base import DeviceLink, Transport

if TYPE_CHECKING:
    from gateway.web.server import WebServer

log = logging.getLogger(__name__)

_TICK_S = 0.25
# A step of the gateway's stop that has not ended in this long is logged and left behind: the
# gateway still stops, so systemd's restart or the next start is not held up by one radio.
_STOP_STEP_S = 10.0
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
    """Everything a running gateway holds, built here; `run` starts and stops it in order."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        # out: the outbox keeps every message until the broker has it
        ran_before = cfg.outbox_path.exists()  # then the history's file should be there too
        self.outbox = Outbox(cfg.outbox_path, cfg.outbox.max_bytes, cfg.outbox.max_age_h * 3600,
                             recent_points=TRACE_POINTS_PER_OBSERVATION)  # fmt: skip
        self.publisher = Publisher(cfg.mqtt, cfg.gateway.id, self.outbox,
                                   status_interval_s=cfg.processing.status_interval_s)  # fmt: skip
        # in: devices through one transport, one session each
        self.transport = make_transport(cfg)
        self.enrolment = Enrolment(enrolment_path(cfg))
        self.sessions: dict[str, DeviceSession] = {}
        # the fetal monitors' last seconds of samples, for a restart to replay (not a power cut's)
        self.journal = open_journal(journal_dir(cfg.data_dir) / f"samples-{cfg.gateway.id}.sqlite")
        self.verification: dict[str, VerificationAlerts] = {}  # device_unverified, per device
        self.unknown: dict[str, dict[str, Any]] = {}  # refused devices, reported on MQTT
        self.pairing = PairingManager(self.enrolment, self.transport, self.sessions)
        # state: what was published (for the nurse view) and per-device settings
        self.history = History(cfg.data_dir, cfg.gateway.history_h * 3600,
                               recent_trace=self.outbox.recent_trace,
                               expect_store=ran_before)  # fmt: skip
        for dev_id, saved in self.history.settings.values.items():
            self.cfg.devices[dev_id] = baby_profile(self.cfg.devices.get(dev_id, {}), saved)
        self.recordings = Recordings(cfg.data_dir, self.outbox, self.history, self.publish,
                                     hospital=cfg.web.hospital)  # fmt: skip
        # the hospital's commands (MQTT 5 request/response) and the nurse view, when enabled
        self.downlink = Downlink(self, self.publisher) if cfg.mqtt.protocol == "5" else None
        self.web: WebServer | None = None
        if cfg.web.enabled:
            from gateway.web.server import WebServer  # starlette and uvicorn only when used

            self.web = WebServer(self)
        self.ready = asyncio.Event()

    def publish(
        self, parts: tuple[str, ...], payload: dict[str, Any], **options: Unpack[PublishOptions]
    ) -> None:
        self.history.record(parts, self.publisher.publish(parts, payload, **options))

    async def _start_extras(self) -> None:
        """The hospital's command topic (MQTT 5) and the nurse view (when enabled)."""
        if self.downlink is not None:
            self.downlink.start()
        if self.web is not None:
            await self.web.start()

    async def _stop_extras(self) -> None:
        if self.web is not None:
            await _bounded("the web server's stop", self.web.stop())
        if self.downlink is not None:
            await asyncio.to_thread(self.downlink.stop)

    def _processor_for(self, session: DeviceSession) -> Processor | None:
        dev_id = session.state.device_id
        proc: Processor | None = None
        if session.state.device_type == p.DeviceType.FETAL_HEART:
            proc = FetalProcessor(session, self.publish, self.cfg.processing,
                                  recording=self.recordings.tracker(dev_id),  # docs/home.md
                                  gateway_id=self.cfg.gateway.id)  # fmt: skip
        elif session.state.device_type == p.DeviceType.JAUNDICE:
            proc = JaundiceProcessor(session, self.publish, self.cfg.devices.get(dev_id, {}),
                                     gateway_id=self.cfg.gateway.id)  # fmt: skip
            proc.restore(self.history.messages(dev_id, "tcb", 0.0, math.inf),
                         self.history.device_summary(dev_id)["status"])  # fmt: skip
        if proc is not None:
            proc.apply_settings(self.history.settings.get(dev_id), self.cfg.devices.get(dev_id, {}))
        return proc

    async def _on_link(self, link: DeviceLink) -> None:
        if link.device_type not in (p.DeviceType.FETAL_HEART, p.DeviceType.JAUNDICE):
            log.warning("%s: unknown device type %s, ignored", link.device_id, link.device_type)
            await link.close()
            return
        if link.pairing or self.pairing.wants(link):
            # its button opened a pairing window, or a pairing by its label waits for it
            await self.pairing.on_link(link)
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
            if link.device_type == p.DeviceType.FETAL_HEART:
                session.journal = self.journal
            session.on_new_boot = functools.partial(self._resume, session)
            self.sessions[link.device_id] = session
        session.use_key(enrolled.key)
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
        self._verification(session).after_handshake(session)
        self.publish_device_status(session)

    def _verification(self, session: DeviceSession) -> VerificationAlerts:
        dev_id = session.state.device_id
        v = self.verification.get(dev_id)
        if v is None:
            v = self.verification[dev_id] = VerificationAlerts(dev_id, self.publish)
        return v

    def _resume(self, session: DeviceSession, boot: int) -> None:
        """After a restart, continue a device's boot where the outbox says publishing stopped:
        the session asks the device to resend from there (docs/reliability.md)."""
        resume_boot(session, self.outbox, boot)

    def publish_device_status(self, session: DeviceSession) -> None:
        self._verification(session).check_failed_frames(session)  # forged or altered frames
        st = session.state
        payload = st.to_dict()
        payload["last_seen"] = iso_time(st.last_seen) if st.last_seen else None
        payload["t"] = iso_time(time.time())
        if session.processor is not None:
            payload.update(session.processor.status_fields())
        radio_stats = self.transport.device_stats(st.device_id)  # RSSI, reconnects... (BLE)
        if radio_stats is not None:
            payload["radio"] = radio_stats
        self.publish(("device", st.device_id, "status"), payload, retain=True)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or forever); an unreachable broker is retried, not fatal."""
        stop = stop or asyncio.Event()
        self.publisher.start()
        await self._start_extras()
        self.publish_unknown()  # replaces a stale retained list from an earlier run
        self.recordings.start()
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
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_TICK_S):  # not wait_for: it can eat a cancel
                        await stop.wait()
        finally:
            systemd.notify("STOPPING=1")
            await _bounded("the radio transport's stop", self.transport.stop())
            # the nurse view and the hospital's commands first: they read the outbox and the
            # history, which close below
            await self._stop_extras()
            for session in self.sessions.values():
                try:
                    if session.processor is not None:
                        session.processor.flush()
                    self.publish_device_status(session)
                except Exception:  # one device's fault must not keep the others unpublished
                    log.exception("%s: flushing at stop failed", session.state.device_id)
            self.recordings.stop_ticking()
            await asyncio.to_thread(self.recordings.stop)  # sessions end with the gateway
            await asyncio.to_thread(self.publisher.stop)
            self.history.close()  # its last batch written
            if self.journal is not None:
                self.journal.close()


async def _bounded(what: str, step: Awaitable[None]) -> None:
    """Await one step of the stop for at most _STOP_STEP_S; one that takes longer is logged,
    cancelled and left (its devices reconnect to the next gateway and resend)."""
    try:
        async with asyncio.timeout(_STOP_STEP_S):
            await step
    except TimeoutError:
        log.error("%s did not end within %.0f s; stopping without it", what, _STOP_STEP_S)
