"""BLE central through BlueZ with bleak: how a Raspberry Pi gateway reaches its wearables.

One scanner (active by default; passive through BlueZ advertisement monitors) filtered by the
perimon service UUID and an allowlist of enrolled device ids; a device advertising an open
pairing window passes the allowlist and is handed over as a pairing link (gateway/device/pairing.py).
One task per device keeps it
connected: it waits until the device advertises, takes one of the adapter's connection slots,
connects through bleak-retry-connector's `establish_connection` (its retries and backoff; ours
add jitter between rounds), subscribes to the data characteristic with AcquireNotify, and hands
a `BleLink` to the gateway, whose session then resynchronises time and asks for any sequence
numbers the drop lost. BlueZ makes one LE connection attempt at a time per adapter, so connects
are serialised and the scan pauses while one runs. Watchdogs: a device that stays silent while
connected is disconnected (and reconnected); an adapter that reports nothing while devices are
missing gets its scan restarted.

docs/ble.md describes the GATT layout and the knobs ([radio] in the gateway config).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusFastError

from gateway.transports import uuids
from gateway.transports.base import MAX_PAIRING_LINKS, REFUSED_HOLD_S, DeviceLink, Transport

log = logging.getLogger(__name__)

_SEEN_FRESH_S = 10.0  # an advertisement older than this does not count as "in range"
_RATE_WINDOW_S = 5.0


class BleLinkError(ConnectionError):
    """A write or subscription on a BLE link failed (the link is going down)."""


@dataclass
class RadioStats:
    """Per-device link statistics, kept across reconnections (device status "radio")."""

    address: str = ""
    rssi: int | None = None
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    drops: int = 0  # links lost without the gateway asking
    failed_attempts: int = 0
    silent_disconnects: int = 0
    notifications: int = 0
    frames_per_s: float = 0.0
    att_mtu: int = 0
    last_reconnect_s: float | None = None  # link lost -> data flowing again


class BleLink(DeviceLink):
    def __init__(self, client: BleakClient, device_id: str, device_type: int, name: str,
                 att_mtu: int, stats: RadioStats, disconnected: asyncio.Event,
                 local_address: bytes | None) -> None:  # fmt: skip
        super().__init__()
        self.client = client
        self.local_address = local_address
        self.disconnected = disconnected  # set by bleak's disconnected_callback
        self.device_id = device_id
        self.device_type = device_type
        self.name = name
        self.att_mtu = att_mtu
        self.stats = stats
        self.closed = asyncio.Event()
        self.closed_by_gateway = False
        self.last_rx = time.monotonic()  # the silent-device watchdog counts from the connect
        self.first_rx: float | None = None  # the first notification: data flows
        self.lost_at: float | None = None  # when the previous link of this device was lost
        self._rate_t0 = self.last_rx
        self._rate_n = 0

    def _on_notify(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        now = time.monotonic()
        self.last_rx = now
        if self.first_rx is None:
            self.first_rx = now
            if self.lost_at is not None:
                self.stats.last_reconnect_s = round(now - self.lost_at, 3)
        self.stats.notifications += 1
        self._rate_n += 1
        if now - self._rate_t0 >= _RATE_WINDOW_S:
            self.stats.frames_per_s = round(self._rate_n / (now - self._rate_t0), 2)
            self._rate_t0, self._rate_n = now, 0
        self.on_frame(bytes(data))

    async def write(self, frame: bytes) -> None:
        if self.closed.is_set():
            raise BleLinkError("link closed")
        try:
            await self.client.write_gatt_char(uuids.CONTROL_CHAR, frame, response=True)
        except (BleakError, EOFError, BrokenPipeError) as exc:
            raise BleLinkError(str(exc)) from exc

    async def close(self) -> None:
        self.closed_by_gateway = True
        await self.release()

    async def release(self) -> None:
        """Disconnect, and free the client's own D-Bus connection: bleak closes it only in
        disconnect(), also after the device dropped the link, so without this every drop
        would leave one connection open until the bus refuses new ones."""
        with contextlib.suppress(BleakError, EOFError, BrokenPipeError, TimeoutError):
            await self.client.disconnect()


def device_type_of(adv: AdvertisementData) -> int | None:
    data = adv.manufacturer_data.get(uuids.COMPANY_ID)
    if data and len(data) >= 2 and data[0] == uuids.ADV_FORMAT:
        return data[1]
    return None


def pairing_of(adv: AdvertisementData) -> bool:
    """The device's pairing window is open (its button was pressed): docs/home.md."""
    data = adv.manufacturer_data.get(uuids.COMPANY_ID)
    return bool(data and len(data) >= 3 and data[0] == uuids.ADV_FORMAT
                and data[2] & uuids.ADV_PAIRING)  # fmt: skip


class BleTransport(Transport):
    def __init__(
        self,
        adapter: str = "hci0",
        max_connections: int = 7,
        enrolled: set[str] | None = None,
        scan_mode: str = "active",
        silent_device_s: float = 10.0,
        silent_adapter_s: float = 60.0,
        pause_scan_to_connect: bool = True,
    ) -> None:
        self.adapter = adapter
        self.max_connections = max_connections
        self.enrolled = set(enrolled or ())
        if scan_mode not in ("active", "passive"):
            raise ValueError(f'BLE scan mode: "active" or "passive", not {scan_mode!r}')
        self.scan_mode: Literal["active", "passive"] = (
            "passive" if scan_mode == "passive" else "active"
        )
        self.silent_device_s = silent_device_s
        self.silent_adapter_s = silent_adapter_s
        self.pause_scan_to_connect = pause_scan_to_connect
        self.stats: dict[str, RadioStats] = {}
        self.links: dict[str, BleLink] = {}
        self._seen: dict[str, tuple[BLEDevice, AdvertisementData, float]] = {}
        self._seen_ev: dict[str, asyncio.Event] = {}
        self._types: dict[str, int] = {}
        self._pairing: dict[str, bool] = {}  # as last advertised
        self._expected: set[str] = set()  # a pairing waits for their next link: no hold-off
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        # A device advertising its pairing window may take only a few slots, and never the
        # last one: anyone in range can advertise the flag, enrolled monitors must still get in.
        self.max_pairing_links = max(0, min(MAX_PAIRING_LINKS, max_connections - 1))
        self._pairing_links = 0  # links (and attempts) of devices advertising pairing
        self._connect_lock = asyncio.Lock()
        self._connecting = 0
        self._scanner: BleakScanner | None = None
        self._scanning = False
        self._scan_lock = asyncio.Lock()
        self._last_adv = time.monotonic()
        self._on_link: Callable[[DeviceLink], Awaitable[None]] | None = None
        self.address: bytes | None = None  # the adapter's, read at start: devices name it
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        if not self.enrolled:
            log.warning("BLE: no enrolled device ids: any perimon device in range is accepted")

    # ---- Transport ----

    async def start(self, on_link: Callable[[DeviceLink], Awaitable[None]]) -> None:
        self._on_link = on_link
        self.address = await adapter_address(self.adapter)
        bluez: BlueZScannerArgs = {"adapter": self.adapter}
        if self.scan_mode == "passive":
            # BlueZ advertisement monitor: match the 128-bit service UUID AD structure.
            ad = bytes.fromhex(uuids.PERIMON_SERVICE.replace("-", ""))[::-1]
            uuid128 = AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID128
            bluez["or_patterns"] = [OrPattern(0, uuid128, ad)]
        self._scanner = BleakScanner(
            detection_callback=self._on_advertisement,
            service_uuids=None if self.scan_mode == "passive" else [uuids.PERIMON_SERVICE],
            scanning_mode=self.scan_mode,
            bluez=bluez,
        )
        await self._set_scanning(True)
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        log.info("BLE: scanning on %s (%s), %d connection slots", self.adapter,
                 self.scan_mode, self.max_connections)  # fmt: skip

    async def stop(self) -> None:
        self._stopping = True
        if self._watchdog:
            self._watchdog.cancel()
        for t in self._tasks.values():
            t.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self._set_scanning(False)

    def device_stats(self, device_id: str) -> dict[str, Any] | None:
        st = self.stats.get(device_id)
        return asdict(st) if st else None

    def allow(self, device_id: str) -> bool:
        """Add a device to the allowlist: one just paired comes back without its pairing
        flag, and would otherwise be ignored until the configuration lists it. True if it was
        not on it (a failed pairing then takes it back with disallow)."""
        if not self.enrolled or device_id in self.enrolled:
            return False
        self.enrolled.add(device_id)
        return True

    def disallow(self, device_id: str) -> None:
        """Take a device off the allowlist (one allowed for a pairing that failed)."""
        if device_id in self.enrolled and len(self.enrolled) > 1:
            self.enrolled.discard(device_id)
            self._seen.pop(device_id, None)  # its task waits for an advertisement that passes

    def expect(self, device_id: str) -> None:
        """A label pairing waits for this device: end its hold-off (if any) at once."""
        self._expected.add(device_id)

    # ---- scanning ----

    async def _set_scanning(self, on: bool) -> None:
        async with self._scan_lock:
            if self._scanner is None or on == self._scanning:
                return
            try:
                if on:
                    await self._scanner.start()
                else:
                    await self._scanner.stop()
                self._scanning = on
            except (BleakError, EOFError, BrokenPipeError) as exc:
                log.warning("BLE: %s scan failed: %s", "starting" if on else "stopping", exc)

    def _scan_needed(self) -> bool:
        """Always, but while a connection is being made: even with every enrolled device
        connected, a new monitor's pairing window must be seen."""
        return not (self._stopping or (self.pause_scan_to_connect and self._connecting))

    def _missing(self) -> bool:
        """Some device should be advertising (so a silent adapter is suspicious)."""
        return not self.enrolled or any(i not in self.links for i in self.enrolled)

    async def _rescan(self) -> None:
        await self._set_scanning(self._scan_needed())

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        if uuids.PERIMON_SERVICE not in adv.service_uuids:
            return
        dev_id = adv.local_name or device.name
        pairing = pairing_of(adv)
        if not dev_id or (self.enrolled and dev_id not in self.enrolled and not pairing):
            return
        now = time.monotonic()
        self._pairing[dev_id] = pairing
        self._last_adv = now
        self._seen[dev_id] = (device, adv, now)
        dtype = device_type_of(adv)
        if dtype is not None:
            self._types[dev_id] = dtype
        st = self.stats.setdefault(dev_id, RadioStats())
        st.rssi = adv.rssi
        st.address = device.address
        self._seen_ev.setdefault(dev_id, asyncio.Event()).set()
        if dev_id not in self._tasks and not self._stopping:
            self._tasks[dev_id] = asyncio.get_running_loop().create_task(self._keep(dev_id))

    # ---- one device ----

    async def _keep(self, dev_id: str) -> None:
        """Keep one device connected for as long as the transport runs."""
        failures = 0
        lost_at: float | None = None
        st = self.stats[dev_id]
        ev = self._seen_ev[dev_id]
        while not self._stopping:
            seen = self._seen.get(dev_id)
            if seen is None or time.monotonic() - seen[2] > _SEEN_FRESH_S:
                ev.clear()
                await self._rescan()
                await ev.wait()
                continue
            pairing = self._pairing.get(dev_id, False)
            if pairing and self._pairing_links >= self.max_pairing_links:
                await asyncio.sleep(random.uniform(0.5, 1.5))  # until a pairing link ends
                continue
            self._pairing_links += pairing
            try:
                link, reason = await self._connect_and_serve(dev_id, st, lost_at)
            finally:
                self._pairing_links -= pairing
            if link is None:
                failures += 1
                # Jittered exponential backoff between rounds of establish_connection (which
                # already retried with its own backoff), with the slot free for another device.
                await asyncio.sleep(min(30.0, 0.5 * 2**failures) * random.uniform(0.5, 1.5))
                continue
            failures = 0
            lost_at = time.monotonic()
            await self._rescan()
            if reason == "closed by gateway":  # refused, or paired: not at once again
                await self._hold_off(dev_id, link.pairing)
            await asyncio.sleep(random.uniform(0.0, 0.2))  # spread a burst of reconnects

    async def _connect_and_serve(self, dev_id: str, st: RadioStats, lost_at: float | None
                                 ) -> tuple[BleLink | None, str]:  # fmt: skip
        """One connection in one of the adapter's slots: its link (None: it failed) and why
        it ended."""
        ev = self._seen_ev[dev_id]
        reason = ""
        async with self._slots:  # the adapter holds only so many links
            link = await self._connect(dev_id, st)
            if link is None:
                st.failed_attempts += 1
                ev.clear()
            else:
                if lost_at is not None:
                    st.reconnects += 1
                    link.lost_at = lost_at
                reason = await self._serve(dev_id, link, st)
                ev.clear()
                if reason != "closed by gateway":
                    st.drops += 1
        return link, reason

    async def _hold_off(self, dev_id: str, pairing: bool) -> None:
        """After the gateway closed a link: wait until the device's pairing flag is not what
        it was at that connection (a button press, or pairing done), a pairing expects the
        device (expect), or REFUSED_HOLD_S."""
        end = time.monotonic() + REFUSED_HOLD_S
        while not self._stopping and time.monotonic() < end:
            if self._pairing.get(dev_id, False) != pairing or dev_id in self._expected:
                return
            await asyncio.sleep(0.25)

    async def _connect(self, dev_id: str, st: RadioStats) -> BleLink | None:
        device, adv, _ = self._seen[dev_id]
        self._connecting += 1
        client: BleakClient | None = None
        try:
            async with self._connect_lock:  # one connection attempt at a time per adapter
                if self.pause_scan_to_connect:
                    await self._set_scanning(False)
                device, adv, _ = self._seen[dev_id]
                disconnected = asyncio.Event()
                client = await establish_connection(
                    BleakClientWithServiceCache,
                    device,
                    dev_id,
                    disconnected_callback=lambda _c: disconnected.set(),
                    max_attempts=3,
                    bluez={"adapter": self.adapter},
                )
            dtype = self._types.get(dev_id)
            if dtype is None:  # passive scans may miss the scan response: ask the device
                model = (await client.read_gatt_char(uuids.MODEL_NUMBER_CHAR)).decode()
                dtype = {v: k for k, v in uuids.MODEL_NUMBERS.items()}.get(model)
                if dtype is None:
                    raise BleakError(f"unknown model {model!r}")
                self._types[dev_id] = dtype
            data_char = client.services.get_characteristic(uuids.DATA_CHAR)
            if data_char is None or client.services.get_characteristic(uuids.CONTROL_CHAR) is None:
                raise BleakError("perimon characteristics missing")
            att_mtu = data_char.max_write_without_response_size + 3
            link = BleLink(client, dev_id, dtype, adv.local_name or dev_id, att_mtu, st,
                           disconnected, self.address)  # fmt: skip
            self._expected.discard(dev_id)  # this is the link a pairing waited for
            link.pairing = self._pairing.get(dev_id, False)
            await client.start_notify(data_char, link._on_notify, bluez={"use_start_notify": False})
            st.connects += 1
            st.connected = True
            st.att_mtu = att_mtu
            return link
        except (BleakError, TimeoutError, EOFError, BrokenPipeError, AttributeError) as exc:
            log.info("BLE %s: connect failed: %s", dev_id, exc)
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            return None
        finally:
            self._connecting -= 1
            if not self._connecting:
                await self._rescan()

    async def _serve(self, dev_id: str, link: BleLink, st: RadioStats) -> str:
        """Run one connection until it ends; returns why."""
        self.links[dev_id] = link
        reason = "link lost"
        try:
            assert self._on_link is not None
            await self._on_link(link)
            disconnected = link.disconnected
            while not disconnected.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):  # not wait_for: on 3.11 it can eat a cancel
                        await disconnected.wait()
                if not link.pairing and time.monotonic() - link.last_rx > self.silent_device_s:
                    st.silent_disconnects += 1
                    reason = "silent device"
                    log.warning("BLE %s: no data for %.0f s, reconnecting", dev_id,
                                self.silent_device_s)  # fmt: skip
                    await link.close()
                    break
            if reason == "link lost" and link.closed_by_gateway:
                reason = "closed by gateway"
            await link.release()
        except asyncio.CancelledError:
            reason = "closed by gateway"
            await link.close()
            raise
        finally:
            self.links.pop(dev_id, None)
            st.connected = False
            link.closed.set()
            link.on_close(reason)
        return reason

    async def _watch(self) -> None:
        """Adapter watchdog: devices missing and nothing heard for a while: restart the scan."""
        while True:
            await asyncio.sleep(5.0)
            if not self._scanning or not self._missing():
                self._last_adv = time.monotonic()
                continue
            if time.monotonic() - self._last_adv > self.silent_adapter_s:
                log.warning("BLE: adapter silent for %.0f s, restarting the scan",
                            self.silent_adapter_s)  # fmt: skip
                await self._set_scanning(False)
                await self._set_scanning(True)
                self._last_adv = time.monotonic()


async def adapter_address(adapter: str) -> bytes | None:
    """The adapter's own address (BlueZ Adapter1.Address): the central a device sees, which its
    session reply names (docs/protocol.md, Authentication). None if BlueZ cannot say: the
    gateway then cannot tell a relayed reply, and says so."""
    try:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            reply = await bus.call(Message(
                destination="org.bluez", path=f"/org/bluez/{adapter}",
                interface="org.freedesktop.DBus.Properties", member="Get", signature="ss",
                body=["org.bluez.Adapter1", "Address"],
            ))  # fmt: skip
        finally:
            bus.disconnect()
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            raise ValueError(reply.body[0] if reply is not None and reply.body else "no reply")
        address = bytes.fromhex(str(reply.body[0].value).replace(":", ""))
    except (OSError, EOFError, ValueError, DBusFastError) as exc:  # no bus, no BlueZ, no adapter
        log.warning("BLE: cannot read %s's address (%s): relayed sessions go unnoticed",
                    adapter, exc)  # fmt: skip
        return None
    if len(address) != 6:
        log.warning("BLE: %s's address %s is not 6 bytes: relayed sessions go unnoticed",
                    adapter, address.hex())  # fmt: skip
        return None
    return address


def parse_ids(text: str) -> set[str]:
    return {s.strip() for s in text.split(",") if s.strip()}
