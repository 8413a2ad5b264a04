"""Fuzz targets for the gateway's untrusted inputs: one function per input, each taking bytes.

Each target must either accept its input or reject it with that input's own error type
(FrameError, ConfigError, LabelCodeError, UserError) carrying a message; any other exception is
a bug, and so is a hang or memory growth beyond a bound (checked by the runner's per-input time
and RSS limits). Some also check what the input must never achieve: a frame admitted that was
not signed with the key, a pairing key stored without its confirmation, a second public value
in one pairing window. Run with atheris (fuzz/run_atheris.py) or with hypothesis in the test
suite (tests/test_hypothesis_inputs.py; tests/test_fuzz_atheris.py runs them all under atheris
for a few seconds, as the target `every`).

Targets: frame, control, config, auth (frame authentication), pairing (the device's PAIR
steps, firmware/lib/pairing.py under CPython), pairing_replies (the gateway's side), slip
(SLIP and HELLO on a serial line), downlink (a command's bytes), label (the label's code), wav,
csv (the files `perimon dsp` reads), and every (all of them: the first byte chooses).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from gateway import protocol as p
from gateway.config import ConfigError, MqttSection, config_from_dict, load_config
from gateway.device.session import DeviceSession, LinkStats

_DECODERS = (
    p.samples_of,
    p.decode_status,
    p.decode_tcb,
    p.decode_reply,
    p.decode_time_sync_reply,
    p.decode_resend_reply,
)


def frame(data: bytes) -> None:
    """The frame parser and every payload decoder behind it. An odd first byte gets a valid
    CRC appended to the rest, so the fuzzer gets past the checksum to the fields behind it."""
    if data and data[0] & 1:
        body = data[1:]
        data = body + p.crc16(body).to_bytes(2, "little")
    try:
        f = p.decode_frame(data)
    except p.FrameError as exc:
        assert str(exc), "a FrameError must say why"
        return
    assert p.decode_frame(p.encode_frame(f)) == f
    for decode in _DECODERS:
        arg = f if decode is p.samples_of else f.payload
        try:
            out = decode(arg)
        except p.FrameError as exc:
            assert str(exc)
            continue
        size = getattr(out, "size", None)
        if size is not None:  # samples: never more than two per payload byte
            assert size <= 2 * len(f.payload) + 2


def control(data: bytes) -> None:
    """The control channel as the gateway sees it: replies (and anything else) from a device,
    through a device session; nothing may raise, bad input is counted as malformed."""
    s = DeviceSession("fz-01", p.DeviceType.FETAL_HEART, gap_timeout_s=1.0)
    kinds = (p.Stream.REPLY, p.Stream.STATUS, p.Stream.INFO, p.Stream.TCB, p.Stream.EVENT)
    stream = kinds[data[0] % len(kinds)] if data else p.Stream.REPLY
    payload = data[1:300]
    wrapped = p.encode_frame(p.Frame(p.Flag(0), 1, stream, 1, 0, 0, payload))
    s.on_frame(wrapped)
    s.on_frame(data)  # and the raw bytes as a frame
    st = s.state.stats
    assert st.frames + st.malformed + st.wrong_device >= 1


def config(data: bytes) -> None:
    """The config loader on arbitrary text: a Config or a one-line ConfigError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    try:
        config_from_dict(raw, "fuzz.toml")
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith("fuzz.toml") and "\n" not in msg, msg


def config_file(path: str) -> None:
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)


# ---- frame authentication ----

_KEY = bytes(range(32))  # the enrolled device's key
_BOOT_NONCE = bytes(8)


def _signed(key: bytes, stream: p.Stream, seq: int, payload: bytes, boot: int = 3) -> bytes:
    from gateway.device.auth import sign_frame

    frame = p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART, stream, boot, seq, 1000, payload)
    return sign_frame(key, frame)


def auth(data: bytes) -> None:
    """A session established with the genuine device, then `data` as frames from the air: a
    frame is admitted only if it is what the device signed (flags aside), never a forgery,
    an alteration, or a replay of a sequence number already admitted."""
    from gateway.device.auth import FrameAuth, seal, seal_key, session_key

    a = FrameAuth(_KEY, LinkStats())
    challenge = a.new_connection()
    key = session_key(_KEY, 3, _BOOT_NONCE)
    hello = bytes((p.Op.SESSION, 1, p.Status.OK)) + challenge + _BOOT_NONCE + bytes(range(8))
    hello += bytes(p.PEER_LEN)  # a link without addresses
    reply = _signed(key, p.Stream.REPLY, 0, hello)
    assert a.admit(p.decode_frame(reply), reply) and a.established
    clear = {seq: bytes((seq,)) * 4 for seq in range(4)}  # what the device sealed and signed
    k_e = seal_key(key)
    genuine = {_signed(key, p.Stream.DOPPLER, seq, seal(k_e, _BOOT_NONCE, p.Stream.DOPPLER, seq, c))
               for seq, c in clear.items()}  # fmt: skip
    seen: set[tuple[int, int]] = set()
    chunks = [data[i : i + 40] for i in range(0, len(data), 40)] or [b""]
    for chunk in chunks:
        # an odd first byte: a genuine frame with bytes replaced by the rest of the chunk
        if chunk and chunk[0] & 1:
            base = bytearray(sorted(genuine)[chunk[0] % len(genuine)])
            for i in range(1, len(chunk) - 1, 2):
                base[chunk[i] % len(base)] = chunk[i + 1]
            frame_bytes = bytes(base)
        else:
            frame_bytes = chunk[1:]
        try:
            f = p.decode_frame(frame_bytes)
        except p.FrameError:
            continue
        for got in a.admit(f, frame_bytes):
            same = [g for g in genuine if p.decode_frame(g).seq == got.seq]
            assert same, f"admitted a frame the device never signed: {got}"
            g = p.decode_frame(same[0])
            assert (got.stream, got.boot, got.t_ms, got.payload) == (
                g.stream, g.boot, g.t_ms, clear[g.seq]), "admitted an altered frame"  # fmt: skip
            if not got.resent:
                assert (got.stream, got.seq) not in seen, "admitted a replay"
            seen.add((got.stream, got.seq))


# ---- pairing, the device's side (firmware/lib/pairing.py, run under CPython) ----

_FIRMWARE_LIB = Path(__file__).resolve().parents[1] / "firmware" / "lib"


@functools.cache
def _firmware_pairing() -> ModuleType:
    """firmware/lib/pairing.py loaded under its own name, with what MicroPython provides
    (micropython.const; its own protocol and hmac_sha256 modules) only while it loads."""
    micropython = ModuleType("micropython")
    micropython.const = lambda x: x  # type: ignore[attr-defined]
    loaded = {}
    for name in ("protocol", "hmac_sha256", "pairing"):
        spec = importlib.util.spec_from_file_location(
            f"firmware_{name}", _FIRMWARE_LIB / f"{name}.py"
        )
        assert spec is not None and spec.loader is not None
        loaded[name] = importlib.util.module_from_spec(spec)
    saved = {n: sys.modules.get(n) for n in ("micropython", "protocol", "hmac_sha256")}
    sys.modules.update(micropython=micropython, protocol=loaded["protocol"],
                       hmac_sha256=loaded["hmac_sha256"])  # fmt: skip
    try:
        for name in ("protocol", "hmac_sha256", "pairing"):
            loaded[name].__spec__.loader.exec_module(loaded[name])  # type: ignore[union-attr]
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    return loaded["pairing"]


class _Clock:
    def __init__(self) -> None:
        self.now = 0

    def ticks_ms(self) -> int:
        return self.now

    def ticks_add(self, a: int, b: int) -> int:
        return a + b

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b


def pairing(data: bytes) -> None:
    """PAIR steps from the air, unsigned, with button presses and time passing between them:
    every step is answered with a reply (never an exception), no key is stored without a
    CONFIRM under the agreed key, and a press gives out at most one public value B."""
    fw: Any = _firmware_pairing()  # (a module loaded from a file: its names are unknown here)
    clock = _Clock()
    fw.time = clock  # the module's clock: a fake one, moved below
    settings = {"id": "fh-fz", "key": "11" * 32, "pair_secret": "22" * 16}
    stored: list[dict[str, Any]] = []
    fw.save_settings = lambda path, s: stored.append(dict(s))
    link = SimpleNamespace(set_key=lambda k: None)
    nothing = SimpleNamespace(readvertise=lambda: None, led=lambda c, b: None,
                              tone=lambda f, ms: None, pairing=False)  # fmt: skip
    pr = fw.Pairing(
        settings, "device.json", link, nothing, {}, nothing, nothing, log=lambda s: None
    )
    handed: set[bytes] = set()
    i = 0
    while i < len(data):
        op, n = data[i], data[i + 1] if i + 1 < len(data) else 0
        args = data[i + 2 : i + 2 + n]
        i += 2 + n
        if op % 8 == 0:
            pr.press()
            handed.clear()
            continue
        if op % 8 == 1:
            clock.now += 1000 * n
            pr.tick()
            continue
        if op % 8 == 2:  # a well-formed COMMIT, so the exchange gets past it
            args = bytes((1,)) + hashlib.sha256(args).digest()
        reply = pr.handle(10, op, args)
        assert isinstance(reply, bytes | bytearray) and len(reply) >= 3
        if args[:1] == bytes((2,)) and reply[2] == 0 and pr._label is None and pr._b is not None:
            handed.add(bytes(pr._b))
            assert len(handed) <= 1, "a second B in one button window"
    assert not stored, "a key was stored without a confirmation under the agreed key"


def pairing_replies(data: bytes) -> None:
    """The gateway's side: any bytes as a frame on a link held for pairing."""
    from gateway.device.pairing import PairingManager, Pending

    e = Pending("fh-fz", p.DeviceType.FETAL_HEART, None)
    PairingManager._on_frame(SimpleNamespace(), e, data)  # type: ignore[arg-type]


# ---- the serial line ----


def slip(data: bytes) -> None:
    """SLIP decoding in arbitrary pieces, and each packet read as a HELLO: packets are bounded,
    an encoded packet decodes back, and a HELLO is a dict or a ValueError."""
    from gateway.transports.serial import _MAX_PACKET, SlipDecoder, _parse_hello, slip_encode

    dec = SlipDecoder()
    cut = data[0] if data else 1
    for k in range(0, len(data), max(1, cut)):
        for packet in dec.feed(data[k : k + max(1, cut)]):
            assert 0 < len(packet) <= _MAX_PACKET
            try:
                hello = _parse_hello(packet[1:])
            except (ValueError, RecursionError):
                continue
            assert isinstance(hello, dict) and isinstance(hello["id"], str)
    if 0 < len(data) <= _MAX_PACKET:
        assert SlipDecoder().feed(slip_encode(data)) == [data]


# ---- commands from the hospital ----


@functools.cache
def _downlink() -> Any:
    from gateway.publish.downlink import Downlink
    from gateway.publish.mqtt import Publisher
    from gateway.publish.outbox import Outbox

    cfg = MqttSection(protocol="5")
    gw = SimpleNamespace(cfg=SimpleNamespace(mqtt=cfg, gateway=SimpleNamespace(id="gw-fz"),
                                             devices={}),
                         sessions={}, history=SimpleNamespace(settings=SimpleNamespace(values={})))  # fmt: skip
    return Downlink(gw, Publisher(cfg, "gw-fz", Outbox(":memory:", 1 << 20, 0)))


def downlink(data: bytes) -> None:
    """A command's payload (and, by its first byte, the cmd/{command} topic it came on): an
    answer that is ok or a one-line rejection; never a failure inside the handler."""
    from gateway.publish.downlink import COMMANDS, MAX_ERROR_CHARS
    from gateway.schemas import one_line

    named = COMMANDS[data[0] % len(COMMANDS)] if data and data[0] & 0x80 else None
    resp = _downlink()._respond("fh-01", data[1:], False, named)
    assert resp["status"] in ("ok", "rejected"), resp
    if resp["status"] == "rejected":
        assert not resp["error"].startswith("failed:"), resp["error"]
        line = one_line(resp["error"], MAX_ERROR_CHARS)
        assert "\n" not in line and len(line) <= MAX_ERROR_CHARS


# ---- the label's code ----


def label(data: bytes) -> None:
    """A scanned code (as text, or as a whole link): a monitor, or a LabelCodeError."""
    from gateway.web.pair_code import LabelCodeError, decode, encode

    text = data.decode("utf-8", "replace")
    for scanned in (text, "https://perimon.local:8443/pair#c=" + text):
        try:
            code = decode(scanned)
        except LabelCodeError as exc:
            assert str(exc)
            continue
        assert decode(encode(code.device_id, code.device_type, code.secret)) == code


# ---- the files `perimon dsp` reads ----


@contextlib.contextmanager
def _file(suffix: str, data: bytes) -> Iterator[str]:
    """`data` as a file the readers open, removed after (a fuzzing run makes millions)."""
    with tempfile.TemporaryDirectory(prefix="perimon-fuzz-") as d:
        path = Path(d) / f"input{suffix}"
        path.write_bytes(data)
        yield str(path)


def wav(data: bytes) -> None:
    """`perimon dsp fhr`'s WAV reader: audio, or a one-line UserError."""
    from gateway.cli import UserError
    from gateway.cli.dsp_fhr import _read_wav

    try:
        with _file(".wav", data) as path:
            x, fs = _read_wav(path)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert x.ndim == 1 and x.size > 0 and fs > 0


def csv(data: bytes) -> None:
    """The CSV readers of `perimon dsp fhr/ctg` and `perimon dsp tcb`: columns, or one line."""
    from gateway.cli import UserError
    from gateway.cli.dsp_fhr import _read_columns
    from gateway.cli.dsp_tcb import _read_rows

    with _file(".csv", data) as path:
        try:
            cols = _read_columns(path, ("t_s", "fhr_bpm"), {"fhr_bpm"})
            assert set(cols) == {"t_s", "fhr_bpm"}
        except UserError as exc:
            assert str(exc) and "\n" not in str(exc)
        try:
            _read_rows(path, ("t_s",))
        except UserError as exc:
            assert str(exc) and "\n" not in str(exc)


# What the targets import when first called (fuzz/run_atheris.py imports them while it
# instruments imports, so that their code's coverage guides the fuzzer)
LAZY_MODULES = (
    "gateway.device.auth",
    "gateway.device.pairing",
    "gateway.transports.serial",
    "gateway.publish.downlink",
    "gateway.web.pair_code",
    "gateway.cli.dsp_fhr",
    "gateway.cli.dsp_tcb",
)


def load_all() -> None:
    for name in LAZY_MODULES:
        importlib.import_module(name)
    _firmware_pairing()


def every(data: bytes) -> None:
    """All the targets in one: the first byte chooses (one atheris process fuzzes them all)."""
    names = sorted(n for n in TARGETS if n != "every")
    if data:
        TARGETS[names[data[0] % len(names)]](data[1:])


TARGETS = {
    "frame": frame,
    "control": control,
    "config": config,
    "auth": auth,
    "pairing": pairing,
    "pairing_replies": pairing_replies,
    "slip": slip,
    "downlink": downlink,
    "label": label,
    "wav": wav,
    "csv": csv,
    "every": every,
}
