# Pairing at home: the gateway and the device agree on a new device key by finite-field
# Diffie-Hellman (RFC 3526 group 14, 2048-bit MODP, 256-bit exponents), the gateway committing
# to its public value first, and both confirm the key before either stores it. Two ways to
# authenticate the exchange (docs/security.md, "Pairing at home"):
#   button: a long press (held 2 s: a short one is a movement mark, firmware/lib/presses.py)
#     opens a two-minute window in which the device advertises "pairing" and answers PAIR
#     unsigned; both show a 4-digit code derived from the exchange (the page shows it, the
#     device blinks and beeps it), and the key is stored only after the user pressed the
#     button again, short or long (the codes matched; while the window is open no press is a
#     movement mark) AND the gateway proved it holds the key. One COMMIT
#     per press: a second one, or an exchange left half-way, closes the window and shows red
#     (else a man in the middle commits again and again until the device's code is the one
#     the page shows).
#   label: the gateway proves, by an HMAC under the pairing secret printed on the label
#     (provisioned over USB, never used for anything else), that A is its own, and the device
#     answers with an HMAC over A and B: a radio man in the middle without the label fails.
#     Taken without a press (the label is the proof of access), one attempt per back-off.
#
# Loaded at the first button press or label PAIR: nothing of it is in RAM before.
import hashlib
import json
import os
import time

import asyncio
import protocol as p
from hmac_sha256 import HMAC, equal
from micropython import const

# RFC 3526, section 3: the 2048-bit MODP group (generator 2).
_P_HEX = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
)
GROUP_BYTES = const(256)
HALF = const(128)  # public values travel in two halves: a frame holds at most 244 bytes
_EXP_BYTES = const(32)  # 256-bit exponents: RFC 3526's estimate for this group is 110+ bits
WINDOW_MS = const(120000)
EXCHANGE_MS = const(30000)  # from COMMIT to the second REVEAL; the gateway waits 30 s a step
ALARM_MS = const(8000)  # a window closed by an attack shows red this long
_ALARM_HZ = const(220)
LABEL_WINDOW_MS = const(30000)  # a label exchange must finish in this time
BACKOFF_MS = const(2000)  # between label attempts: doubled by each one that fails...
BACKOFF_MAX_MS = const(64000)  # ...up to this
CODE_DIGITS = const(4)

# PAIR steps: protocol.PS_* (docs/protocol.md, "Pairing")
LABEL_COMMIT = b"perimon-v1 pair commit"
LABEL_LABEL_COMMIT = b"perimon-v1 pair label commit"
LABEL_LABEL_DEVICE = b"perimon-v1 pair label device"
LABEL_KEY = b"perimon-v1 pair key"
LABEL_CODE = b"perimon-v1 pair code"
LABEL_CONFIRM = b"perimon-v1 pair confirm"
LABEL_DONE = b"perimon-v1 pair done"

# states
IDLE = const(0)
OPEN = const(1)  # window open, waiting for the gateway
COMMITTED = const(2)  # gateway's commitment held, B computed
CODE = const(3)  # code shown, waiting for the user's press and the gateway's confirmation
ACCEPTED = const(4)  # the user pressed (the codes match), or the label authenticated both sides


def prime():
    return int(_P_HEX, 16)


def code_of(a_bytes, b_bytes):
    """The short code both sides show: digits 1-9 (a digit is blinked that many times)."""
    h = hashlib.sha256(LABEL_CODE)
    h.update(a_bytes)
    h.update(b_bytes)
    v = int.from_bytes(h.digest()[:8], "big")
    out = ""
    for _ in range(CODE_DIGITS):
        out += str(v % 9 + 1)
        v //= 9
    return out


def derive_key(s_bytes, a_bytes, b_bytes, device_id):
    return HMAC(s_bytes).digest(LABEL_KEY, a_bytes, b_bytes, device_id)


def label_commit(secret, device_id, a_bytes):
    """The gateway's commitment to A in a label pairing: it also proves the label's secret."""
    return HMAC(secret).digest(LABEL_LABEL_COMMIT, device_id, a_bytes)


def label_device(secret, device_id, a_bytes, b_bytes):
    """The device's answer in a label pairing: B is its own, for this A."""
    return HMAC(secret).digest(LABEL_LABEL_DEVICE, device_id, a_bytes, b_bytes)[:16]


def save_settings(path, settings):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(settings, f)
    os.rename(tmp, path)  # atomic: never a half-written device.json


class Pairing:
    def __init__(self, settings, settings_path, link, radio, adv, fb, hal, log=print):
        self.settings = settings
        self.path = settings_path
        self.link = link
        self.radio = radio
        self.adv = adv
        self.fb = fb
        self.hal = hal
        self.log = log
        self.state = IDLE
        self.until = 0
        self.paired = 0
        self._drop_at = None  # re-advertise then (after the reply in flight has gone out)
        self._exchange_until = 0  # a committed exchange must reach the code by then
        self._alarm_at = None  # when the red light of an attacked window began
        self._label_fails = 0  # label attempts since the last success
        self._label_at = 0  # when the last one started...
        self._label_wait = 0  # ...and how long until the next may
        self._last = None  # (request id, its bytes, the reply): the last PAIR request answered
        self._a = bytearray(GROUP_BYTES)  # the gateway's value, half by half; made once
        self._reset()

    def _reset(self):
        self._label = None  # the label's secret while a label exchange runs
        self._commit = None
        self._x = None
        self._b = None
        self._a_got = 0  # which halves of _a came (it is not cleared: _reset allocates nothing)
        self.key = None
        self.code = None

    # ---- the button ----

    def confirm(self):
        """A short press in the window: accepts the code shown, and does nothing else."""
        if self.state == CODE:
            self.state = ACCEPTED  # the user saw the same code on the page
            self.log("PAIR accepted")

    def press(self):
        """A long press: opens the window (again), or accepts the code shown."""
        if self.state == CODE:
            self.confirm()
            return
        if self.state == ACCEPTED:
            return
        self._reset()
        self.state = OPEN
        self._alarm_at = None
        self.until = time.ticks_add(time.ticks_ms(), WINDOW_MS)
        self.adv["pairing"] = 1
        self.fb.pairing = True
        self.hal.led("cyan", True)
        self.log("PAIR open")
        self.radio.readvertise()

    def is_open(self):
        return self.state != IDLE and time.ticks_diff(self.until, time.ticks_ms()) > 0

    def accepts_unsigned(self, op):
        """For Link.unsigned_ok: PAIR in the window, or on a device that has a pairing secret
        (handle() answers status 3 to all but a label step, and while backing off)."""
        return op == p.OP_PAIR and (self.is_open() or bool(self.settings.get("pair_secret")))

    def close(self, why, alarm=False):
        """End the window; alarm: a button exchange was interfered with, show red and a low
        tone (the user then knows a code on the page is not this device's)."""
        if self.state == IDLE:
            return
        alarm = alarm and self._label is None  # a label's failures back off instead
        self.state = IDLE
        self._reset()
        self.adv.pop("pairing", None)
        if alarm:
            self.hal.led("red", True)
            self.hal.tone(_ALARM_HZ, 600)
            self._alarm_at = time.ticks_ms()  # the pairing light keeps the LED until then
        elif self.fb is not None:
            self.fb.pairing = False
        self.log("PAIR closed " + why)
        self._drop_soon()

    def _drop_soon(self):
        self._drop_at = time.ticks_add(time.ticks_ms(), 300)

    # ---- PAIR commands ----

    def handle(self, op, rid, args):
        """A PAIR request. One asked again (the same id and bytes: the gateway repeats a
        request that got no answer) gets the answer it got the first time, not a second run
        of the step. One the heap had no room for (MemoryError: the big numbers need 514-byte
        blocks a fragmented heap may lack for a moment) is answered busy and runs again when
        asked again: silence cost the gateway a whole attempt's wait (10 s). So every step
        computes first and changes its state last: a MemoryError leaves it as it was."""
        asked = bytes(args)
        last = self._last
        if last is not None and last[0] == rid and last[1] == asked:
            return last[2]
        self._last = None
        try:
            reply = self._handle(op, rid, args)
        except MemoryError:
            self.log("PAIR busy")
            return p.encode_reply(op, rid, p.ST_BUSY)
        self._last = (rid, asked, reply)
        return reply

    def _handle(self, op, rid, args):
        if len(args) == 33 and args[0] == p.PS_LABEL_COMMIT:
            return self._label_start(op, rid, bytes(args[1:]))
        if not self.is_open() or len(args) < 1:
            return p.encode_reply(op, rid, p.ST_UNAVAILABLE)
        step = args[0]
        if step == p.PS_COMMIT and len(args) == 33:
            if self._label is not None:
                return p.encode_reply(op, rid, p.ST_UNAVAILABLE)  # a label exchange runs
            if self.state != OPEN:
                # One COMMIT per press: a second would hand out a new B, so a new code, and a
                # man in the middle would commit until the code is the one on the page.
                self.close("second commit", alarm=True)
                return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
            self._commit_to(bytes(args[1:]))
            self._exchange_until = time.ticks_add(time.ticks_ms(), EXCHANGE_MS)
            return p.encode_reply(op, rid, p.ST_OK)
        if step == p.PS_GET and len(args) == 2 and self._b is not None and args[1] < 2:
            h = args[1]
            return p.encode_reply(op, rid, p.ST_OK, self._b[h * HALF : (h + 1) * HALF])
        if step == p.PS_REVEAL and len(args) == 2 + HALF and self.state == COMMITTED:
            h = args[1]
            if h > 1:
                return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
            self._a[h * HALF : (h + 1) * HALF] = args[2:]
            self._a_got |= 1 << h
            if self._a_got == 3:
                return self._agree(op, rid)
            return p.encode_reply(op, rid, p.ST_OK)
        if step == p.PS_CONFIRM and len(args) == 17 and self.state in (CODE, ACCEPTED):
            return self._confirm(op, rid, bytes(args[1:]))
        return p.encode_reply(op, rid, p.ST_BAD_REQUEST)

    def _commit_to(self, commit, label=None):
        """Hold the gateway's commitment; draw x and compute B (first: a MemoryError there
        leaves the exchange as it was)."""
        x = int.from_bytes(os.urandom(_EXP_BYTES), "big") | (1 << (8 * _EXP_BYTES - 1))
        b = pow(2, x, prime()).to_bytes(GROUP_BYTES, "big")
        self._reset()
        self._label = label
        self._commit = commit
        self._x = x
        self._b = b
        self.state = COMMITTED

    def _label_start(self, op, rid, commit):
        """A label PAIR: a new exchange, one per back-off (a wrong or abandoned one doubles
        it; a stored key resets it), outside the button's window too."""
        since = time.ticks_diff(time.ticks_ms(), self._label_at)
        if (
            not self.settings.get("pair_secret")
            or 0 <= since < self._label_wait  # backing off
            or (self.is_open() and self._label is None)  # the button's turn
        ):
            return p.encode_reply(op, rid, p.ST_UNAVAILABLE)
        self._commit_to(commit, bytes.fromhex(self.settings["pair_secret"]))  # busy: no back-off
        self._label_wait = min(BACKOFF_MAX_MS, BACKOFF_MS << min(self._label_fails, 5))
        self._label_fails += 1
        self._label_at = time.ticks_ms()
        self.until = time.ticks_add(time.ticks_ms(), LABEL_WINDOW_MS)
        self.log("PAIR label")
        return p.encode_reply(op, rid, p.ST_OK)

    def _agree(self, op, rid):
        a_bytes = bytes(self._a)
        dev_id = self.settings["id"].encode()
        if self._label is not None:
            want = label_commit(self._label, dev_id, a_bytes)
        else:
            h = hashlib.sha256(LABEL_COMMIT)
            h.update(a_bytes)
            want = h.digest()
        if not equal(want, self._commit):
            self.close("commitment mismatch", alarm=True)  # someone changed the gateway's value
            return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
        pr = prime()
        a = int.from_bytes(a_bytes, "big")
        if a < 2 or a > pr - 2:
            self.close("bad public value", alarm=True)
            return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
        s = pow(a, self._x, pr).to_bytes(GROUP_BYTES, "big")
        key = derive_key(s, a_bytes, self._b, dev_id)
        if self._label is not None:  # the label authenticated both values: no code to compare
            reply = p.encode_reply(op, rid, p.ST_OK,
                                   label_device(self._label, dev_id, a_bytes, self._b))  # fmt: skip
            self._x, self.key, self.state = None, key, ACCEPTED
            return reply
        code = code_of(a_bytes, self._b)
        reply = p.encode_reply(op, rid, p.ST_OK)
        shown = "PAIR code " + code
        self._x, self.key, self.code, self.state = None, key, code, CODE
        self.log(shown)
        return reply

    def _confirm(self, op, rid, mac):
        dev_id = self.settings["id"].encode()
        want = HMAC(self.key).digest(LABEL_CONFIRM, dev_id)[:16]
        if not equal(want, mac):
            self.close("bad confirmation", alarm=True)
            return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
        if self.state != ACCEPTED:
            return p.encode_reply(op, rid, p.ST_UNAVAILABLE)  # waiting for the user's press
        key = self.key
        reply = p.encode_reply(op, rid, p.ST_OK, HMAC(key).digest(LABEL_DONE, dev_id)[:16])
        self.settings["key"] = _hex(key)
        save_settings(self.path, self.settings)
        # Every frame from here on, this reply included, is sealed and signed with the new key,
        # those stored before it too when resent (the store keeps them in clear: link.py); the
        # gateway closes the link and the device comes back without the pairing flag. Setting
        # it takes the cipher's context: a MemoryError here is asked again and stores again.
        self.link.set_key(key)
        self.paired += 1
        if self._label is not None:
            self._label_fails = self._label_wait = 0
        self.log("PAIR stored")
        self.state = IDLE
        self._reset()
        self.adv.pop("pairing", None)
        if self.fb is not None:
            self.fb.pairing = False
        self._drop_soon()
        return reply

    # ---- the window and the code ----

    def tick(self):
        """The window's clock: re-advertise, end what has run out."""
        now = time.ticks_ms()
        if self._drop_at is not None and time.ticks_diff(now, self._drop_at) >= 0:
            self._drop_at = None
            self.radio.readvertise()
        if self._alarm_at is not None and time.ticks_diff(now, self._alarm_at) >= ALARM_MS:
            self._alarm_at = None
            if self.fb is not None and self.state == IDLE:
                self.fb.pairing = False
        if self.state == COMMITTED and self._label is None:
            if time.ticks_diff(now, self._exchange_until) >= 0:
                # B was handed out and A never revealed: whoever committed kept a code it did
                # not like; the user's press does not give it another
                self.close("abandoned", alarm=True)
        if self.state != IDLE and not self.is_open():
            self.close("timeout")

    async def run(self):
        while True:
            await asyncio.sleep_ms(200)
            self.tick()
            if self.state == CODE and self.code:
                await self._show_code()

    async def _show_code(self):
        """Blink and beep each digit that many times; repeat until pressed or closed."""
        for ch in self.code:
            for _ in range(ord(ch) - 48):
                if self.state != CODE:
                    return
                self.hal.led("magenta", False)
                self.hal.tone(1000, 120)
                await asyncio.sleep_ms(250)
                self.hal.led("off", False)
                await asyncio.sleep_ms(250)
            await asyncio.sleep_ms(900)
        await asyncio.sleep_ms(1500)


def _hex(b):
    return "".join("%02x" % x for x in b)
