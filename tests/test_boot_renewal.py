"""A boot never wraps (firmware/lib/renewal.py; docs/protocol.md, "Streams and sequence
numbers"; docs/security.md). The seal's counter block holds a frame's 32-bit seq under the boot's
session key, so past 2**32 the keystream would repeat and a frame captured in the first cycle
would pass for one of the next. The real fetal-heart firmware under MicroPython, provisioned
with a key, starts a boot with its Doppler seq two seconds short of the margin (the simulation
HAL's test hook, <settings>.first_seq); it must start a new boot before the wrap, with nothing it
framed lost on the way, and the gateway's session must follow it with a new handshake. One
that never reaches a gateway ends its boot at the hard margin, still before the wrap.
renewal.py's decisions are also checked alone, on a stand-in link with a made-up clock."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from gateway import protocol as p
from gateway.device.session import DeviceSession
from gateway.transports.base import DeviceLink, Transport
from gateway.transports.serial import SerialTransport
from gateway.transports.simradio import SimRadioTransport
from simulators.fleet import DeviceSpec, VirtualDevice
from tests.harness.micropython import FIRMWARE_LIB, run_micropython
from tests.harness.paths import REPO
from tests.harness.wait import eventually_async

_WRAP = 1 << 32
_BEFORE_S = 2  # the boot starts this long before its Doppler seq reaches the margin


@pytest.mark.system
def test_renewal_waits_for_a_quiet_link_and_resets_at_the_hard_margin_regardless():
    out = json.loads(run_micropython(REPO / "tests" / "mpy" / "renewal_check.py",
                                     str(FIRMWARE_LIB), heap="512K"))  # fmt: skip
    assert (out["RENEW_MARGIN"], out["RENEW_HARD_MARGIN"]) == (p.RENEW_MARGIN, p.RENEW_HARD_MARGIN)
    assert out["below"]["what"] == "running" and out["below"]["holds"] == []
    for case in ("idle", "clock"):  # the Doppler's seq or the device clock: held, then reset
        assert out[case] == {"what": "reset renewal: near wrap, all sent", "ms": 4000,
                             "holds": [True]}, (case, out[case])  # fmt: skip
    # a link that never drains: nothing until the hard margin, then at once, nothing held
    assert out["busy"] == {"what": "reset renewal: at the hard margin", "ms": 30000, "holds": []}
    # down for 20 s: it waits, and renews once the link is back and quiet
    assert out["down"]["what"] == "reset renewal: near wrap, all sent"
    assert out["down"]["ms"] >= 20000 + 3000  # quiet for 3 s once linked, then drained
    for case in ("asked", "sending"):  # a resend asked for, a frame leaving: let go, then again
        assert out[case]["what"] == "reset renewal: near wrap, all sent", out[case]
        assert out[case]["holds"] == [True, False, True], out[case]


@pytest.mark.unit
def test_the_margins_are_the_specifications():
    text = " ".join((REPO / "docs" / "protocol.md").read_text().split())
    soft, hard = re.search(r"within `RENEW_MARGIN` \(2\^(\d+)\).*?`RENEW_HARD_MARGIN` \(2\^(\d+)\)",
                           text).groups()  # fmt: skip
    assert (1 << int(soft), 1 << int(hard)) == (p.RENEW_MARGIN, p.RENEW_HARD_MARGIN)
    # the hard margin leaves minutes of Doppler (the fastest counter) before the wrap
    assert p.RENEW_HARD_MARGIN / p.NOMINAL_RATE_HZ[p.Stream.DOPPLER] > 60


class Recorder:
    """The session's processor: what it hands on, in order, per boot."""

    def __init__(self) -> None:
        self.boot: int | None = None
        self.boots: list[int] = []
        self.samples: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        self.lost: list[tuple[int | None, int, int, int]] = []
        self.records: list[tuple[int | None, int, int]] = []

    def on_samples(self, stream: int, seq: int, t_ms: int, samples: NDArray[np.int16]) -> None:
        assert self.boot is not None
        self.samples[(self.boot, stream)].append((seq, len(samples)))

    def on_lost(self, stream: int, seq: int, count: int) -> None:
        self.lost.append((self.boot, stream, seq, count))

    def on_record(self, stream: int, seq: int, t_ms: int, payload: bytes) -> None:
        self.records.append((self.boot, stream, seq))

    def on_boot(self, boot: int) -> None:
        self.boot = boot
        self.boots.append(boot)

    def tick(self, now: float) -> None:
        pass

    def status_fields(self) -> dict[str, Any]:
        return {}

    def flush(self) -> None:
        pass

    def resume(self, marks: dict[str, int], recent: dict[str, list[dict[str, Any]]]) -> None:
        pass

    def apply_settings(self, settings: dict[str, Any], baby: dict[str, Any]) -> None:
        pass


def _contiguous(runs: list[tuple[int, int]]) -> tuple[int, int]:
    """(first seq, end) of back-to-back runs of samples; fails at a gap or an overlap."""
    for (a, n), (b, _) in zip(runs, runs[1:], strict=False):
        assert b == a + n, (a, n, b)
    return runs[0][0], runs[-1][0] + runs[-1][1]


@pytest.mark.system
@pytest.mark.parametrize("radio_kind", ["sim", "serial"])  # the socket radio; the USB cable
def test_a_boot_near_the_wrap_is_renewed_with_nothing_lost_and_the_gateway_follows(
    tmp_path, radio_kind
):
    start = _WRAP - p.RENEW_MARGIN - _BEFORE_S * p.NOMINAL_RATE_HZ[p.Stream.DOPPLER]
    rec = Recorder()
    session = DeviceSession("fh-renew", p.DeviceType.FETAL_HEART, gap_timeout_s=5.0)
    session.processor = rec
    raw: list[bytes] = []  # every frame the gateway received, as it came

    async def main() -> str:
        dev: VirtualDevice | None = None

        async def on_link(link: DeviceLink) -> None:
            assert dev is not None
            session.use_key(dev.key)
            await session.attach(link)
            verify = link.on_frame

            def on_frame(data: bytes) -> None:
                raw.append(data)
                verify(data)

            link.on_frame = on_frame
            asyncio.get_running_loop().create_task(session.after_connect())

        radio: Transport
        if radio_kind == "serial":
            radio = SerialTransport([str(tmp_path / "fh-renew" / "usb")])
            address = ""
        else:
            radio = SimRadioTransport("127.0.0.1:0")
        await radio.start(on_link)
        if isinstance(radio, SimRadioTransport):
            address = f"127.0.0.1:{radio.port}"
        dev = VirtualDevice(DeviceSpec("fh-renew", "fetal_heart", seed=7), address, tmp_path,
                            radio_kind=radio_kind)  # fmt: skip
        dev.dir.mkdir(parents=True)
        (dev.dir / "device.first_seq").write_text(str(start))  # the test hook (hal_sim.py)
        try:
            await dev.start()
            first = await eventually_async(lambda: session.state.boot, 20, "no frame verified")
            renew = await eventually_async(lambda: dev.console_lines("RENEW "), 30,
                                           lambda: "no renewal: " + repr(dev.console_lines()))  # fmt: skip
            await eventually_async(lambda: dev.console_lines("RESET "), 10, "no reset")
            dev.kill()  # the process ended at its reset; a board starts again by itself
            await dev.start()
            await eventually_async(lambda: session.state.boot == first + 1, 20, "no new boot")
            await eventually_async(
                lambda: len(rec.samples[(first + 1, p.Stream.DOPPLER)]) > 20,
                20,
                "the new boot's Doppler did not come",
            )
            await eventually_async(lambda: session.state.info.get("boot") == first + 1, 10,
                                   "the new boot's info did not come")  # fmt: skip
            return renew[0]
        finally:
            if dev is not None:
                await dev.stop()
            await radio.stop()

    renew = asyncio.run(main())
    first, second = rec.boots
    assert second == first + 1
    console = (tmp_path / "fh-renew" / "console.log").read_text()
    assert "RESET hard renewal: near wrap, all sent" in console, console[-3000:]
    assert "MemoryError" not in console and "Traceback" not in console, console[-3000:]
    # the gateway ran a new handshake for the new boot on the new connection
    stats = session.state.stats
    assert stats.connects == 2 and session.auth is not None and session.auth.boot == second
    assert stats.auth_failed == 0 and stats.replayed == 0 and stats.unsigned == 0, stats
    assert session.state.info["reset_note"] == "renewal: near wrap, all sent"
    # nothing lost, nothing twice: the old boot's Doppler runs without a gap to the last frame
    # the device sent, inside the margin and short of the hard margin; the new one from 0
    assert rec.lost == [], rec.lost
    assert stats.duplicates == 0 and stats.lost_samples == 0, stats
    top, sent = map(int, re.match(r"RENEW \((\d+), \d+\) sent (\d+)", renew).groups())
    lo, end = _contiguous(rec.samples[(first, p.Stream.DOPPLER)])
    assert start <= lo < _WRAP - p.RENEW_MARGIN  # it streamed from before the margin ...
    assert _WRAP - p.RENEW_MARGIN < end <= top < _WRAP - p.RENEW_HARD_MARGIN  # ... to the hold
    # every frame the old boot handed to its radio reached the gateway, and verified
    assert sum(p.decode_frame(d).boot == first for d in raw) == sent
    lo2, _ = _contiguous(rec.samples[(second, p.Stream.DOPPLER)])
    assert lo2 < 5 * p.NOMINAL_RATE_HZ[p.Stream.DOPPLER]  # counting from 0 again
    for boot in (first, second):
        _contiguous(rec.samples[(boot, p.Stream.PPG)])
    # the seal's counter blocks never repeat: each boot has its own nonce (and key), and
    # within one, a (stream, seq) is only ever sealed from one plaintext (a resend: same bytes)
    nonces: dict[int, bytes] = {}
    sealed: dict[tuple[int, int, int], set[bytes]] = defaultdict(set)
    for data in raw:
        f = p.decode_frame(data)
        if f.stream == p.Stream.REPLY:
            if f.payload[0] == p.Op.SESSION and f.payload[2] == p.Status.OK:
                nonces[f.boot] = f.payload[3 + p.NONCE_LEN : 3 + 2 * p.NONCE_LEN]
            continue
        assert f.tag is not None and f.seq < _WRAP - p.RENEW_HARD_MARGIN
        sealed[(f.boot, f.stream, f.seq)].add(f.payload)
    assert sorted(nonces) == [first, second] and nonces[first] != nonces[second]
    assert all(len(v) == 1 for v in sealed.values())
    assert {b for b, _, _ in sealed} == {first, second}


@pytest.mark.system
def test_a_boot_that_cannot_deliver_is_renewed_at_the_hard_margin_before_the_wrap(tmp_path):
    """No gateway ever listens: the store never empties, and the boot still ends in time."""
    rate = p.NOMINAL_RATE_HZ[p.Stream.DOPPLER]
    start = _WRAP - p.RENEW_HARD_MARGIN - _BEFORE_S * rate

    async def main() -> VirtualDevice:
        with socket.socket() as s:  # a port no one listens on
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"
        dev = VirtualDevice(DeviceSpec("fh-alone", "fetal_heart", seed=8), address, tmp_path)
        dev.dir.mkdir(parents=True)
        (dev.dir / "device.first_seq").write_text(str(start))
        try:
            await dev.start()
            await eventually_async(lambda: dev.console_lines("RESET "), 30,
                                   lambda: "no reset: " + repr(dev.console_lines()))  # fmt: skip
        finally:
            await dev.stop()
        return dev

    dev = asyncio.run(main())
    assert dev.console_lines("RESET ") == ["RESET hard renewal: at the hard margin"]
    (renew,) = dev.console_lines("RENEW ")
    top, sent = map(int, re.match(r"RENEW \((\d+), \d+\) sent (\d+)", renew).groups())
    assert sent == 0  # never linked: all it framed stayed in its store
    console = (tmp_path / "fh-alone" / "console.log").read_text()
    assert "MemoryError" not in console and "Traceback" not in console, console[-3000:]
    # past the hard margin by at most the second between two looks and a frame's samples
    assert _WRAP - p.RENEW_HARD_MARGIN < top <= _WRAP - p.RENEW_HARD_MARGIN + rate + 480
