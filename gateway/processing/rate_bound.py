"""Whether a sample stream's rate is known to be right from its frames' stamps alone.

An ADC clock off by a fraction shifts every heart rate by that fraction, so a stream's points
wait until its rate is known (docs/fhr.md, "Points wait for the sample rates"). The session
measures it over a minute of frames; `RateBound` knows it sooner when the device's stamps are
steady. A stamp is never early and late by however long the device left its samples in the
ADC's ring before reading them: about a frame, or seconds at a boot under load or after the
device's process was held up. So the bound looks only at the last WINDOW_S of frames, where
such a backlog ages out, and once the rate is bound it stays known while the frames keep
implying it: a late stamp afterwards says nothing about the rate.
"""

from __future__ import annotations

import bisect

from gateway import protocol as p


class RateBound:
    """A stream's rate within RATE_TOLERANCE of nominal, from its frames' seq and device time.

    Over the frames of the last WINDOW_S (by seq): the rate implied by its two ends (each the
    least delayed stamp of its first or last END_S: stamps are never early), its uncertainty the spread of their stamps about the nominal rate (a rate error
    drifts them, so it widens the bound too); at least MIN_SPAN_S of frames. Steady stamps are
    known within a few seconds; a backlog of late stamps at the start is out of the window
    WINDOW_S later; stamps always that jittery, or a rate off by more than about half the
    tolerance, wait for the session's check. Once bound, the stream stays known while the
    rate the window's ends imply stays within tolerance, so a rate that
    changes later is unknown again (and the session's check says what it is).

    Measured before the window and the latch (tests/test_rate_bound.py, test_rate_fault.py):
    one stamp 400 ms late 10 s in held every later point back for 3.4 s, one a second late for
    23 s, and a device whose first PPG frames came late under load published no points for
    the minute of the session's check.
    """

    MIN_SPAN_S = 2.0  # two of the device's ADC buffers (about 1 s each)
    WINDOW_S = 20.0  # a backlog's late stamps age out (a PPG ring holds 5 s); a drift shows
    END_S = 1.0  # each end of the window: a few frames (one PPG frame is 0.5 s)

    __slots__ = ("_bound", "_frames", "nominal_hz")

    def __init__(self, nominal_hz: float) -> None:
        self.nominal_hz = nominal_hz
        self._frames: list[tuple[int, float]] = []  # (seq, ms ahead of nominal), by seq
        self._bound = False  # was within tolerance, spread and all

    def add(self, seq: int, t_ms: int) -> None:
        """A frame's first sample `seq` and its device time (resent frames come out of order)."""
        frames = self._frames
        bisect.insort(frames, (seq, t_ms - seq * 1000.0 / self.nominal_hz))
        oldest = frames[-1][0] - self.WINDOW_S * self.nominal_hz
        if frames[0][0] < oldest:
            del frames[: bisect.bisect_left(frames, (oldest, -float("inf")))]

    @property
    def seen(self) -> bool:
        """Whether any frame of the stream has come."""
        return bool(self._frames)

    def within_tolerance(self) -> bool:
        frames = self._frames
        if not frames:
            return False
        span_ms = (frames[-1][0] - frames[0][0]) * 1000.0 / self.nominal_hz
        if span_ms < self.MIN_SPAN_S * 1000.0:
            return self._bound
        # Each end as its least delayed stamp within END_S: one late frame moves neither.
        end = self.END_S * self.nominal_hz
        r0 = min(r for seq, r in frames if seq <= frames[0][0] + end)
        r1 = min(r for seq, r in frames if seq >= frames[-1][0] - end)
        error = abs(r1 - r0) / span_ms
        if self._bound:
            return error <= p.RATE_TOLERANCE
        rs = [r for _, r in frames]
        self._bound = error + (max(rs) - min(rs)) / span_ms <= p.RATE_TOLERANCE
        return self._bound
