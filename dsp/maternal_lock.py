"""Removing what the Doppler hears in lock-step with the mother's pulse.

A maternal vessel in the ultrasound beam (arterial flow, a pulsating wall, tissue thumps)
pulses once per maternal beat at a constant pulse-transit delay after the PPG's beat, with
the same beat-to-beat variability; a fetal heart, even at the same mean rate, drifts in phase
against it. So the Doppler band envelopes are cut into one segment per maternal beat (the
frames nearest each PPG beat fiducial), the average segment of the previous beats is the
maternal template, and each segment has its template (scaled to its own pulse amplitude)
subtracted: the maternal-template cancellation used to take the mother's ECG out of
abdominal fetal ECG (e.g. Martens et al., Physiol Meas 2007;28:373-388), applied here to
Doppler envelopes. What stays periodic after it is not locked to the mother's beats; what
vanishes was. The rule rests on the coupling itself, not on how a maternal pulse looks, so
it holds for any maternal vessel or mixture.

`MaternalCanceller` works on envelope frames in place as they are stored; it is pure state
(no clock, no I/O): the caller passes frame indices and beat positions.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from dsp.arrays import Floats

# The template is the running mean of the previous beats' segments: an exponential average
# over ~TEMPLATE_BEATS beats. Longer averages smear a fetal heart at a near-maternal rate
# more (it drifts by its rate difference per beat) but follow a changing maternal pulse
# more slowly; 16 beats (7-17 s at 55-130 bpm) is the order used for maternal ECG
# templates (Martens et al. 2007 use 20 complexes; judgement).
TEMPLATE_BEATS = 16
MIN_TEMPLATE_BEATS = 4  # segments before the template is trusted
MAX_BEAT_GAP_S = 60.0 / 40.0  # a longer gap between fiducials is a missed beat: skipped
# A segment's template is scaled to its own pulse (least squares) within this range: the
# maternal pulse amplitude varies with breathing and probe pressure from beat to beat.
SCALE_RANGE = (0.0, 3.0)
# The PPG fiducial of a beat is known to ~5-30 ms (sample noise, a merged dicrotic wave):
# each segment is aligned to the template within +-30 ms (best correlation) before the
# template is subtracted and updated, as ECG template cancellers align each complex.
MAX_ALIGN_S = 0.03
# ... and only subtracted where it resembles the segment (correlation >= 0.2; noise against
# a template of ~40 frames correlates ~0.15 by chance; judgement).
MIN_MATCH = 0.2


class MaternalCanceller:
    """Streaming maternal-template cancellation of envelope rows.

    `beats` are fiducial positions in frames (fractional); `cancel(env, first, n, ...)`
    processes every beat whose segment lies in the frames stored so far and returns the
    frame up to which the output is final.
    """

    def __init__(self, env_fs_hz: float, n_rows: int) -> None:
        self.env_fs = float(env_fs_hz)
        self._align = int(round(MAX_ALIGN_S * self.env_fs))
        self._half = int(np.ceil(MAX_BEAT_GAP_S / 2 * self.env_fs)) + 1 + self._align
        self._templates = np.zeros((n_rows, 2 * self._half + 1))
        self._n_beats = 0  # segments folded into the template
        self._beats: list[float] = []  # fiducials (frames) not yet processed, plus one before
        self.done = 0  # frames before this are final (cancelled or left as they were)
        self._max_gap = MAX_BEAT_GAP_S * self.env_fs

    def add_beats(self, frames: ArrayLike) -> None:
        for f in np.asarray(frames, dtype=float).ravel():
            if np.isfinite(f) and (not self._beats or f > self._beats[-1]):
                self._beats.append(float(f))

    def last_beat(self) -> float:
        return self._beats[-1] if self._beats else -np.inf

    def cancel(self, raw: Floats, out: Floats, covered: Floats, s: int, n_frames: int) -> None:
        """Cancel every beat segment complete in frames [done, n_frames).

        raw/out: rows x buffer columns (frame f is column f - s); covered[f - s] is set
        where a frame's cancellation used a trusted template. Frames left behind without a
        beat around them stay as copied (uncovered)."""
        beats = self._beats
        while len(beats) >= 3:
            b_prev, b, b_next = beats[0], beats[1], beats[2]
            lo = int(np.ceil((b_prev + b) / 2))
            hi = int(np.ceil((b + b_next) / 2))
            if hi > n_frames:
                break
            beats.pop(0)
            lo = max(lo, self.done)
            if hi <= lo:
                continue
            self.done = hi
            if b - b_prev > self._max_gap or b_next - b > self._max_gap:
                continue  # a missed beat or no PPG: no trustworthy segment
            centre = int(round(b))
            idx = np.arange(lo, hi) - centre + self._half
            m = self._align
            keep = (idx >= m) & (idx < self._templates.shape[1] - m) & (np.arange(lo, hi) >= s)
            cols = np.arange(lo, hi)[keep] - s
            idx = idx[keep]
            if cols.size < 3:
                continue
            seg = raw[:, cols]
            if self._n_beats >= MIN_TEMPLATE_BEATS:
                # alignment: the shift whose template best matches the segment, all rows
                s_ac = seg - seg.mean(axis=1, keepdims=True)
                span = self._templates[:, idx[0] - m : idx[-1] + m + 1]
                shifted = np.lib.stride_tricks.sliding_window_view(span, idx.size, axis=1)
                fit = np.einsum("ij,ikj->k", s_ac, shifted)  # idx is contiguous
                idx = idx + int(np.argmax(fit)) - m
                tpl = self._templates[:, idx]
                t_ac = tpl - tpl.mean(axis=1, keepdims=True)
                s_ac = seg - seg.mean(axis=1, keepdims=True)
                den = np.einsum("ij,ij->i", t_ac, t_ac)
                dot = np.einsum("ij,ij->i", s_ac, t_ac)
                scale = dot / np.where(den > 0, den, 1.0)
                # A segment that does not resemble the template (her pulse absent from this
                # band now) is left as it is: subtracting a template from noise would print
                # her rhythm into it.
                match = dot / np.sqrt(np.maximum(den * np.einsum("ij,ij->i", s_ac, s_ac), 1e-300))
                scale = np.where((den > 0) & (match >= MIN_MATCH), scale, 0.0)
                scale = np.clip(scale, *SCALE_RANGE)
                out[:, cols] = seg - scale[:, None] * t_ac
                covered[cols] = True
            alpha = 1.0 / min(self._n_beats + 1, TEMPLATE_BEATS)
            self._templates[:, idx] += alpha * (seg - self._templates[:, idx])
            self._n_beats += 1

    def skip_to(self, frame: int) -> None:
        """The PPG has nothing for frames before `frame`: leave them uncovered."""
        self.done = max(self.done, frame)
        while len(self._beats) >= 2 and self._beats[1] < frame:
            self._beats.pop(0)
