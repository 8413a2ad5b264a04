"""USB serial transport: SLIP framing, and a device on the far end of a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import threading
import tty

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import protocol as p
from gateway.protocol import SerialKind
from gateway.transports.serial import SerialTransport, SlipDecoder, slip_encode
from tests.harness.wait import eventually_async

K_HELLO, K_LINK_UP, K_FRAME, K_WRITE, K_WHO = SerialKind


@pytest.mark.unit
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8), st.integers(1, 64))
def test_slip_round_trip_in_any_chunking(packets, chunk):
    wire = b"garbage" + b"".join(slip_encode(x) for x in packets)
    dec = SlipDecoder()
    out = []
    for i in range(0, len(wire), chunk):
        out += dec.feed(wire[i : i + chunk])
    assert out[-len(packets) :] == packets


@pytest.mark.unit
def test_bad_escape_drops_only_that_packet():
    dec = SlipDecoder()
    out = dec.feed(b"\xc0\x01\xdb\x00\x02\xc0" + slip_encode(b"ok"))
    assert out == [b"ok"] and dec.errors == 1


@pytest.fixture
def pty_pair():
    """A raw pseudo-terminal: (the device's end, the end the gateway opens by its path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, slave
    os.close(master)
    os.close(slave)


def _frame(seq: int) -> bytes:
    return p.encode_frame(
        p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART, p.Stream.STATUS, 1, seq, 0, b"\x01\x02")
    )


@pytest.mark.system
def test_device_on_a_pty_links_streams_takes_writes_and_unplugs(pty_pair):
    master, slave = pty_pair
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
        await eventually_async(lambda: len(got) == 5, 5, lambda: f"{len(got)} of 5 frames")
        link = links[0]
        assert (link.device_id, link.device_type) == ("fh-07", 1)
        await link.write(_frame(100))
        await link.write(_frame(101))
        writes = await asyncio.wait_for(dev, 5)
        await link.close()
        await eventually_async(lambda: closed, 5, "the link did not close")
        await t.stop()
        return writes

    writes = asyncio.run(main())
    assert got == [_frame(i) for i in range(5)]
    assert writes == [_frame(100), _frame(101)]
    assert closed and closed[0] == "closed by gateway"


@pytest.mark.system
def test_bad_packets_are_dropped_and_a_repeated_hello_keeps_the_link(pty_pair):
    """A HELLO that is not JSON, one without an id, an unknown kind: each dropped and counted,
    the port stays open; the same HELLO twice (it crossed WHO) gives one link, a new one two."""
    master, slave = pty_pair
    links = []
    closed: list[str] = []
    hello = json.dumps({"id": "fh-08", "type": 1, "run": "a1"}).encode()

    async def main() -> SerialTransport:
        t = SerialTransport([os.ttyname(slave)])

        async def on_link(link):
            link.on_close = closed.append
            links.append(link)

        await t.start(on_link)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, os.read, master, 64)  # the gateway's WHO: it listens
        os.write(master, slip_encode(bytes((K_HELLO,)) + b"{not json")
                 + slip_encode(bytes((K_HELLO,)) + b'{"type": 1}')
                 + slip_encode(b"\x63junk") + slip_encode(bytes((K_HELLO,)) + hello)
                 + slip_encode(bytes((K_HELLO,)) + hello))  # fmt: skip
        await eventually_async(lambda: links, 5, "no link")
        await asyncio.sleep(0.3)  # a window for a second link to appear in: none may
        assert len(links) == 1 and not closed
        os.write(master, slip_encode(bytes((K_HELLO,)) + hello.replace(b"a1", b"b2")))
        await eventually_async(lambda: len(links) == 2, 5, "no link for the new run")
        await t.stop()
        return t

    t = asyncio.run(main())
    assert t.line_errors == 3
    assert closed[0] == "device restarted" and links[1].device_id == "fh-08"


@pytest.mark.system
def test_real_firmware_on_a_cable_links_answers_survives_noise_and_replugs(tmp_path):
    """The fetal monitor's firmware with radio_serial, through a UsbCable: HELLO -> link ->
    frames; a control write is answered; garbage on the line both ways breaks nothing; unplugged
    and plugged back, the device links again and its sequence numbers go on."""
    from simulators.fleet import DeviceSpec, VirtualDevice

    spec = DeviceSpec("fh-05", "fetal_heart", seed=3, signed=False)  # unsigned: plain writes
    links: list = []
    frames: list[p.Frame] = []
    closed: list[str] = []

    def on_frame(raw: bytes) -> None:
        frames.append(p.decode_frame(raw))  # a FrameError here fails the test

    async def on_link(link) -> None:
        link.on_frame = on_frame
        link.on_close = closed.append
        links.append(link)

    def doppler_seqs() -> list[int]:
        return [f.seq for f in frames if f.stream == p.Stream.DOPPLER]

    async def main() -> None:
        dev = VirtualDevice(spec, "", tmp_path, radio_kind="serial")
        t = SerialTransport([str(tmp_path / "fh-05" / "usb")])
        await t.start(on_link)
        await dev.start()
        try:
            await eventually_async(lambda: len(doppler_seqs()) >= 5, 20,
                                   lambda: f"no Doppler frames: {dev.console_lines()}")  # fmt: skip
            link = links[0]
            assert (link.device_id, link.device_type, link.att_mtu) == ("fh-05", 1, 512)
            rid = 9
            sync = p.Frame(p.Flag(0), 0, p.Stream.CONTROL, 0, 1, 0,
                           p.control_payload(p.Op.TIME_SYNC, rid, p.time_sync_args(123)))  # fmt: skip
            await link.write(p.encode_frame(sync))
            await eventually_async(lambda: any(f.stream == p.Stream.REPLY for f in frames), 10,
                                   "no reply")  # fmt: skip

            junk = bytes([p.SLIP_END, 7, 1, 2, p.SLIP_ESC, 0x55, p.SLIP_END]) + os.urandom(300)
            dev.usb.noise(to_gateway=junk, to_device=junk + bytes([p.SLIP_END]))
            n = len(frames)
            await eventually_async(lambda: len(frames) > n + 10, 10, "no frames after the noise")
            assert t.line_errors >= 1 and len(links) == 1 and not closed

            before = max(doppler_seqs())
            dev.usb.unplug()
            await eventually_async(lambda: closed, 10, "the unplugging was not noticed")
            assert closed[0].startswith("port lost")
            await asyncio.sleep(1.0)  # the cable stays out for a second
            dev.usb.plug()
            await eventually_async(lambda: len(links) == 2 and max(doppler_seqs()) > before, 15,
                                   "not streaming again after the replug")  # fmt: skip
            assert dev.proc is not None and dev.proc.returncode is None, dev.console_lines()
            assert not [x for x in dev.console_lines() if "Traceback" in x]
        finally:
            await dev.stop()
            await t.stop()

    asyncio.run(main())


@pytest.mark.system
def test_a_device_that_stops_reading_its_cable_does_not_stall_the_gateway(pty_pair):
    """Writes wait in a thread: the event loop keeps serving while the kernel buffer is full,
    and the stuck write ends as a link error after the write timeout, not a hang."""
    master, slave = pty_pair
    hello = json.dumps({"id": "fh-09", "type": 1}).encode()

    async def main() -> tuple[float, list[str]]:
        t = SerialTransport([os.ttyname(slave)])
        links = []

        async def on_link(link):
            links.append(link)

        await t.start(on_link)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, os.read, master, 64)  # the gateway's WHO
        os.write(master, slip_encode(bytes((K_HELLO,)) + hello))
        await eventually_async(lambda: links, 5, "no link")
        await asyncio.sleep(0.3)  # LINK_UP written; from now on the device reads nothing
        worst, errors, beat = 0.0, [], loop.time()

        async def writer() -> None:
            for _ in range(400):  # ~200 kB: far more than a pseudo-terminal buffers
                try:
                    await links[0].write(bytes(500))
                except ConnectionError as exc:
                    errors.append(str(exc))
                    return

        w = asyncio.create_task(writer())
        while not w.done():
            await asyncio.sleep(0.01)
            now = loop.time()
            worst, beat = max(worst, now - beat), now
        await t.stop()
        return worst, errors

    worst, errors = asyncio.run(main())
    assert errors, "the writes should have timed out against a device that reads nothing"
    assert worst < 0.5, f"the event loop stalled for {worst:.2f} s"


@pytest.mark.system
def test_an_absurdly_nested_hello_is_dropped_and_the_port_keeps_serving(pty_pair):
    """json.loads raises RecursionError, not ValueError, on deep nesting: still just a bad
    packet; the next good HELLO gets its link."""
    master, slave = pty_pair
    links = []

    async def main() -> SerialTransport:
        t = SerialTransport([os.ttyname(slave)])

        async def on_link(link):
            links.append(link)

        await t.start(on_link)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, os.read, master, 64)  # the gateway's WHO
        os.write(master, slip_encode(bytes((K_HELLO,)) + b"[" * 3000))
        await eventually_async(lambda: t.line_errors, 5, "the nested HELLO was not dropped")
        os.write(master, slip_encode(bytes((K_HELLO,)) + json.dumps({"id": "fh-10",
                                                                      "type": 1}).encode()))  # fmt: skip
        await eventually_async(lambda: links, 5, "no link after the nested HELLO")
        await t.stop()
        return t

    t = asyncio.run(main())
    assert [x.device_id for x in links] == ["fh-10"] and t.line_errors == 1


@pytest.mark.system
def test_the_transport_stops_at_once_while_a_device_streams(pty_pair):
    """Stopping cancels each port's task while its frames keep coming: a cancel that lands as
    the port turns readable must still end the task (asyncio.wait_for on Python 3.11 can eat
    it, and the gateway's stop then waited for ever). Stopped 60 times mid-stream."""
    master, slave = pty_pair
    path = os.ttyname(slave)
    os.set_blocking(master, False)
    hello = slip_encode(bytes((K_HELLO,)) + json.dumps({"id": "fh-07", "type": 1}).encode())
    frames = b"".join(slip_encode(bytes((K_FRAME,)) + _frame(i)) for i in range(3))

    async def main() -> int:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []

        def device() -> None:  # answers the gateway and streams, a burst every millisecond
            with contextlib.suppress(BlockingIOError):
                if b"\xc0" + bytes((K_WHO,)) in os.read(master, 4096):
                    os.write(master, hello)
            with contextlib.suppress(BlockingIOError):
                os.write(master, frames)
            streaming.append(loop.call_later(0.001, device))

        async def on_link(link):
            link.on_frame = got.append

        streaming = [loop.call_soon(device)]
        stops = 0
        try:
            for _ in range(60):
                t = SerialTransport([path])
                await t.start(on_link)
                n = len(got)
                await eventually_async(lambda: len(got) > n + 3, 5, "no frames")  # noqa: B023
                stopping = asyncio.create_task(t.stop())
                await asyncio.wait({stopping}, timeout=5)  # a hang, not a slow stop
                if not stopping.done():
                    break
                stops += 1
        finally:
            streaming[-1].cancel()
        return stops

    # on a thread of its own: a loop left with a task that eats its cancel never closes
    stops: list[int] = []
    run = threading.Thread(target=lambda: stops.append(asyncio.run(main())), daemon=True)
    run.start()
    run.join(120)
    assert stops == [60], f"a stop hung ({stops or 'and the loop never closed'})"
