# Fetal-heart monitor: Doppler audio at 4 kHz, maternal PPG at 50 Hz, battery and probe contact,
# streamed as perimon protocol v1 frames. One asyncio task per concern; the board is in hal_*.
import sys

if sys.platform != "esp32":  # Unix port: libraries live beside this folder, not in /lib
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.append(_here + "/../lib")
    sys.path.append(_here)

import gc

from micropython import const

# The resend buffer (docs/protocol.md, "Resend") gets what the heap can spare beyond the app's
# own needs, taken first while the heap is still in one piece. The app needs about 89 KiB with
# the Unix port's 64-bit objects and its bytecode in the heap (a board keeps the bytecode in
# flash, frozen, and its objects are half the size): the fleet's 132 KiB heap (128 KiB and the
# 4 KiB linkauth.py and seal.py take to compile here: simulators/fleet.py) leaves ~13 KiB under
# the Unix port, about 6 s of ADPCM Doppler with PPG; a 192 KiB one (BLE) ~43 KiB; an ESP32
# with PSRAM is capped at 1 MiB, over 7 minutes (docs/firmware.md, memory budget).
# The reserve includes the mother's feedback (feedback.py: 3.8 KiB of bytecode under the Unix
# port and 1.9 KiB of buffers) and the supervisor. pairing.py is frozen in flash on a board and
# loaded at the first press of its button or label PAIR; under the Unix port it is compiled
# here, while there is room, and its bytecode comes out of the store's share (the modules it
# shares with the app stay in the reserve). So do linkauth.py and seal.py, the link security a
# device with a key compiles at boot (2.9 KiB of the store's share under the Unix port). The
# reserve grew by 1 KiB with the seal: its cipher context and buffer are taken when the key is
# set, and without that head-room the Unix port could no longer compile the serial radio's
# module after them (MemoryError at boot, the heap too fragmented for one of its chunks). It
# grew by 512 bytes more with the button's two kinds of press (the movement marks), which took
# about 300 bytes of that head-room. Measured booting over the USB cable with the reserve made
# smaller, four boots each: without them the boot failed from 640 bytes short of 92160, with
# them from 320 short; with 92672 it fails from about 1 KiB short. (The margin moves in steps,
# not smoothly: it depends on where the holes in the heap fall.)
_APP_RESERVE = const(92672)
gc.collect()
_free = gc.mem_free()
if sys.platform != "esp32":
    # Both HALs' ADC clock: frozen in flash on a board, 0.9 KiB of bytecode here that comes
    # off the store (imported by hal_sim below, it would come off the reserve, which it outgrew).
    import adc_clock  # noqa: F401

    gc.collect()
    _free = gc.mem_free()
    import asyncio  # noqa: F401
    import hashlib  # noqa: F401
    import json  # noqa: F401

    import hal_sim  # noqa: F401  (its simulated DMA ring, 8 KiB, while the heap is whole)
    import hmac_sha256  # noqa: F401
    import protocol  # noqa: F401
    import supervisor  # noqa: F401

    gc.collect()
    _shared = _free - gc.mem_free()
    import pairing  # noqa: F401
    import linkauth  # noqa: F401  (with seal.py: a keyed device's link security, frozen on a board)
    import renewal  # noqa: F401  (a new boot before the counters wrap: 1.2 KiB of bytecode here)

    gc.collect()
    _free = gc.mem_free() + _shared
# Records (status every 5 s, events, device info) have a store of their own, so Doppler never
# pushes them out: 1.5 KiB holds about 40 signed status frames, over 3 minutes of them.
_RECORD_BYTES = const(1536)
# The store's index takes a slot per _FRAME_BYTES of buffer (frames average ~215 bytes signed,
# ADPCM Doppler with PPG), so its bytes, not its slots, decide how many seconds it holds: 1 MiB
# (a board with PSRAM) keeps over 7 minutes. The index comes out of the same share.
_FRAME_BYTES = const(96)
from framestore import INDEX_BYTES, FrameStore, slots_for  # noqa: E402

_share = (_free - _APP_RESERVE - _RECORD_BYTES) * _FRAME_BYTES // (_FRAME_BYTES + INDEX_BYTES)
_STORE_BYTES = max(8192, min(1 << 20, _share))
_STORE = FrameStore(_STORE_BYTES, slots_for(_STORE_BYTES, _FRAME_BYTES))  # the big buffer first
_RECORDS = FrameStore(_RECORD_BYTES, 64)

import array
import asyncio
import binascii
import json
import time

import protocol as p
import renewal
import storage
from feedback import Feedback
from link import Link
import supervisor

if sys.platform == "esp32":
    import hal_esp32 as hal
else:
    import hal_sim as hal

FIRMWARE_VERSION = "1.0.0"
_DOPPLER_HZ = const(4000)
_PPG_HZ = const(50)
_PPG_FRAME = const(25)  # samples per PPG frame (0.5 s)
_MAX_BLOCK = const(480)  # Doppler samples per frame at most (fits a 247-byte ATT MTU as ADPCM)
_STATUS_EVERY_MS = const(5000)
_BATTERY_LOW_PCT = const(15)
_PRESS_LONG = const(2)  # presses.PRESS_LONG (sim_feed.CH_BUTTON's 2): held 2 s, pairing
_MARK_HZ = const(1760)  # a movement mark taken: one short chirp, above every guiding tone


class State:
    def __init__(self, settings):
        self.streaming = True
        self.adpcm = settings.get("doppler_encoding", "adpcm") == "adpcm"
        self.ppg_hz = _PPG_HZ
        self.fb = None  # LED, tone and speaker (feedback.py)
        self.pairing = None  # pairing.py, loaded at the first button press or label PAIR
        self.load_pairing = None  # () -> state.pairing, loaded if need be
        self.sup = None  # the supervisor: reset cause, the loop's lateness
        self.held = False  # the sample streams frame nothing while a new boot is started
        self.doppler_seq = 0  # the Doppler's next sample index, framed or not: this boot's top


def battery_pct(mv):
    # Single-cell Li-ion, linear between 3.3 V (empty) and 4.15 V (full): coarse but monotonic.
    return max(0, min(100, (mv - 3300) * 100 // 850))


def stamp(now_ms, age, hz):
    """A frame's t_ms: when its first sample was taken, `age` samples ago (the block read and
    those the ADC's ring still holds after it). A device held up, at a boot under load or
    for a moment, reads a backlog: stamped at the read, those frames would look late by it,
    and the gateway would doubt the sample rate (docs/protocol.md, Sample streams)."""
    return (now_ms - age * 1000 // hz) & 0xFFFFFFFF


async def doppler_task(link, state):
    buf = array.array("h", bytes(2 * _MAX_BLOCK))
    codec = [0, 0]
    seq = hal.doppler_first_seq()  # index of the next sample since boot: 0 on a board
    while True:
        room = link.payload_room()
        if state.adpcm:
            n = min(_MAX_BLOCK, 2 * (room - p.ADPCM_HEADER_LEN))
        else:
            n = min(_MAX_BLOCK, room // 2)
        n = max(2, n & ~1)
        await hal.doppler_read(buf, n)
        lost = hal.doppler_lost()
        if lost:  # the DMA overran: the timeline keeps its place and the gap is said
            seq += lost
            link.send_record(p.S_EVENT, link.now_ms(), bytes((p.EV_GAP,)))
        fb = state.fb
        if fb is not None:
            fb.feed(buf, n)  # the envelope for the local quality estimate
            if fb.speaker_on:
                hal.speaker(buf, n)  # the Doppler sound the mother listens to
        t_ms = stamp(link.now_ms(), n + hal.doppler_waiting(), _DOPPLER_HZ)
        if state.streaming and not state.held:
            if state.adpcm:
                link.send(p.S_DOPPLER, seq, t_ms, p.adpcm_encode(buf, 0, n, codec), p.F_ADPCM)
            else:
                link.send(p.S_DOPPLER, seq, t_ms, p.pcm16_encode(buf, 0, n))
        seq += n
        state.doppler_seq = seq  # counted on while stopped too: the next frame carries it


async def ppg_task(link, state):
    buf = array.array("h", bytes(2 * _PPG_FRAME))
    seq = 0
    while True:
        n = min(_PPG_FRAME, link.payload_room() // 2)
        await hal.ppg_read(buf, n)
        t_ms = stamp(link.now_ms(), n + hal.ppg_waiting(), state.ppg_hz)
        if state.streaming and not state.held:
            link.send(p.S_PPG, seq, t_ms, p.pcm16_encode(buf, 0, n))
        seq += n


async def status_task(link):
    skin = None
    low = False
    while True:
        mv = hal.battery_mv()
        pct = battery_pct(mv)
        now_skin = hal.on_skin()
        if now_skin != skin:
            if skin is not None:
                ev = p.EV_CONTACT_ON if now_skin else p.EV_CONTACT_OFF
                link.send_record(p.S_EVENT, link.now_ms(), bytes((ev,)))
            skin = now_skin
        if pct < _BATTERY_LOW_PCT and not low:
            link.send_record(p.S_EVENT, link.now_ms(), bytes((p.EV_BATTERY_LOW,)))
        low = pct < _BATTERY_LOW_PCT
        payload = p.encode_status(mv, pct, now_skin, False, low)
        link.send_record(p.S_STATUS, link.now_ms(), payload)
        await asyncio.sleep_ms(_STATUS_EVERY_MS)


async def feedback_task(fb):
    """LED, tone and speaker: the gateway's quality while it sends one, else the local one."""
    low_pct = None
    n = 0
    while True:
        if n % 20 == 0:  # the battery every 5 s
            low_pct = battery_pct(hal.battery_mv())
            fb.battery_low = low_pct < _BATTERY_LOW_PCT
        n += 1
        fb.step(hal.on_skin())
        await asyncio.sleep_ms(250)


def pairing_loader(state, settings, settings_path, link, radio, adv):
    def load():
        if state.pairing is None:
            import pairing  # loaded when first needed: no RAM on a device never paired

            state.pairing = pairing.Pairing(settings, settings_path, link, radio, adv,
                                            state.fb, hal)  # fmt: skip
            link.unsigned_ok = state.pairing.accepts_unsigned
            asyncio.create_task(state.pairing.run())
        return state.pairing

    return load


async def button_task(link, state):
    """The one button (docs/firmware.md, "The button"): a short press marks a fetal movement
    (the mother felt the baby move), stamped with the time it began so it lands on the trace
    where she pressed, however late its frame arrives; a long press (held 2 s) opens the
    pairing window. While the window is open every press is pairing's: it confirms the code."""
    marks = 0  # movement marks this boot: the number each carries (docs/protocol.md)
    while True:
        await asyncio.sleep_ms(50)
        press = hal.button()
        if press is None:
            continue
        kind, began = press
        pairing = state.pairing
        if kind == _PRESS_LONG:
            state.load_pairing().press()
        elif pairing is not None and pairing.is_open():
            pairing.confirm()
        else:
            marks += 1
            t_ms = link.now_ms() - time.ticks_diff(time.ticks_ms(), began)
            link.send_record(p.S_EVENT, t_ms & 0xFFFFFFFF,
                             bytes((p.EV_MOVEMENT, marks & 0xFF, (marks >> 8) & 0xFF)))  # fmt: skip
            hal.tone(_MARK_HZ, 60)  # she hears it taken; the LED keeps showing the signal


def info(settings, boot, state):
    return json.dumps(
        {
            "id": settings["id"],
            "type": "fetal_heart",
            "firmware": FIRMWARE_VERSION,
            "boot": boot,
            "rates_hz": {"doppler": _DOPPLER_HZ, "ppg": state.ppg_hz},
            "doppler_encoding": "adpcm" if state.adpcm else "pcm16",
            "resend_buffer_bytes": _STORE_BYTES,
            "reset_cause": state.sup.reset_cause,
            "reset_note": state.sup.reset_note,
            "loop_lag_max_ms": state.sup.lag_max_ms,
        }
    ).encode()


def make_control(link_ref, settings, boot, state):
    def on_control(op, rid, args):
        link = link_ref[0]
        if op == p.OP_START:
            state.streaming = True
        elif op == p.OP_STOP:
            state.streaming = False
        elif op == p.OP_GET_INFO:
            link.send_record(p.S_INFO, link.now_ms(), info(settings, boot, state))
        elif op == p.OP_SET_RATE:
            if len(args) != 3:
                return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
            stream, rate = args[0], args[1] | (args[2] << 8)
            if stream == p.S_DOPPLER and rate == _DOPPLER_HZ:
                pass
            elif stream == p.S_PPG and rate == _PPG_HZ:
                state.ppg_hz = rate
            else:
                return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
        elif op == p.OP_FEEDBACK:
            if len(args) < 2 or args[0] > p.FB_GOOD:
                return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
            state.fb.on_remote(args[0], args[1])
        elif op == p.OP_PAIR:
            if state.pairing is None and not settings.get("pair_secret"):
                return p.encode_reply(op, rid, p.ST_UNAVAILABLE)
            return state.load_pairing().handle(op, rid, args)
        else:
            return None
        return p.encode_reply(op, rid, p.ST_OK)

    return on_control


async def main(settings_path):
    store = _STORE  # allocated first, before the heap fragments
    records = _RECORDS
    sup = supervisor.Supervisor(hal)
    sup.stopping = hal.stopped().is_set
    asyncio.get_event_loop().set_exception_handler(sup.on_exception)
    settings = storage.load_settings(settings_path)
    boot = storage.next_boot(settings_path.rsplit(".", 1)[0] + ".boot")
    state = State(settings)
    state.sup = sup
    adv = {"id": settings["id"], "type": p.DT_FETAL_HEART, "name": settings.get("name", "")}
    radio = hal.make_radio(settings, adv)
    link_ref = [None]
    link = Link(
        radio,
        store,
        p.DT_FETAL_HEART,
        boot,
        make_control(link_ref, settings, boot, state),
        records,
    )
    link_ref[0] = link
    if settings.get("key"):  # provisioned: every frame is signed (docs/protocol.md)
        link.set_key(binascii.unhexlify(settings["key"]))
    radio.on_connect = link.connected
    state.load_pairing = pairing_loader(state, settings, settings_path, link, radio, adv)
    if settings.get("pair_secret"):  # a label PAIR comes unsigned (docs/protocol.md, "Pairing")
        link.unsigned_ok = lambda op: op == p.OP_PAIR
    state.fb = Feedback(hal, time.ticks_ms, time.ticks_diff, settings.get("speaker", True))
    link.send_record(p.S_EVENT, link.now_ms(), bytes((p.EV_BOOT,)))
    sup.start("radio", radio.run())
    sup.start("tx", link.tx_task())
    sup.start("doppler", doppler_task(link, state))
    sup.start("ppg", ppg_task(link, state))
    sup.start("status", status_task(link))
    sup.start("feedback", feedback_task(state.fb))
    sup.start("button", button_task(link, state))
    # A boot never wraps (renewal.py): PPG's seq counts 80 times slower than the Doppler's
    counts = lambda: (state.doppler_seq, link.now_ms())  # noqa: E731
    hold = lambda on: setattr(state, "held", on)  # noqa: E731
    sup.start("renewal", renewal.run(link, counts, hold, hal.reset))
    for t in hal.background_tasks():
        sup.start("hal", t)
    asyncio.create_task(sup.run())
    await hal.stopped().wait()


def _start(path):
    if storage.provisioning_wanted(path, sys.argv[2:]):  # USB console (perimon provision)
        import provision

        provision.console(path, "fetal_heart", FIRMWARE_VERSION)
    else:
        asyncio.run(main(path))


if __name__ == "__main__":  # a board runs main.py as __main__; tests import the tasks
    _path = sys.argv[1] if len(sys.argv) > 1 else "device.json"
    supervisor.boot(hal, lambda: _start(_path))
