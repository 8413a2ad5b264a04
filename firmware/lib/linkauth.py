# The link's security once a device has a key (docs/protocol.md, "Authentication" and
# "Confidentiality"): this boot's session key, the answer to SESSION (one per connection, naming
# the central that asked), every frame sealed and signed as it leaves, and every command checked
# and opened. A module of its own, compiled only by a device that has a key: link.py must stay
# small enough to compile inside the fleet's 128 KiB heap.
import struct

import protocol as p
from hmac_sha256 import HMAC, equal
from micropython import const
from seal import Seal

_CTL_WINDOW = const(32)  # control frames may arrive this far out of order (replay bitmap)
SESSION_LABEL = b"perimon-v1 session"  # session key derivation (docs/protocol.md)
NO_PEER = bytes(p.PEER_LEN)  # a link without addresses (a cable, the simulated socket radio)


class LinkAuth:
    def __init__(self, key, boot, urandom):
        self.urandom = urandom
        self.boot_nonce = urandom(p.NONCE_LEN)
        label = SESSION_LABEL + struct.pack("<H", boot) + self.boot_nonce
        self.mac = HMAC(HMAC(key).digest(label))
        self._seal = Seal(self.mac)
        self.conn_nonce = None
        self.answered_on = None  # the radio's number of the connection that had its SESSION
        self._last = 0  # highest authenticated control seq of this session
        self._bits = 0  # which of the _CTL_WINDOW seqs below it were seen

    def session(self, rid, challenge, peer, conn):
        """The reply to SESSION, signed by the caller with the session key: it proves the device
        holds the key now, names the central it answers (a relay's own address, not the
        gateway's), and its fresh connection nonce binds the commands. One per connection,
        `conn` the radio's number for it (None for any other): a second one would replace the
        nonce under the gateway."""
        if conn == self.answered_on:
            return None
        self.answered_on = conn
        self.conn_nonce = self.urandom(p.NONCE_LEN)
        self._last = self._bits = 0
        data = challenge + self.boot_nonce + self.conn_nonce + peer
        return p.encode_reply(p.OP_SESSION, rid, p.ST_OK, data)

    def seal(self, frame, resent):
        """A frame as stored (in clear, unsigned) as it goes on the air: its payload sealed
        under (boot nonce, stream, seq), but a REPLY's (the session reply carries the boot nonce
        the gateway needs first); AUTH set; the tag over header and ciphertext with RESENT
        clear, so a resend under the same key is the same bytes but for that bit."""
        n = len(frame) - p.CRC_LEN
        out = bytearray(n + p.TAG_LEN + p.CRC_LEN)
        out[:n] = memoryview(frame)[:n]
        out[0] = (out[0] | p.F_AUTH) & ~p.F_RESENT
        stream = out[1] & 0x1F
        body = memoryview(out)[:n]
        if stream != p.S_REPLY:
            seq = struct.unpack_from("<I", out, 4)[0]
            self._seal.apply(self.boot_nonce, stream, seq, body[p.HEADER_LEN :])
        out[n : n + p.TAG_LEN] = self.mac.digest(body)[: p.TAG_LEN]
        if resent:
            out[0] |= p.F_RESENT
        n += p.TAG_LEN
        struct.pack_into("<H", out, n, p.crc16(memoryview(out)[:n]))
        return out

    def open_command(self, data, seq, tag):
        """The payload in clear of a signed command whose tag verifies and whose seq is fresh;
        None otherwise."""
        if not self.command_ok(data, seq, tag):
            return None
        clear = bytearray(data[p.HEADER_LEN : len(data) - p.TAG_LEN - p.CRC_LEN])
        self._seal.apply(self.conn_nonce, p.S_CONTROL, seq, clear)
        return bytes(clear)

    def command_ok(self, data, seq, tag):
        """A command must carry a tag over (connection nonce, frame) and a fresh seq."""
        if tag is None or self.conn_nonce is None:
            return False
        n = len(data) - p.TAG_LEN - p.CRC_LEN
        mac = self.mac.digest(self.conn_nonce, memoryview(data)[:n])
        if data[0] & p.F_RESENT or not equal(mac[: p.TAG_LEN], tag):
            return False
        if seq > self._last:
            shift = seq - self._last
            if shift > _CTL_WINDOW:
                self._bits = 0
            else:
                self._bits = ((self._bits << shift) | (1 << (shift - 1))) & 0xFFFFFFFF
            self._last = seq
            return True
        back = self._last - seq
        if back == 0 or back > _CTL_WINDOW or self._bits & (1 << (back - 1)):
            return False
        self._bits |= 1 << (back - 1)
        return True
