"""Fuzz targets for the gateway's untrusted inputs: one function per input, each taking bytes.

Each target must either accept its input or reject it with that input's own error type
(FrameError, ConfigError) carrying a message; any other exception is a bug, and so is a hang
or memory growth beyond a bound (checked by the runner's per-input time and RSS limits).
Run with atheris (fuzz/run_atheris.py) or with hypothesis in the test suite
(tests/test_fuzz_targets.py).
"""

from __future__ import annotations

import tomllib

from gateway import protocol as p
from gateway.config import ConfigError, config_from_dict, load_config
from gateway.device.session import DeviceSession

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


TARGETS = {"frame": frame, "control": control, "config": config}
