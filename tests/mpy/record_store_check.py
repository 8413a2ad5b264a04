# Run under the MicroPython Unix port: a status record outlives a Doppler stream that fills the
# sample store when the link keeps records in a store of their own (firmware/lib/link.py).
import struct
import sys

sys.path.append(sys.argv[1])  # firmware/lib
import link as L
import protocol as p
from framestore import FrameStore


class Radio:
    connected = False  # the link is down: every frame goes to the stores only
    mtu = 247
    on_write = None


def resend_status(records):
    link = L.Link(Radio(), FrameStore(2048, 64), p.DT_FETAL_HEART, 1, lambda *a: None, records)
    link.send_record(p.S_STATUS, 0, p.encode_status(4000, 80, True, False, False))
    for i in range(100):  # 100 Doppler frames of 200 bytes: ten times what the store holds
        link.send(p.S_DOPPLER, i * 400, i * 100, bytes(200), p.F_ADPCM)
    args = struct.pack("<BII", p.S_STATUS, 0, 0xFFFFFFFF)
    reply = link._resend(p.OP_RESEND, 1, args)
    return reply[2], struct.unpack_from("<BII", reply, 3)[1], len(link.resend)


print(*resend_status(FrameStore(512, 16)))  # status, first seq held, ranges being resent
print(*resend_status(None))
