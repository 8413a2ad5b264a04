# Jaundice meter: one optical measurement each time the probe is pressed on the skin (dark
# frame, each LED five times on both photodiodes, dark frame again), sent raw with its quality
# flags. The gateway turns counts into bilirubin; the device never drops or fixes a reading.
# Exposure control: before its five flashes each LED gives one probe flash at a quarter of the
# factory drive; its drive is then set so the brighter photodiode lands at _TARGET counts above
# dark (dark skin and blue LEDs are lit harder, up to the LED's pulse rating, so the far
# photodiode's few counts rise above the ADC noise; bright skin is lit less and never clips).
# The drive used is sent with the counts; the gateway scales the factory reference by it.
import sys

if sys.platform != "esp32":  # Unix port: libraries live beside this folder, not in /lib
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.append(_here + "/../lib")
    sys.path.append(_here)

import gc

from micropython import const

_STORE_BYTES = const(16384)  # the resend buffer (docs/protocol.md, "Resend")
if sys.platform != "esp32":
    # pairing.py is frozen in flash on a board; under the Unix port its compiler needs the
    # heap in one piece more than the store does, so it is compiled first; so is linkauth.py
    # (with seal.py), the link security a device with a key compiles at boot, and renewal.py
    import linkauth  # noqa: F401
    import pairing  # noqa: F401
    import renewal  # noqa: F401
gc.collect()
_STORE_BUF = bytearray(_STORE_BYTES)  # taken first, while the heap is still in one piece

import asyncio
import binascii
import json

import protocol as p
import renewal
import storage
import supervisor
from framestore import FrameStore
from link import Link

if sys.platform == "esp32":
    import hal_esp32 as hal
else:
    import hal_sim as hal

FIRMWARE_VERSION = "1.0.0"
N_LEDS = const(6)  # 450, 470, 505, 550, 590, 650 nm
N_FLASHES = const(5)
_AMBIENT_LIMIT = const(3000)  # dark counts above this: too much room light reaches the diodes
_DISAGREE_FRAC = 0.05  # flashes spread more than 5% of their mean: the probe moved
_DISAGREE_FLOOR = const(200)  # ...and more than this many counts (noise floor at low light)
_TARGET = const(40000)  # counts above dark on the brighter photodiode (61 % of full scale)
_PROBE_DIV = const(4)  # probe flash at factory drive / 4: the phantom reads <= 14 % of full scale
_STATUS_EVERY_MS = const(10000)


def _drive(code):
    """A drive the LED driver can set: a multiple of its step, within the pulse rating."""
    return max(hal.DRIVE_STEP, min(hal.DRIVE_MAX, code // hal.DRIVE_STEP * hal.DRIVE_STEP))


def _cycle(factory_drive, drives=None):
    """Dark frame; per LED a probe flash that sets its drive (or the `drives` given: the
    factory's fixed drives), five flashes on both photodiodes; dark frame.
    Returns (dark0, dark1, drive, flashes), flashes[led] = (near[5], far[5])."""
    dark0 = hal.read_dark()
    flashes = []
    drive = []
    for led in range(N_LEDS):
        if drives is None:
            probe = _drive(factory_drive[led] // _PROBE_DIV)
            a, b = hal.flash(led, probe)
            d = _drive(probe * _TARGET // max(a - dark0[0], b - dark0[1], 1))
        else:
            d = drives[led]
        drive.append(d)
        near = []
        far = []
        for _ in range(N_FLASHES):
            a, b = hal.flash(led, d)
            near.append(a)
            far.append(b)
        flashes.append((near, far))
    return dark0, hal.read_dark(), drive, flashes


def measure(factory_drive):
    """One measurement cycle; returns the record payload."""
    contact_before = hal.contact()
    dark0, dark1, drive, flashes = _cycle(factory_drive)
    bits = p.TCB_CONTACT if (contact_before and hal.contact()) else 0
    if max(dark0 + dark1) > _AMBIENT_LIMIT:
        bits |= p.TCB_AMBIENT
    for near, far in flashes:
        for det in (near, far):
            if max(det) >= hal.SATURATION:
                bits |= p.TCB_SATURATED
            mean = sum(det) // len(det)
            if max(det) - min(det) > max(_DISAGREE_FLOOR, int(mean * _DISAGREE_FRAC)):
                bits |= p.TCB_DISAGREE
    return p.encode_tcb(bits, hal.temperature_c(), dark0, dark1, drive, flashes)


def self_check(factory_drive):
    """The start-up check on the built-in white tile (the probe in its holder), at the factory
    drive: dark-subtracted mean counts per LED and photodiode. The gateway compares them with
    the factory's (docs/jaundice.md, "Self-check")."""
    dark0, dark1, drive, flashes = _cycle(factory_drive, factory_drive)
    counts = []
    for near, far in flashes:
        counts.append([round(sum(near) / N_FLASHES - (dark0[0] + dark1[0]) / 2, 1),
                       round(sum(far) / N_FLASHES - (dark0[1] + dark1[1]) / 2, 1)])  # fmt: skip
    return {"counts": counts, "led_drive": drive, "temperature_c": hal.temperature_c()}


async def self_check_task(link, drive, info):
    """At start-up, with the probe in its holder (not on skin), read the tile once and report
    it in the device info."""
    await hal.settled()
    if hal.contact():
        return  # pressed on something already: the tile is not under the probe
    info["self_check"] = self_check(drive)
    link.send_record(p.S_INFO, link.now_ms(), json.dumps(info).encode())


async def press_task(link, drive):
    while True:
        await hal.wait_contact(True)
        link.send_record(p.S_EVENT, link.now_ms(), bytes((p.EV_CONTACT_ON,)))
        link.send_record(p.S_TCB, link.now_ms(), measure(drive))
        await hal.wait_contact(False)
        link.send_record(p.S_EVENT, link.now_ms(), bytes((p.EV_CONTACT_OFF,)))


async def status_task(link):
    while True:
        mv = hal.battery_mv()
        pct = max(0, min(100, (mv - 3300) * 100 // 850))
        link.send_record(
            p.S_STATUS, link.now_ms(), p.encode_status(mv, pct, hal.contact(), False, pct < 15)
        )
        await asyncio.sleep_ms(_STATUS_EVERY_MS)


async def main(settings_path):
    sup = supervisor.Supervisor(hal)
    sup.stopping = hal.stopped().is_set
    asyncio.get_event_loop().set_exception_handler(sup.on_exception)
    settings = storage.load_settings(settings_path)
    boot = storage.next_boot(settings_path.rsplit(".", 1)[0] + ".boot")
    cal = settings.get("calibration", {})
    drive = cal.get("led_drive", [100] * N_LEDS)
    link_ref = [None]
    pairing_ref = [None]

    def pair(op, rid, args):
        """PAIR by the label's secret (pairing.py, loaded at the first one: no RAM before)."""
        if pairing_ref[0] is None:
            import pairing

            pairing_ref[0] = pairing.Pairing(settings, settings_path, link_ref[0], radio, adv,
                                             None, hal)  # fmt: skip
            link_ref[0].unsigned_ok = pairing_ref[0].accepts_unsigned
            asyncio.create_task(pairing_ref[0].run())
        return pairing_ref[0].handle(op, rid, args)

    info = {"id": settings["id"], "type": "jaundice", "firmware": FIRMWARE_VERSION,
            "boot": boot, "calibration": cal, "reset_cause": sup.reset_cause,
            "reset_note": sup.reset_note}  # fmt: skip

    def on_control(op, rid, args):
        link = link_ref[0]
        if op == p.OP_MEASURE:
            link.send_record(p.S_TCB, link.now_ms(), measure(drive))
        elif op == p.OP_GET_INFO:
            info["loop_lag_max_ms"] = sup.lag_max_ms
            link.send_record(p.S_INFO, link.now_ms(), json.dumps(info).encode())
        elif op in (p.OP_START, p.OP_STOP):
            pass
        elif op == p.OP_PAIR and settings.get("pair_secret"):
            return pair(op, rid, args)
        else:
            return None
        return p.encode_reply(op, rid, p.ST_OK)

    adv = {"id": settings["id"], "type": p.DT_JAUNDICE, "name": settings.get("name", "")}
    radio = hal.make_radio(settings, adv)
    link = Link(radio, FrameStore(_STORE_BUF, 256), p.DT_JAUNDICE, boot, on_control)
    link_ref[0] = link
    if settings.get("key"):  # provisioned: every frame is signed (docs/protocol.md)
        link.set_key(binascii.unhexlify(settings["key"]))
    radio.on_connect = link.connected
    if settings.get("pair_secret"):  # a label PAIR comes unsigned (docs/protocol.md, "Pairing")
        link.unsigned_ok = lambda op: op == p.OP_PAIR
    link.send_record(p.S_EVENT, link.now_ms(), bytes((p.EV_BOOT,)))
    sup.start("radio", radio.run())
    sup.start("tx", link.tx_task())
    sup.start("press", press_task(link, drive))
    sup.start("status", status_task(link))
    # A boot never wraps (renewal.py): its record streams' seqs would take centuries, its
    # clock 49.7 days; no sample stream to hold
    sup.start("renewal", renewal.run(link, lambda: (link.now_ms(),), lambda on: None, hal.reset))
    asyncio.create_task(self_check_task(link, drive, info))  # once, at start-up
    for t in hal.background_tasks():
        sup.start("hal", t)
    asyncio.create_task(sup.run())
    await hal.stopped().wait()


def _start(path):
    if storage.provisioning_wanted(path, sys.argv[2:]):  # USB console (perimon provision)
        import provision

        import factory  # MEASURE, for the factory calibration: compiled only here

        provision.console(path, "jaundice", FIRMWARE_VERSION,
                          measure=factory.handler(path, hal, _cycle, N_LEDS))  # fmt: skip
    else:
        asyncio.run(main(path))


if __name__ == "__main__":  # a board runs main.py as __main__; tests import measure()
    _path = sys.argv[1] if len(sys.argv) > 1 else "device.json"
    supervisor.boot(hal, lambda: _start(_path))
