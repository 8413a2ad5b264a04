"""A sample stream's rate, from its frames' sequence numbers and device stamps.

An ADC clock off by a fraction shifts every heart rate by that fraction, so a stream's points
wait until its rate is known (docs/fhr.md, "Points wait for the sample rates"). The frames say
it: `seq` counts samples, `t_ms` is the device time its block was read. A stamp is never early;
it is late by however long the samples waited in the ADC's ring: about a frame, or seconds at a
boot under load or after the device's process was held up. Every judgement below therefore
works on how far each stamp runs ahead of the nominal rate (`t_ms - seq / nominal`), and where
it needs one stamp for a stretch of frames it takes the least delayed one.

Two judgements come from the same frames, in delivery order:

* `bound`: the rate is within RATE_TOLERANCE, known within seconds when the stamps are steady.
  The last WINDOW_S of frames, each end its least delayed stamp within END_S; a backlog's late
  stamps age out of the window. Once bound it stays known while the window's ends keep
  implying the rate, so a late stamp afterwards says nothing, and a rate that changes later is
  unknown again. Bound once, it needs only the ends to agree, not the spread: in the middle of
  a backlog's burst every stamp of the window's last END_S is late (unknown for that moment),
  and a spread that had to age out again cost a device held up 2 s 22 s of points.
* the span check (`add`'s `RateSpan`): the rate over RATE_CHECK_S or more from a fixed anchor,
  which finds any clock error however jittery the stamps (their jitter shrinks as the span
  grows). The anchor is the least delayed stamp of the first ANCHOR_S: anchored on a boot's
  first frame read 4 s late, a right 4000 Hz read as 4263 Hz and the readings were withheld for
  a minute. A span off by more than RATE_JUMP starts a new one; when one step between two
  frames carries most of its drift, and the span before was not the same, the device's clock
  jumped (`RateSpan.jumped`), else it is an ADC that far off (an 8 kHz ADC puts every FHR at
  half), a rate error like any other.

Measured before the window, the latch and the moving anchor (tests/test_sample_rate.py,
tests/test_rate_fault.py): one stamp 400 ms late 10 s in held every later point back for 3.4 s,
one a second late for 23 s, and a device whose first PPG frames came late under load published
no points for the minute of the span check.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import takewhile

from gateway import protocol as p


@dataclass(frozen=True)
class RateSpan:
    """What a span of RATE_CHECK_S or more implies."""

    rate_hz: float
    jumped: bool = False  # a device clock that jumped: re-anchored, not a rate to act on


class StreamRate:
    """One sample stream's rate in one boot (class docstring: the module's)."""

    MIN_SPAN_S = 2.0  # two of the device's ADC buffers (about 1 s each)
    WINDOW_S = 20.0  # a backlog's late stamps age out (a PPG ring holds 5 s); a drift shows
    END_S = 1.0  # each end of the window: a few frames (one PPG frame is 0.5 s)
    ANCHOR_S = 5.0  # a span's first seconds, where a frame may show the anchor late

    def __init__(self, nominal_hz: float) -> None:
        self.nominal_hz = nominal_hz
        self.checked = False  # a span has measured the rate, right or wrong
        self.bound = False  # the window bounds it within tolerance now
        self._bound_once = False  # it did, spread and all: the ends alone decide from then on
        self._window: deque[tuple[int, float]] = deque()  # (seq, ms ahead of nominal)
        self._last: tuple[int, float] | None = None
        # the span check: its anchor, the seq it was first set at, the largest one-step drift
        # since (ms), the rate the previous span implied when it was off by RATE_JUMP
        self._anchor: tuple[int, float] | None = None
        self._anchored_at = 0
        self._step_ms = 0.0
        self._jumped: float | None = None

    @property
    def window_spread_ms(self) -> float:
        """How far the window's stamps stray from the nominal rate, end to end (ms)."""
        aheads = [a for _, a in self._window]
        return max(aheads) - min(aheads) if aheads else 0.0

    @property
    def known(self) -> bool:
        """Measured by a span, or bound by the window: points need not wait for it."""
        return self.checked or self.bound

    def add(self, seq: int, t_ms: int) -> RateSpan | None:
        """A frame delivered in order: its first sample `seq` and its device time, both as the
        session unwraps them (they count on past 2**32). Returns what the span check found,
        when it measured (every frame once a span is long enough)."""
        ahead = t_ms - seq * 1000.0 / self.nominal_hz
        last = self._last
        if last is not None and seq <= last[0]:
            return None  # not after the last (a reboot resets this object): nothing to add
        self._last = (seq, ahead)
        if last is not None and abs(ahead - last[1]) > abs(self._step_ms):
            self._step_ms = ahead - last[1]
        window = self._window
        window.append((seq, ahead))
        oldest = seq - self.WINDOW_S * self.nominal_hz
        while window[0][0] < oldest:
            window.popleft()
        self._bind()
        return self._check_span(seq, ahead)

    # ---- the window ----

    def _bind(self) -> None:
        window = self._window
        span_ms = (window[-1][0] - window[0][0]) * 1000.0 / self.nominal_hz
        if span_ms < self.MIN_SPAN_S * 1000.0:  # too few frames (a start, or after a loss)
            self.bound = self._bound_once
            return
        end = self.END_S * self.nominal_hz
        head, tail = window[0][0] + end, window[-1][0] - end  # a few frames each
        first = min(a for _, a in takewhile(lambda f: f[0] <= head, window))
        last = min(a for _, a in takewhile(lambda f: f[0] >= tail, reversed(window)))
        error = abs(last - first) / span_ms
        if self._bound_once:
            self.bound = error <= p.RATE_TOLERANCE
            return
        spread = self.window_spread_ms  # a drift widens it too
        self.bound = self._bound_once = error + spread / span_ms <= p.RATE_TOLERANCE

    # ---- the span ----

    def _set_anchor(self, seq: int, ahead: float) -> None:
        self._anchor, self._anchored_at, self._step_ms = (seq, ahead), seq, 0.0

    def _check_span(self, seq: int, ahead: float) -> RateSpan | None:
        anchor = self._anchor
        if anchor is None:
            self._set_anchor(seq, ahead)
            return None
        samples = seq - anchor[0]
        drift_ms = ahead - anchor[1]  # how far the clock ran beyond the samples since
        if seq - self._anchored_at <= self.ANCHOR_S * self.nominal_hz:
            if drift_ms < 0:  # the anchor was later than this stamp: this one takes its place
                self._anchor, self._step_ms = (seq, ahead), 0.0
            return None
        dt_ms = samples * 1000.0 / self.nominal_hz + drift_ms
        if dt_ms < p.RATE_CHECK_S * 1000:
            if dt_ms < 0:
                self._set_anchor(seq, ahead)
            return None
        rate = samples / (dt_ms / 1000.0)
        jumped, self._jumped = self._jumped, None  # the rate the previous span implied
        if abs(rate / self.nominal_hz - 1.0) > p.RATE_JUMP:
            one_step = 2 * abs(self._step_ms) > abs(drift_ms)
            self._set_anchor(seq, ahead)
            self._jumped = rate  # the same again next time: a rate error, not a jump
            if one_step and (jumped is None or abs(rate / jumped - 1.0) > p.RATE_TOLERANCE):
                return RateSpan(rate, jumped=True)
        self.checked = True
        return RateSpan(rate)
