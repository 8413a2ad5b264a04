"""The gateway's side of a pairing by the label's secret, against a monitor written in Python
here: a man in the middle who swaps the monitor's public value is caught before any key is
confirmed, the honest exchange enrols the key the monitor stored, a monitor that never connects
enrols nothing (the firmware's side: tests/test_pairing.py)."""

from __future__ import annotations

import asyncio
import hmac

import pytest

from gateway import protocol as p
from gateway.device import pairing as gp
from gateway.device.enrolment import Enrolment
from gateway.transports.base import DeviceLink
from gateway.transports.simradio import SimRadioTransport
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.unit


class _LabelDevice(DeviceLink):
    """The device's side of a label pairing in Python, for the gateway's checks. With
    `swap_b`, a man in the middle puts its own public value in the GET replies (and passes on
    the device's answer, made over the device's real value)."""

    def __init__(self, secret: bytes, swap_b: bool, busy: tuple[bytes, ...] = ()) -> None:
        super().__init__()
        # requests whose args begin so are answered busy once, as the firmware answers when
        # its heap has no room for the big numbers
        self.busy = list(busy)
        self.writes: list[bytes] = []
        self.device_id, self.device_type, self.name, self.att_mtu = "fh-x", 1, "", 247
        self.secret, self.swap_b = secret, swap_b
        self.x = 0xC0FFEE << 200
        self.b = pow(2, self.x, gp.PRIME).to_bytes(256, "big")
        self.mitm_b = pow(2, 0xBAD << 200, gp.PRIME).to_bytes(256, "big")
        self.a, self.commit, self.key, self.stored = b"", b"", None, None

    async def write(self, frame: bytes) -> None:
        self.writes.append(frame)
        payload = p.decode_frame(frame).payload
        op, rid, args = payload[0], payload[1], payload[2:]
        status, data = 0, b""
        busy = next((b for b in self.busy if bytes(args).startswith(b)), None)
        if busy is not None:
            self.busy.remove(busy)
            status = p.Status.BUSY
        elif args[0] == p.PairStep.LABEL_COMMIT:
            self.commit = args[1:]
        elif args[0] == p.PairStep.GET:
            data = (self.mitm_b if self.swap_b else self.b)[args[1] * 128 : args[1] * 128 + 128]
        elif args[0] == p.PairStep.REVEAL:
            self.a += args[2:]
            if len(self.a) == 256:
                if self.commit != gp.label_commit(self.secret, self.device_id, self.a):
                    status = 1
                else:
                    data = gp.label_device(self.secret, self.device_id, self.a, self.b)
                    s = pow(int.from_bytes(self.a, "big"), self.x, gp.PRIME).to_bytes(256, "big")
                    self.key = gp.derive_key(s, self.a, self.b, self.device_id)
        elif args[0] == p.PairStep.CONFIRM:
            mac = hmac.digest(self.key, gp.LABEL_CONFIRM + b"fh-x", "sha256")[:16]
            if args[1:] != mac:
                status = 1
            else:
                self.stored = self.key
                data = hmac.digest(self.key, gp.LABEL_DONE + b"fh-x", "sha256")[:16]
        reply = bytes((op, rid, status)) + data
        f = p.Frame(p.Flag(0), self.device_type, p.Stream.REPLY, 0, rid, 0, reply)
        asyncio.get_running_loop().call_soon(self.on_frame, p.encode_frame(f))

    async def close(self) -> None:
        self.on_close("closed by the gateway")


def test_gateway_label_pairing_detects_a_swapped_device_value(tmp_path):
    """The device's answer is an HMAC under the label's secret over both values: a man in the
    middle who substitutes the device's value is caught before any key is confirmed; the
    honest exchange enrols the key the device stored; a device that never connects enrols
    nothing."""
    secret = bytes(range(16))

    async def main():
        book = Enrolment(tmp_path / "enrolment.json")
        m = gp.PairingManager(book, SimRadioTransport("127.0.0.1:0"), {})
        for swap in (True, False):
            dev = _LabelDevice(secret, swap)
            assert not m.wants(dev)
            task = asyncio.create_task(m.pair_by_label("fh-x", "fetal_heart", secret, 5.0))
            await eventually_async(lambda d=dev: m.wants(d), 2, "the label pairing does not wait")
            await m.on_link(dev)
            if swap:
                with pytest.raises(gp.PairingError, match="does not verify with this label"):
                    await task
                assert book.get("fh-x") is None and dev.stored is None
            else:
                done = await task
                assert done["state"] == "paired" and dev.stored is not None
                assert book.get("fh-x").key == dev.stored and secret not in dev.stored
            assert m.labels == {}
        with pytest.raises(gp.PairingError, match="did not connect"):
            await m.pair_by_label("fh-y", "fetal_heart", secret, 0.3)
        assert book.get("fh-y") is None

    asyncio.run(main())


def test_a_step_answered_busy_is_asked_again_at_once(tmp_path, monkeypatch):
    """The firmware answers busy when its heap has no room for a step's big numbers for a
    moment (firmware/lib/pairing.py). Before, it gave no answer and the gateway waited a whole
    attempt (10 s) before asking again: the nurse's page timed out in tests under load. Here
    an unanswered attempt would wait 60 s; the busy steps are asked again, the same bytes
    under the same id, and the pairing completes in seconds."""
    monkeypatch.setattr(gp, "ATTEMPT_MIN_S", 60.0)
    secret = bytes(range(16))
    commit, reveal_1 = bytes((p.PairStep.LABEL_COMMIT,)), bytes((p.PairStep.REVEAL, 1))

    async def main():
        book = Enrolment(tmp_path / "enrolment.json")
        m = gp.PairingManager(book, SimRadioTransport("127.0.0.1:0"), {})
        dev = _LabelDevice(secret, swap_b=False, busy=(commit, reveal_1))
        task = asyncio.create_task(m.pair_by_label("fh-x", "fetal_heart", secret, 5.0))
        await eventually_async(lambda: m.wants(dev), 2, "the label pairing does not wait")
        await m.on_link(dev)
        done = await asyncio.wait_for(task, 10)
        assert done["state"] == "paired" and book.get("fh-x").key == dev.stored
        return dev.writes

    writes = asyncio.run(main())
    steps = [p.decode_frame(w).payload[2:4] for w in writes]
    assert len(writes) == 2 + 2 + 3 + 1, steps  # commit x2, get x2, reveal x3, confirm
    assert writes[0] == writes[1], "the busy commit asked again as it was"
    again = [w for w in writes if p.decode_frame(w).payload[2:4] == reveal_1]
    assert len(again) == 2 and again[0] == again[1], "the busy reveal asked again as it was"
