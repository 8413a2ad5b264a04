# Pairing at home: a press of the device's button opens a two-minute window in which the device
# advertises "pairing" and answers PAIR commands unsigned. The gateway and the device agree on
# a new device key by finite-field Diffie-Hellman (RFC 3526 group 14, 2048-bit MODP, 256-bit
# exponents) with a commitment, and both show a 4-digit code derived from the exchange: the
# page shows it, the device blinks and beeps it. The new key is stored only when the user
# pressed the device's button again after the code appeared (the codes matched) AND the gateway
# proved it holds the same key (the user confirmed on the page). docs/security.md, "Pairing".
#
# Loaded on the first button press only: nothing of it is in RAM on a device never paired.
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
CODE_DIGITS = const(4)

# PAIR steps (the first byte of the command's arguments)
PS_COMMIT = const(1)  # u8[32] SHA-256("perimon-v1 pair commit" || A)
PS_GET = const(2)  # u8 half -> reply: that half of B
PS_REVEAL = const(3)  # u8 half, that half of A
PS_CONFIRM = const(4)  # u8[16] HMAC(K', "perimon-v1 pair confirm" || id) -> u8[16] "... done"

LABEL_COMMIT = b"perimon-v1 pair commit"
LABEL_KEY = b"perimon-v1 pair key"
LABEL_CODE = b"perimon-v1 pair code"
LABEL_CONFIRM = b"perimon-v1 pair confirm"
LABEL_DONE = b"perimon-v1 pair done"

# states
IDLE = const(0)
OPEN = const(1)  # window open, waiting for the gateway
COMMITTED = const(2)  # gateway's commitment held, B computed
CODE = const(3)  # code shown, waiting for the user's press and the gateway's confirmation
ACCEPTED = const(4)  # the user pressed: the codes match


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
        self._reset()

    def _reset(self):
        self._commit = None
        self._x = None
        self._b = None
        self._a = bytearray(GROUP_BYTES)
        self._a_got = 0
        self.key = None
        self.code = None

    # ---- the button ----

    def press(self):
        if self.state == CODE:
            self.state = ACCEPTED  # the user saw the same code on the page
            self.log("PAIR accepted")
            return
        if self.state == ACCEPTED:
            return
        self._reset()
        self.state = OPEN
        self.until = time.ticks_add(time.ticks_ms(), WINDOW_MS)
        self.adv["pairing"] = 1
        self.fb.pairing = True
        self.hal.led("cyan", True)
        self.log("PAIR open")
        self.radio.readvertise()

    def is_open(self):
        return self.state != IDLE and time.ticks_diff(self.until, time.ticks_ms()) > 0

    def close(self, why):
        if self.state == IDLE:
            return
        self.state = IDLE
        self._reset()
        self.adv.pop("pairing", None)
        self.fb.pairing = False
        self.log("PAIR closed " + why)
        self._drop_soon()

    def _drop_soon(self):
        self._drop_at = time.ticks_add(time.ticks_ms(), 300)

    # ---- PAIR commands ----

    def handle(self, op, rid, args):
        if not self.is_open() or len(args) < 1:
            return p.encode_reply(op, rid, p.ST_UNAVAILABLE)
        step = args[0]
        if step == PS_COMMIT and len(args) == 33 and self.state in (OPEN, COMMITTED):
            self._reset()
            self._commit = bytes(args[1:])
            x = int.from_bytes(os.urandom(_EXP_BYTES), "big") | (1 << (8 * _EXP_BYTES - 1))
            self._x = x
            self._b = pow(2, x, prime()).to_bytes(GROUP_BYTES, "big")
            self.state = COMMITTED
            return p.encode_reply(op, rid, p.ST_OK)
        if step == PS_GET and len(args) == 2 and self._b is not None and args[1] < 2:
            h = args[1]
            return p.encode_reply(op, rid, p.ST_OK, self._b[h * HALF : (h + 1) * HALF])
        if step == PS_REVEAL and len(args) == 2 + HALF and self.state == COMMITTED:
            h = args[1]
            if h > 1:
                return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
            self._a[h * HALF : (h + 1) * HALF] = args[2:]
            self._a_got |= 1 << h
            if self._a_got == 3:
                return self._agree(op, rid)
            return p.encode_reply(op, rid, p.ST_OK)
        if step == PS_CONFIRM and len(args) == 17 and self.state in (CODE, ACCEPTED):
            return self._confirm(op, rid, bytes(args[1:]))
        return p.encode_reply(op, rid, p.ST_BAD_REQUEST)

    def _agree(self, op, rid):
        a_bytes = bytes(self._a)
        h = hashlib.sha256(LABEL_COMMIT)
        h.update(a_bytes)
        if not equal(h.digest(), self._commit):
            self.close("commitment mismatch")  # someone changed the gateway's value
            return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
        pr = prime()
        a = int.from_bytes(a_bytes, "big")
        if a < 2 or a > pr - 2:
            self.close("bad public value")
            return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
        s = pow(a, self._x, pr).to_bytes(GROUP_BYTES, "big")
        self._x = None
        dev_id = self.settings["id"].encode()
        self.key = derive_key(s, a_bytes, self._b, dev_id)
        self.code = code_of(a_bytes, self._b)
        self.state = CODE
        self.log("PAIR code " + self.code)
        return p.encode_reply(op, rid, p.ST_OK)

    def _confirm(self, op, rid, mac):
        dev_id = self.settings["id"].encode()
        want = HMAC(self.key).digest(LABEL_CONFIRM, dev_id)[:16]
        if not equal(want, mac):
            self.close("bad confirmation")
            return p.encode_reply(op, rid, p.ST_BAD_REQUEST)
        if self.state != ACCEPTED:
            return p.encode_reply(op, rid, p.ST_UNAVAILABLE)  # waiting for the user's press
        key = self.key
        self.settings["key"] = _hex(key)
        save_settings(self.path, self.settings)
        proof = HMAC(key).digest(LABEL_DONE, dev_id)[:16]
        self.paired += 1
        self.log("PAIR stored")
        # Every frame from here on, this reply included, is signed with the new key; the
        # gateway closes the link and the device comes back without the pairing flag.
        self.link.set_key(key)
        self.state = IDLE
        self._reset()
        self.adv.pop("pairing", None)
        self.fb.pairing = False
        self._drop_soon()
        return p.encode_reply(op, rid, p.ST_OK, proof)

    # ---- the window and the code ----

    async def run(self):
        while True:
            await asyncio.sleep_ms(200)
            if self._drop_at is not None and time.ticks_diff(time.ticks_ms(), self._drop_at) >= 0:
                self._drop_at = None
                self.radio.readvertise()
            if self.state != IDLE and not self.is_open():
                self.close("timeout")
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
