"""FHR from Doppler on a synthetic suite driven by recorded CTU-UHB rhythms.

Cases: 10-min segments of the recorded FHR traces (CTU-UHB Intrapartum CTG Database,
Chudacek et al., BMC Pregnancy Childbirth 2014;14:16) drive the Doppler synthesizer at
SNR 20, 10, 5, 0, -5 dB with fades, movement and a maternal artery in the beam (arterial
flow and vessel wall, -15..0 dB), with a maternal rate wandering around 70-115 bpm. The maternal-rate input is the rate
estimated from a synthesized PPG (not the truth).

Usage: python benchmarks/bench_fhr.py [--cases 60] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsp.fhr import FhrStream, fhr_from_doppler  # noqa: E402
from dsp.fhr_classic import fhr_classic  # noqa: E402
from dsp.mhr import MhrStream, mhr_from_ppg  # noqa: E402
from simulators.ctg_records import list_ctg_records, load_ctg_record, rhythm_segment  # noqa: E402
from simulators.doppler import synthesize_doppler  # noqa: E402
from simulators.ppg import synthesize_ppg  # noqa: E402

SNRS = (20.0, 10.0, 5.0, 0.0, -5.0)
FS = 4000


def build_cases(n_cases: int):
    rng = np.random.default_rng(2024)
    rhythms = []
    for name in list_ctg_records():
        _, fhr, _ = load_ctg_record(name)
        seg = rhythm_segment(fhr, 600)
        if seg is not None:
            rhythms.append((name, seg[1]))
    for i in range(n_cases):
        name, fhr = rhythms[i % len(rhythms)]
        snr = SNRS[i % len(SNRS)]
        m0 = rng.uniform(70, 115)
        mhr = m0 + np.cumsum(rng.normal(0, 0.05, fhr.size))
        mhr = np.clip(mhr + 4 * np.sin(np.arange(fhr.size) / 4 / rng.uniform(30, 90)), 55, 140)
        yield i, name, snr, fhr, mhr, int(rng.integers(1 << 30)), float(rng.uniform(-15, 0))


def score(points, truth_fhr, gain, rows, key):
    est = points.fhr_bpm
    rep = np.isfinite(est)
    present = gain >= 0.5
    absent = gain <= 0.1
    judged = rep & (gain > 0.1)
    err = est[judged] - truth_fhr[judged]
    r = est[judged] / truth_fhr[judged]
    octave = (np.abs(r - 0.5) < 0.06) | (np.abs(r - 2) < 0.2) | (np.abs(r - 1 / 3) < 0.04)
    octave |= (np.abs(r - 1.5) < 0.1) | (np.abs(r - 2 / 3) < 0.05)
    octave &= np.abs(err) > 5
    acc = rows.setdefault(
        key, dict(n=0, ok=0, ae=0.0, oct=0, pres=0, cov=0, abs=0, fa=0, nq=0, okq=0)
    )
    good_q = points.quality[judged] >= 0.5
    acc["nq"] += good_q.sum()
    acc["okq"] += (np.abs(err[good_q]) <= 5).sum()
    acc["n"] += judged.sum()
    acc["ok"] += (np.abs(err) <= 5).sum()
    acc["ae"] += np.abs(err).sum()
    acc["oct"] += octave.sum()
    acc["pres"] += present.sum()
    acc["cov"] += (rep & present).sum()
    acc["abs"] += absent.sum()
    acc["fa"] += (rep & absent).sum()


def speed():
    rng = np.random.default_rng(0)
    sc = synthesize_doppler(70 + np.full(2400, 70.0), None, snr_db=5, seed=1)
    audio = sc.audio
    t0 = time.process_time()
    fhr_from_doppler(audio, FS)
    batch = 600.0 / (time.process_time() - t0)
    stream = []
    for chunk in (400, FS):  # 0.1 s (a radio frame each), and 1 s (the gateway: once a publish)
        st = FhrStream(FS)
        t0 = time.process_time()
        for i in range(0, audio.size, chunk):
            st.feed(audio[i : i + chunk])
        st.flush()
        stream.append(600.0 / (time.process_time() - t0))
    # Memory: peak allocation while streaming 10 min vs 30 min.
    peaks = []
    for minutes in (10, 30):
        st = FhrStream(FS)
        tracemalloc.start()
        for _ in range(minutes * 60 * 10):
            st.feed(rng.standard_normal(400))
        peaks.append(tracemalloc.get_traced_memory()[1] / 1e6)
        tracemalloc.stop()
    return batch, stream, peaks


def emission_lags():
    """Seconds between a point's time and the arrival of the audio/PPG that releases it,
    both channels fed in 0.1 s chunks as the gateway receives them."""
    n = 240
    sc = synthesize_doppler(np.full(n, 140.0), np.full(n, 80.0), snr_db=10, seed=2)
    ppg = synthesize_ppg(np.full(n, 80.0), seed=2)
    alone, fst, mst = FhrStream(FS), FhrStream(FS), MhrStream(50)
    lags = {"FHR": [], "FHR with maternal channel": [], "MHR": []}
    for i in range(int(n / 4 * 10)):
        now = (i + 1) * 0.1
        audio = sc.audio[i * 400 : (i + 1) * 400]
        m = mst.feed(ppg[i * 5 : (i + 1) * 5])
        fst.feed_maternal(m.t_s, m.mhr_bpm)
        lags["MHR"] += list(now - m.t_s)
        lags["FHR with maternal channel"] += list(now - fst.feed(audio).t_s)
        lags["FHR"] += list(now - alone.feed(audio).t_s)
    return {k: (float(np.median(v)), float(np.max(v))) for k, v in lags.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows: dict = {}
    t_start = time.time()
    for i, name, snr, fhr, mhr, seed, mat_db in build_cases(args.cases):
        sc = synthesize_doppler(fhr, mhr, fs_hz=FS, snr_db=snr, seed=seed, maternal_db=mat_db)
        ppg = synthesize_ppg(mhr, seed=seed)
        m = mhr_from_ppg(ppg, 50)
        with_m = fhr_from_doppler(sc.audio, FS, m.t_s, m.mhr_bpm)
        without = fhr_from_doppler(sc.audio, FS)
        classic = fhr_classic(sc.audio, FS)
        for key, pts in (
            ("perimon, with MHR", with_m),
            ("perimon, no MHR", without),
            ("classic autocorrelation", classic),
        ):
            score(pts, sc.fhr_bpm, sc.fetal_gain, rows, key)
            score(pts, sc.fhr_bpm, sc.fetal_gain, rows, (key, snr))
        print(
            f"case {i} rec {name} snr {snr:+.0f} dB done ({time.time() - t_start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    batch, stream, peaks = speed()
    lags = emission_lags()
    print(
        "| method | SNR | within +-5 bpm | coverage | MAE bpm | octave errors | "
        "no-signal reported |"
    )
    print("|---|---|---|---|---|---|---|")
    for key in ("perimon, with MHR", "perimon, no MHR", "classic autocorrelation"):
        for k in [key] + [(key, s) for s in SNRS]:
            a = rows[k]
            label = "all" if isinstance(k, str) else f"{k[1]:+.0f} dB"
            n = max(a["n"], 1)
            print(
                f"| {key} | {label} | {100 * a['ok'] / n:.1f}% | "
                f"{100 * a['cov'] / max(a['pres'], 1):.1f}% | {a['ae'] / n:.2f} | "
                f"{100 * a['oct'] / n:.2f}% | {100 * a['fa'] / max(a['abs'], 1):.1f}% |"
            )
    print()
    print(
        f"Speed (one core, CPU time): batch {batch:.0f}x real time, streaming in 0.1 s "
        f"chunks {stream[0]:.0f}x, in 1 s chunks as the gateway feeds it {stream[1]:.0f}x real "
        f"time. Streaming peak memory: {peaks[0]:.2f} MB over "
        f"10 min, {peaks[1]:.2f} MB over 30 min."
    )
    print(
        "Emission lag (0.1 s chunks; median / max s after the point's time): "
        + ", ".join(f"{k} {a:.2f} / {b:.2f}" for k, (a, b) in lags.items())
        + "."
    )
    for key in ("perimon, with MHR", "perimon, no MHR"):
        a = rows[key]
        print(
            f"{key}: points with quality >= 0.5 are {100 * a['nq'] / max(a['n'], 1):.1f}% of "
            f"reported points, {100 * a['okq'] / max(a['nq'], 1):.1f}% of them within +-5 bpm."
        )
    print(
        f"Cases: {args.cases} x 10 min; points judged: {rows['perimon, no MHR']['n']}; "
        f"no-signal points: {rows['perimon, no MHR']['abs']}."
    )


if __name__ == "__main__":
    main()
