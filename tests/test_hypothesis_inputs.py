"""Bad input, property-based: the frame parser, the control channel and the config loader
accept or reject every input with their own error and a message; nothing else escapes.
The same targets run under atheris in fuzz/ (coverage-guided, bounded in time)."""

from __future__ import annotations

import resource

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
