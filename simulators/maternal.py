"""The mother's heart beats, shared by every simulated sensor that hears them.

A finger PPG and a maternal vessel in a fetal Doppler beam pulse from the same heart beats;
each site receives the pressure pulse a transit delay after the beat (the pre-ejection
period plus the vascular transit time to that site). Rendering the PPG and the Doppler's
maternal components from one `MaternalBeats` reproduces that coupling: their pulses keep a
constant lag within a recording, apart from a few milliseconds of beat-to-beat jitter and a
slow respiratory modulation, whereas a fetal heart drifts in phase against them.

`MaternalBeats.from_rate` turns a 4 Hz maternal rate trace into beat instants with
respiratory sinus arrhythmia (RSA) at the breathing rate plus small beat-to-beat jitter;
`arrivals` gives the pulse arrival instants at a site.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.doppler import FS_TRACE_HZ, beat_times

# Maternal rates the simulators support: bradycardia to labour tachycardia (which overlaps
# the fetal range, 110-160 bpm).
MATERNAL_RATE_RANGE_BPM = (40.0, 200.0)
# Breathing 12-20 /min at rest, faster in labour (judgement; adult normal range).
RESP_RATE_RANGE_HZ = (0.2, 0.4)
# RSA, peak deviation of the instantaneous rate (bpm). High-frequency heart rate variability
# is reduced in late pregnancy (e.g. Ekholm et al., Am J Physiol 1997;272:H1457-H1463;
# HRV standards: Task Force of the ESC and NASPE, Circulation 1996;93:1043-1065), so a few
# bpm at most (judgement).
RSA_RANGE_BPM = (0.5, 4.0)
# Beat-to-beat jitter of the beat instants (s, SD) not explained by breathing (judgement,
# gives an RMSSD of ~10-20 ms with the RSA, low for pregnancy as for labour).
BEAT_JITTER_RANGE_S = (0.003, 0.008)
# Beat-to-beat jitter of the arrival at one site (s, SD): the pre-ejection period varies by
# ~2-6 ms within a person at rest (Kortekaas et al. 2018); judgement for the transit.
ARRIVAL_JITTER_S = 0.003
# The arrival time at each site, and its respiratory swing, are drawn by the site's renderer
# (simulators/ppg.py for the finger, simulators/doppler.py for the uterine arteries).


@dataclass(frozen=True)
class MaternalBeats:
    """The mother's heart beats over a recording.

    `t_s` are the beat instants (R waves, s from the start of the recording); the pulse
    reaches each measurement site a transit delay later (`arrivals`). `rate_bpm_4hz` is the
    mean-rate trace they follow (without the RSA), `resp_hz` and `resp_phase_rad` the
    breathing that modulates them (and the PPG baseline).
    """

    t_s: np.ndarray
    rate_bpm_4hz: np.ndarray
    duration_s: float
    resp_hz: float
    resp_phase_rad: float

    @classmethod
    def from_rate(
        cls,
        mhr_bpm_4hz: np.ndarray,
        seed: int | np.random.Generator = 0,
        rsa_bpm: float | None = None,
        jitter_s: float | None = None,
        resp_hz: float | None = None,
    ) -> MaternalBeats:
        """Beats following a 4 Hz mean maternal rate trace, with RSA and jitter.

        Unspecified RSA amplitude, jitter and breathing rate are drawn from the ranges above.
        """
        rate = np.asarray(mhr_bpm_4hz, dtype=float)
        if rate.ndim != 1 or rate.size < 8 or not np.all(np.isfinite(rate)):
            raise ValueError("mhr_bpm_4hz must be a finite 1-D trace of at least 2 s")
        lo, hi = MATERNAL_RATE_RANGE_BPM
        if rate.min() < lo or rate.max() > hi:
            raise ValueError(f"maternal rate must be {lo:.0f}-{hi:.0f} bpm")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        rsa = rng.uniform(*RSA_RANGE_BPM) if rsa_bpm is None else float(rsa_bpm)
        jit = rng.uniform(*BEAT_JITTER_RANGE_S) if jitter_s is None else float(jitter_s)
        f_resp = rng.uniform(*RESP_RATE_RANGE_HZ) if resp_hz is None else float(resp_hz)
        if not (0 <= rsa <= 20 and 0 <= jit <= 0.05 and 0.05 <= f_resp <= 1.0):
            raise ValueError("rsa_bpm must be 0-20, jitter_s 0-0.05, resp_hz 0.05-1")
        phase = rng.uniform(0.0, 2 * np.pi)
        t = (np.arange(rate.size) + 1) / FS_TRACE_HZ
        with_rsa = rate + rsa * np.sin(2 * np.pi * f_resp * t + phase)
        beats = beat_times(with_rsa, rng, jit)
        duration = rate.size / FS_TRACE_HZ
        beats = beats[(beats >= 0.0) & (beats < duration)]
        return cls(
            t_s=beats,
            rate_bpm_4hz=rate.copy(),
            duration_s=duration,
            resp_hz=f_resp,
            resp_phase_rad=phase,
        )

    def respiration(self, t_s: np.ndarray) -> np.ndarray:
        """Breathing phase as sin() at times t_s: +1 at the peak of inspiration."""
        return np.sin(2 * np.pi * self.resp_hz * np.asarray(t_s, dtype=float) + self.resp_phase_rad)

    def arrivals(
        self,
        delay_s: float,
        rng: np.random.Generator,
        jitter_s: float = ARRIVAL_JITTER_S,
        resp_mod_s: float = 0.0,
        resp_lag_rad: float = 0.0,
    ) -> np.ndarray:
        """Pulse arrival instants at a site `delay_s` after each beat (s): plus Gaussian
        jitter (SD `jitter_s`) and a respiratory swing of `resp_mod_s` (peak), lagging the
        breathing by `resp_lag_rad`."""
        if not (0.0 <= delay_s <= 1.0 and 0.0 <= jitter_s <= 0.05 and 0.0 <= resp_mod_s <= 0.1):
            raise ValueError("delay_s must be 0-1 s, jitter_s 0-0.05 s, resp_mod_s 0-0.1 s")
        resp = np.sin(2 * np.pi * self.resp_hz * self.t_s + self.resp_phase_rad - resp_lag_rad)
        return self.t_s + delay_s + resp_mod_s * resp + rng.normal(0.0, jitter_s, self.t_s.size)

    def rr_s(self) -> np.ndarray:
        """Interval from each beat to the next (s); the last repeats the one before."""
        if self.t_s.size < 2:
            return np.full(self.t_s.size, 60.0 / float(np.mean(self.rate_bpm_4hz)))
        d = np.diff(self.t_s)
        return np.append(d, d[-1])
