# HMAC-SHA256 (RFC 2104, FIPS 198-1) on top of hashlib.sha256, the one hash MicroPython ships.
# The same file runs under CPython; tests check it against RFC 4231 and Python's hmac module
# under both interpreters. MicroPython's sha256 objects cannot be copied, so each MAC hashes
# the two 64-byte padded keys again: four compression-function calls plus the message.
import hashlib

_BLOCK = 64


class HMAC:
    """A key prepared once; digest(*parts) is HMAC-SHA256 over the concatenated parts."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = bytes(key) + bytes(_BLOCK - len(key))
        self._ipad = bytes([b ^ 0x36 for b in key])
        self._opad = bytes([b ^ 0x5C for b in key])

    def digest(self, *parts):
        h = hashlib.sha256(self._ipad)
        for part in parts:
            h.update(part)
        inner = h.digest()
        h = hashlib.sha256(self._opad)
        h.update(inner)
        return h.digest()


def hmac_sha256(key, msg):
    return HMAC(key).digest(msg)


def equal(a, b):
    """Compare two MACs in time independent of where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
