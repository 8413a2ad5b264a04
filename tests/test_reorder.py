import pytest

from gateway.device.reorder import Item, Lost, Reorderer, unwrap_u32

pytestmark = pytest.mark.unit


def seqs(items):
    return [(type(i).__name__, i.seq, i.count) for i in items]


def test_in_order_frames_pass_straight_through():
    r = Reorderer(gap_timeout_s=5)
    assert seqs(r.add(100, 10, "a", 0)) == [("Item", 100, 10)]
    assert seqs(r.add(110, 10, "b", 0)) == [("Item", 110, 10)]
    assert r.stats.gaps_seen == 0 and r.next_seq == 120


def test_gap_is_held_then_filled_by_a_resend():
    r = Reorderer(gap_timeout_s=5)
    r.add(0, 10, "a", 0)
    assert r.add(20, 10, "c", 1) == []
    assert r.missing() == [(10, 20)]
    out = r.add(10, 10, "b", 2)
    assert [i.value for i in out] == ["b", "c"]
    assert r.stats.gaps_seen == 1 and r.stats.gaps_filled == 1 and r.stats.lost_seqs == 0


def test_duplicates_are_dropped_and_counted():
    r = Reorderer(gap_timeout_s=5)
    r.add(0, 10, "a", 0)
    r.add(20, 10, "c", 0)
    assert r.add(0, 10, "a", 0) == [] and r.add(20, 10, "c", 0) == []
    assert r.stats.duplicates == 2


def test_unfilled_gap_expires_as_an_explicit_loss():
    r = Reorderer(gap_timeout_s=5)
    r.add(0, 10, "a", 0)
    r.add(30, 10, "d", 1)
    assert not r.expired(5.9)
    assert r.expired(6.0)
    out = r.give_up_gap(now=6.0)
    assert isinstance(out[0], Lost) and (out[0].seq, out[0].count) == (10, 20)
    assert isinstance(out[1], Item) and out[1].value == "d"
    assert r.stats.lost_seqs == 20 and r.next_seq == 40


def test_partial_loss_reported_by_the_device():
    r = Reorderer(gap_timeout_s=5)
    r.add(0, 10, "a", 0)
    r.add(50, 10, "f", 0)
    out = r.give_up_gap(upto=30, now=1)  # the device still had 30 onwards
    assert seqs(out) == [("Lost", 10, 20)]
    assert r.missing() == [(30, 50)]


def test_hold_limit_bounds_memory():
    r = Reorderer(gap_timeout_s=1e9, max_held=8)
    r.add(0, 1, 0, 0)
    released = []
    for s in range(2, 20):
        released += r.add(s, 1, s, 0)
    assert len(r.held) <= 8
    assert any(isinstance(i, Lost) and i.seq == 1 for i in released)


def test_a_gap_clock_restarted_gives_the_gap_its_whole_timeout_again():
    """A reconnect restarts the clock of a gap held across the outage: the time in which no
    resend could come does not count against it."""
    r = Reorderer(gap_timeout_s=5)
    r.add(0, 1, "a", 0)
    r.add(2, 1, "c", 1)
    assert r.expired(20)  # 19 s, without a link
    r.restart_gap_clock(20)
    assert not r.expired(24) and r.expired(25)
    idle = Reorderer(gap_timeout_s=5)
    idle.restart_gap_clock(20)  # nothing held: no gap to time
    assert idle.gap_since is None


def test_a_wrapped_32_bit_number_is_taken_nearest_the_last_one():
    """RFC 1982 style: the number with those low 32 bits within 2**31 of the reference."""
    top = (1 << 32) - 240  # the last Doppler frame before the wrap
    assert unwrap_u32(0, top) == 1 << 32
    assert unwrap_u32(240, top) == (1 << 32) + 240
    assert unwrap_u32(top - 4800, top) == top - 4800  # a resend of older frames
    assert unwrap_u32(5, 10) == 5 and unwrap_u32(20, 10) == 20  # no wrap: as they are
    assert unwrap_u32(0xFFFFFF00, (1 << 32) + 100) == 0xFFFFFF00  # before the wrap, seen after
    assert unwrap_u32(7, (3 << 32) + 0xFFFFFFF0) == (4 << 32) + 7  # any number of wraps on
