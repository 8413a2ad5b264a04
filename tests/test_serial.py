"""USB serial transport: SLIP framing, and a device on the far end of a pseudo-terminal."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import tty

from hypothesis import given
from hypothesis import strategies as st

from gateway import protocol as p
from gateway.protocol import SerialKind
from gateway.transports.serial import SerialTransport, SlipDecoder, slip_encode

K_HELLO, K_LINK_UP, K_FRAME, K_WRITE, K_WHO = SerialKind


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8), st.integers(1, 64))
def test_slip_round_trip_in_any_chunking(packets, chunk):
    wire = b"garbage" + b"".join(slip_encode(x) for x in packets)
    dec = SlipDecoder()
    out = []
    for i in range(0, len(wire), chunk):
        out += dec.feed(wire[i : i + chunk])
    assert out[-len(packets) :] == packets


def test_bad_escape_drops_only_that_packet():
    dec = SlipDecoder()
    out = dec.feed(b"\xc0\x01\xdb\x00\x02\xc0" + slip_encode(b"ok"))
    assert out == [b"ok"] and dec.errors == 1


def _frame(seq: int) -> bytes:
    return p.encode_frame(
        p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART, p.Stream.STATUS, 1, seq, 0, b"\x01\x02")
    )


def test_device_on_a_pty_links_streams_takes_writes_and_unplugs():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    got: list[bytes] = []
    closed: list[str] = []
    links = []

    async def device() -> list[bytes]:
        """The device side: answer WHO with HELLO, stream frames, collect control writes."""
        loop = asyncio.get_running_loop()
        dec = SlipDecoder()
        writes: list[bytes] = []
        up = False
        while len(writes) < 2:
            data = await loop.run_in_executor(None, os.read, master, 1024)
            for pkt in dec.feed(data):
                if pkt[0] == K_WHO:
                    hello = {"id": "fh-07", "type": 1, "name": "fh-07"}
                    os.write(master, slip_encode(bytes((K_HELLO,)) + json.dumps(hello).encode()))
                elif pkt[0] == K_LINK_UP and not up:
                    up = True
                    assert struct.unpack("<H", pkt[1:3])[0] >= 247
                    os.write(master, b"".join(slip_encode(bytes((K_FRAME,)) + _frame(i))
                                              for i in range(5)))  # fmt: skip
                elif pkt[0] == K_WRITE:
                    writes.append(pkt[1:])
        return writes

    async def main():
        t = SerialTransport([path])

        async def on_link(link):
            link.on_frame = got.append
            link.on_close = closed.append
            links.append(link)

        await t.start(on_link)
        dev = asyncio.create_task(device())
        for _ in range(100):
            if len(got) == 5:
                break
            await asyncio.sleep(0.05)
        link = links[0]
        assert (link.device_id, link.device_type) == ("fh-07", 1)
        await link.write(_frame(100))
        await link.write(_frame(101))
        writes = await asyncio.wait_for(dev, 5)
        await link.close()
        await asyncio.sleep(0.3)
        await t.stop()
        return writes

    try:
        writes = asyncio.run(main())
    finally:
        os.close(master)
        os.close(slave)
    assert got == [_frame(i) for i in range(5)]
    assert writes == [_frame(100), _frame(101)]
    assert closed and closed[0] == "closed by gateway"
