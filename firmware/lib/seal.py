# The payload seal (docs/protocol.md, "Confidentiality"): AES-256 in counter mode (NIST SP
# 800-38A) under a key derived from the session key. The keystream is built from ECB blocks:
# cryptolib has ECB on every port, CTR on few (the Unix port refuses mode 6). The caller's tag
# over header and ciphertext makes it an AEAD: encrypt-then-MAC, the header the associated data.
import struct

import cryptolib

SEAL_LABEL = b"perimon-v1 seal"  # K_e = HMAC-SHA256(K_s, label): the seal's own key
_ECB = 1
_CHUNK = 8  # counter blocks per cipher call: a small buffer, two calls for a full Doppler frame


class Seal:
    def __init__(self, mac):
        """`mac` is the session key's HMAC (hmac_sha256.HMAC)."""
        self._aes = cryptolib.aes(mac.digest(SEAL_LABEL), _ECB)
        self._ks = bytearray(16 * _CHUNK)  # counter blocks, then their keystream, in place
        self._mv = memoryview(self._ks)

    def apply(self, nonce, stream, seq, buf):
        """XOR the keystream of (nonce, stream, seq) into `buf` (writable) in place: sealing
        and opening are the same. Counter block i: nonce (8 bytes), u8 stream, u32 seq and
        u24 i, big-endian, so that it is the standard CTR counter, incremented in its low
        bytes. Nothing is allocated per byte: the blocks and their keystream share one small
        buffer. (A viper XOR would be faster, but native code compiled under the Unix port
        leaves its 128 KiB heap unable to compile the modules loaded after it.)"""
        n = len(buf)
        ks = self._ks
        done = block = 0
        while done < n:
            nb = min(_CHUNK, (n - done + 15) >> 4)
            for i in range(nb):
                o = i << 4
                ks[o : o + 8] = nonce
                struct.pack_into(">BIBH", ks, o + 8, stream, seq, 0, block + i)
            mv = self._mv[: nb << 4]
            self._aes.encrypt(mv, mv)
            m = min(n - done, nb << 4)
            for i in range(m):
                buf[done + i] ^= ks[i]
            done += m
            block += nb
