# Run under the MicroPython Unix port: HMAC-SHA256 vectors, and the device side of frame
# authentication (firmware/lib/link.py) driven by frames the CPython test writes on stdin.
import json
import sys

sys.path.append(sys.argv[1])  # firmware/lib
import binascii

import link as L
import protocol as p
from framestore import FrameStore

mode = sys.argv[2]
if mode == "hmac":  # one "key_hex msg_hex" per line -> one MAC (hex) per line
    from hmac_sha256 import hmac_sha256

    for line in sys.stdin:
        k, m = line.split()
        print(binascii.hexlify(hmac_sha256(binascii.unhexlify(k), binascii.unhexlify(m))).decode())
    sys.exit(0)


class FixedRandom:  # the test knows the nonces the device will draw
    def __init__(self):
        self.n = 0

    def urandom(self, k):
        self.n += 1
        return bytes([0x40 + self.n] * k)


class Radio:
    connected = True
    mtu = 247
    on_write = None
    connects = 1


L.os = FixedRandom()
link = L.Link(Radio(), FrameStore(8192, 64), p.DT_FETAL_HEART, 3, lambda op, rid, a: None)
link.set_key(binascii.unhexlify(sys.argv[3]))
link.send_record(p.S_EVENT, 5, bytes((p.EV_BOOT,)))
link.send(p.S_DOPPLER, 0, 10, bytes(range(40)), p.F_ADPCM)
link.send(p.S_DOPPLER, 74, 28, bytes(range(40, 80)), p.F_ADPCM)
if len(sys.argv) > 4:  # paired since: a new key, the frames above stored under the old one
    link.set_key(binascii.unhexlify(sys.argv[4]))  # as Pairing._confirm stores it
    link.txq.clear()  # the old link went down with them
for line in sys.stdin:  # control frames written by the gateway
    link._on_write(binascii.unhexlify(line.strip()))
while link.resend:
    link._resend_next()
out = [binascii.hexlify(f).decode() for f in link.txq]
print(json.dumps({"frames": out, "rejected": link.rejected, "room": link.payload_room()}))
