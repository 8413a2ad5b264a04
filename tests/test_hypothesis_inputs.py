"""Bad input, property-based: the frame parser, the control channel, the config loader,
frame authentication, the device's pairing steps and the gateway's, SLIP and HELLO, the
hospital's commands, the label's code, and the WAV and CSV files of `perimon dsp` accept or
reject every input with their own error and a message; nothing else escapes, and no input
gets a forged frame admitted, a pairing key stored or a second pairing value handed out. The
same targets run under atheris in fuzz/ (coverage-guided; tests/test_fuzz_atheris.py runs each
for a few seconds)."""

from __future__ import annotations

import json
import resource
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import targets
from gateway import protocol as p
from gateway.config import ConfigError, config_from_dict, load_config

pytestmark = pytest.mark.unit

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

frames = st.builds(
    p.Frame,
    st.sampled_from([p.Flag(0), p.Flag.ADPCM, p.Flag.MORE, p.Flag.RESENT]),
    st.sampled_from([1, 2]),
    st.sampled_from(list(p.Stream)),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=200),
)


@FAST
@given(st.binary(max_size=600))
def test_frame_parser_on_any_bytes(data):
    targets.frame(data)


@FAST
@given(frames, st.integers(0, 10_000), st.integers(0, 7))
def test_one_flipped_bit_is_caught(frame, pos, bit):
    try:
        raw = p.encode_frame(frame)
    except (p.FrameError, ValueError):
        return  # e.g. a payload the encoder refuses
    assert p.decode_frame(raw) == frame
    bad = bytearray(raw)
    bad[pos % len(raw)] ^= 1 << bit
    try:
        p.decode_frame(bytes(bad))
    except p.FrameError:
        return
    raise AssertionError("a corrupted frame was accepted")


@FAST
@given(st.binary(max_size=400))
def test_control_channel_and_records_never_raise(data):
    targets.control(data)


toml_scalars = st.one_of(
    st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.booleans(), st.text(max_size=20)
)
sections = st.sampled_from(["gateway", "mqtt", "radio", "processing", "outbox", "devices", "x"])
keys = st.sampled_from(["id", "port", "host", "max_bytes", "max_age_h", "path", "listen",
                        "att_mtu", "gap_timeout_s", "protocol", "tcb-01", "zz"])  # fmt: skip
configs = st.dictionaries(
    sections,
    st.one_of(toml_scalars, st.dictionaries(keys, st.one_of(toml_scalars, st.dictionaries(
        keys, toml_scalars, max_size=3)), max_size=5)),
    max_size=4,
)  # fmt: skip


@FAST
@given(configs)
def test_config_loader_gives_a_config_or_one_clear_line(raw):
    try:
        cfg = config_from_dict(raw, "t.toml")
    except ConfigError as exc:
        assert str(exc).startswith("t.toml: ") and "\n" not in str(exc)
        return
    assert 1 <= cfg.mqtt.port <= 65535 and cfg.outbox.max_bytes >= 1024 * 1024


@FAST
@given(st.binary(max_size=300))
def test_config_file_of_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("c") / "perimon.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


def test_decoders_do_not_grow_memory_on_repeated_bad_input():
    import os

    big = os.urandom(509)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(20_000):
        targets.frame(big[: i % 509])
        targets.control(big[: i % 300])
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 50_000, grown_kb  # bounded: no per-input state is kept


# ---- the targets added with the security review (fuzz/targets.py) ----

SHORT = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@SHORT
@given(st.binary(max_size=600))
def test_frame_authentication_admits_only_what_the_device_signed(data):
    targets.auth(data)


def _pair_steps(steps: list[tuple[int, bytes]]) -> bytes:
    """fuzz.targets.pairing's input: (op, args) as op, length, args."""
    return b"".join(bytes((op, len(a))) + a for op, a in steps)


pair_steps = st.lists(
    st.one_of(
        st.just((0, b"")),  # the button
        st.tuples(st.just(1), st.binary(min_size=1, max_size=1)),  # time passes (n s)
        st.tuples(st.just(2), st.binary(max_size=8)),  # a COMMIT
        st.tuples(st.just(3), st.sampled_from([bytes((2, 0)), bytes((2, 1))])),  # GET
        st.tuples(
            st.just(4),
            st.builds(
                lambda h, b: bytes((3, h)) + b.ljust(128, b"\xff"),
                st.integers(0, 2),
                st.binary(max_size=128),
            ),
        ),  # REVEAL
        st.tuples(st.just(5), st.binary(min_size=17, max_size=17)),  # a CONFIRM, or any step
        st.tuples(st.just(6), st.binary(min_size=33, max_size=33)),  # a label COMMIT
    ),
    max_size=12,
).map(_pair_steps)


@SHORT
@given(st.one_of(pair_steps, st.binary(max_size=300)))
def test_pairing_steps_from_the_air_store_nothing_and_give_one_value_per_press(data):
    targets.pairing(data)


def test_the_pairing_target_catches_a_second_value_in_one_window():
    """What the target checks is what a man in the middle did before the fix: commit, take B,
    commit again (firmware/lib/pairing.py now closes the window at the second COMMIT)."""
    targets.pairing(_pair_steps([(0, b""), (2, b"a"), (3, bytes((2, 0))), (2, b"b"),
                                 (3, bytes((2, 0)))]))  # fmt: skip


@SHORT
@given(st.binary(max_size=300))
def test_pairing_replies_at_the_gateway(data):
    targets.pairing_replies(data)


@SHORT
@given(st.binary(max_size=600))
def test_slip_and_hello(data):
    targets.slip(data)


commands = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["command", "settings", "risk_colour", "alert_id", "by", "session_id",
                         "sessions_per_day", "duration_min", "times", "clear", "request_id",
                         "ctg_mode", "measurement_interval_min", "ga_weeks", "from_ga_weeks"]),
        inner, max_size=5),
    max_leaves=12,
)  # fmt: skip


@SHORT
@given(st.one_of(st.binary(max_size=400),
                 st.builds(lambda b, c: bytes((b,)) + json.dumps(c).encode(),
                           st.integers(0, 255), commands)))  # fmt: skip
def test_commands_of_any_bytes_get_an_answer(data):
    targets.downlink(data)


@SHORT
@given(st.binary(max_size=200))
def test_label_codes(data):
    targets.label(data)


def _wav(fmt_tag: int, channels: int, fs: int, align: int, bits: int, n: int, cut: int,
         fmt_extra: bytes) -> bytes:  # fmt: skip
    """A RIFF/WAVE file whose header says what it is given to say, cut at `cut` bytes."""
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, fs, fs * max(align, 1), align, bits)
    fmt += fmt_extra
    data = bytes(n)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    raw = b"RIFF" + struct.pack("<I", len(body)) + body
    return raw[:cut] if cut else raw


wav_files = st.builds(
    _wav, st.sampled_from([0, 1, 3, 0xFFFE, 7]), st.integers(0, 4),
    st.sampled_from([0, 1, 1000, 4000, 8000, 16000, 48000]), st.integers(0, 8),
    st.sampled_from([0, 8, 12, 16, 24, 32, 64]), st.integers(0, 40_000), st.integers(0, 200),
    st.binary(max_size=24),
)  # fmt: skip


@SHORT
@given(st.one_of(wav_files, st.binary(max_size=300)))
def test_wav_files_of_any_header(data):
    targets.wav(data)


@SHORT
@given(st.one_of(st.binary(max_size=300),
                 st.lists(st.lists(st.sampled_from(["t_s", "fhr_bpm", "1", "0.25", "", "nan",
                                                     "inf", "-3", "x", '"a,b"', "1e999"]),
                                   max_size=4), max_size=8)
                 .map(lambda rows: "\n".join(",".join(r) for r in rows).encode())))  # fmt: skip
def test_csv_files_of_any_content(data):
    targets.csv(data)
