# Run under the MicroPython Unix port: encodes the vectors the CPython tests decode, and decodes
# the frames CPython sends on stdin (one hex frame per line), printing JSON lines.
import json
import math
import sys

sys.path.append(sys.argv[1])  # firmware/lib
import protocol as p

mode = sys.argv[2]
if mode == "encode":
    out = []
    # plain record frames of both device types
    out.append(
        p.encode_frame(
            0,
            p.DT_FETAL_HEART,
            p.S_STATUS,
            7,
            3,
            123456,
            p.encode_status(3900, 71, True, False, False),
        )
    )
    out.append(
        p.encode_frame(
            p.F_MORE, p.DT_JAUNDICE, p.S_INFO, 65535, 4294967295, 4294967295, b'{"id":"x"}'
        )
    )
    out.append(
        p.encode_frame(0, p.DT_FETAL_HEART, p.S_EVENT, 1, 0, 0, bytes((p.EV_BOOT,)), b"\x01" * 8)
    )
    # PCM16 and ADPCM Doppler: a 300 Hz tone at 4 kHz
    tone = [int(8000 * math.sin(2 * math.pi * 300 * i / 4000)) for i in range(454)]
    out.append(
        p.encode_frame(
            0, p.DT_FETAL_HEART, p.S_DOPPLER, 2, 4000, 1000, p.pcm16_encode(tone, 0, 100)
        )
    )
    st = [0, 0]
    out.append(
        p.encode_frame(
            p.F_ADPCM, p.DT_FETAL_HEART, p.S_DOPPLER, 2, 0, 1000, p.adpcm_encode(tone, 0, 454, st)
        )
    )
    # a jaundice record
    fl = [[[1000 + 10 * led + d + f for f in range(5)] for d in range(2)] for led in range(6)]
    out.append(
        p.encode_frame(
            0,
            p.DT_JAUNDICE,
            p.S_TCB,
            3,
            9,
            5000,
            p.encode_tcb(
                p.TCB_CONTACT, 31.25, (12, 13), (14, 15), (100, 110, 120, 130, 140, 150), fl
            ),
        )
    )
    # the smallest ATT MTU: the largest frame that fits a 20-byte notification
    out.append(
        p.encode_frame(
            0,
            p.DT_FETAL_HEART,
            p.S_PPG,
            1,
            50,
            10,
            p.pcm16_encode([1, -2, 3], 0, p.max_payload(23, False) // 2),
        )
    )
    print(
        json.dumps({"frames": [f.hex() for f in out], "tone": tone, "crc": p.crc16(b"123456789")})
    )
else:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        d = p.decode_frame(bytes.fromhex(line))
        if d is None:
            print(json.dumps(None))
            continue
        flags, dt, stream, boot, seq, t_ms, payload, tag = d
        ctl = p.decode_control(payload) if stream == p.S_CONTROL else None
        print(
            json.dumps(
                {
                    "flags": flags,
                    "dt": dt,
                    "stream": stream,
                    "boot": boot,
                    "seq": seq,
                    "t_ms": t_ms,
                    "payload": payload.hex(),
                    "tag": tag.hex() if tag else None,
                    "op": ctl[0] if ctl else None,
                    "rid": ctl[1] if ctl else None,
                }
            )
        )
