"""`perimon dsp fhr|mhr|ctg`: fetal heart rate from Doppler audio, maternal rate from PPG,
and CTG findings from an FHR trace (FIGO 2015 and the antenatal Dawes-Redman criteria).

Commands:
    perimon dsp fhr IN.wav [--ppg PPG.csv | --maternal-hr MHR.csv] [--out OUT.csv]
    perimon dsp mhr IN_PPG.csv --out MHR.csv
    perimon dsp ctg FHR.csv [--uc UC.csv] [--json] [--baseline-out B.csv]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import warnings

import numpy as np

from dsp.arrays import Floats
from gateway.cli import Subparsers, UserError

MIN_WAV_HZ, MAX_WAV_HZ = 1000, 16000
MIN_AUDIO_S = 3.0
MIN_PPG_S = 6.0


def register(dsp_subparsers: Subparsers) -> None:
    """Add the fhr, mhr and ctg subcommands to the `perimon dsp` group."""
    p = dsp_subparsers.add_parser("fhr", help="fetal heart rate (4 Hz) from Doppler audio WAV")
    p.add_argument("wav", metavar="IN.wav")
    p.add_argument(
        "--ppg",
        metavar="PPG.csv",
        help="the mother's PPG waveform, CSV t_s,ppg on the audio's time base (10-1000 Hz, "
        "covering the audio): her beat-locked pulses are cancelled and never shown as fetal",
    )
    p.add_argument("--maternal-hr", metavar="MHR.csv", help="maternal rate CSV t_s,mhr_bpm")
    p.add_argument("--out", metavar="OUT.csv", help="output CSV (default stdout)")
    p.set_defaults(func=cmd_fhr)

    p = dsp_subparsers.add_parser("mhr", help="maternal heart rate (4 Hz) from PPG CSV t_s,ppg")
    p.add_argument("ppg", metavar="IN_PPG.csv")
    p.add_argument("--out", metavar="MHR.csv", help="output CSV (default stdout)")
    p.set_defaults(func=cmd_mhr)

    p = dsp_subparsers.add_parser(
        "ctg", help="CTG findings (FIGO 2015 and Dawes-Redman) from an FHR trace"
    )
    p.add_argument("fhr", metavar="FHR.csv")
    p.add_argument("--uc", metavar="UC.csv", help="uterine activity CSV t_s,uc (4 Hz)")
    p.add_argument("--json", action="store_true", help="print JSON (the default format)")
    p.add_argument("--baseline-out", metavar="B.csv", help="write t_s,baseline_bpm at 4 Hz")
    p.set_defaults(func=cmd_ctg)


# -- reading ---------------------------------------------------------------------------
def _read_wav(path: str) -> tuple[Floats, int]:
    from scipy.io import wavfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs, data = wavfile.read(path)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file") from exc
    except MemoryError:
        raise
    except Exception as exc:
        # A barrier: scipy's WAV reader raises whatever its arithmetic meets in a malformed
        # header (ZeroDivisionError for zero channels, UnboundLocalError, ValueError, ...);
        # any of them means the file is not a WAV this command can read.
        detail = str(exc) if isinstance(exc, ValueError | OSError) else "malformed header"
        raise UserError(f"{path}: not a readable WAV file ({detail})") from exc
    if not MIN_WAV_HZ <= fs <= MAX_WAV_HZ:
        raise UserError(f"{path}: sample rate {fs} Hz outside {MIN_WAV_HZ}-{MAX_WAV_HZ} Hz")
    if data.ndim == 2:
        if data.shape[1] == 0:
            raise UserError(f"{path}: no channels")
        data = data[:, 0]
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned
        x = data.astype(float) - 128.0
    else:
        x = data.astype(float)
    if x.size == 0:
        raise UserError(f"{path}: empty audio")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{path}: audio contains NaN or infinite samples")
    if x.size < MIN_AUDIO_S * fs:
        raise UserError(f"{path}: too short ({x.size / fs:.2f} s; need {MIN_AUDIO_S:.0f} s)")
    return x, int(fs)


def _read_columns(path: str, columns: tuple[str, ...], allow_empty: set[str]) -> dict[str, Floats]:
    """Numeric columns of a CSV; empty cells allowed (as NaN) only in `allow_empty`."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
            reader.fieldnames = header
            out: dict[str, list[float]] = {c: [] for c in columns}
            for line, row in enumerate(reader, start=2):
                for c in columns:
                    cell = (row.get(c) or "").strip()
                    if cell == "":
                        if c not in allow_empty:
                            raise UserError(f"{path}:{line}: empty {c}")
                        out[c].append(np.nan)
                        continue
                    try:
                        v = float(cell)
                    except ValueError as exc:
                        raise UserError(f"{path}:{line}: {c} is not a number: {cell!r}") from exc
                    if not np.isfinite(v):
                        raise UserError(f"{path}:{line}: {c} is not finite: {cell!r}")
                    out[c].append(v)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read CSV ({exc})") from exc
    arrays = {c: np.asarray(v, dtype=float) for c, v in out.items()}
    if arrays[columns[0]].size == 0:
        raise UserError(f"{path}: no data rows")
    return arrays


def _check_time(path: str, t: Floats) -> None:
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise UserError(f"{path}: t_s must be strictly increasing")


def _write_csv(path: str | None, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    if path is None:
        sys.stdout.write(buf.getvalue())
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror})") from exc


def _fmt(x: float, nd: int) -> str:
    return "" if not np.isfinite(x) else f"{x:.{nd}f}"


# -- commands ---------------------------------------------------------------------------
def cmd_fhr(args: argparse.Namespace) -> int:
    from dsp.fhr import FhrPoints, FhrStream
    from dsp.mhr import maternal_beats_from_ppg

    audio, fs = _read_wav(args.wav)
    if args.ppg and args.maternal_hr:
        raise UserError("give --ppg or --maternal-hr, not both (the PPG gives the rate too)")
    stream = FhrStream(fs)
    if args.maternal_hr:
        cols = _read_columns(args.maternal_hr, ("t_s", "mhr_bpm"), allow_empty={"mhr_bpm"})
        _check_time(args.maternal_hr, cols["t_s"])
        stream.feed_maternal(cols["t_s"], cols["mhr_bpm"])
    if args.ppg:
        t, x, ppg_fs = _read_ppg(args.ppg)
        # Audio sample i is at t = (i + 1) / fs (points at 0.25, 0.5, ...), like the PPG's
        # rows; the PPG must cover the recording so no stretch goes unchecked.
        end_s = audio.size / fs
        if t[0] > 1.0 / fs + 1.0 / ppg_fs or t[-1] < end_s - 1.0 / ppg_fs:
            raise UserError(
                f"{args.ppg}: covers {t[0]:.2f}-{t[-1]:.2f} s, the audio 0-{end_s:.2f} s"
            )
        t0 = t[0] - 1.0 / ppg_fs  # beat times are counted from the sample before the first
        stream.feed_maternal_beats(t0 + maternal_beats_from_ppg(x, ppg_fs))
    pts = FhrPoints.concat([stream.feed(audio), stream.flush()])
    rows = [
        [f"{t:.2f}", _fmt(b, 1), f"{q:.2f}", "maternal" if m else ""]
        for t, b, q, m in zip(pts.t_s, pts.fhr_bpm, pts.quality, pts.maternal, strict=True)
    ]
    _write_csv(args.out, ["t_s", "fhr_bpm", "quality", "reason"], rows)
    return 0


def _read_ppg(path: str) -> tuple[Floats, Floats, float]:
    """A PPG CSV t_s,ppg: uniformly sampled at 10-1000 Hz, at least MIN_PPG_S long."""
    cols = _read_columns(path, ("t_s", "ppg"), allow_empty=set())
    t, x = cols["t_s"], cols["ppg"]
    _check_time(path, t)
    if t.size < 2:
        raise UserError(f"{path}: too short")
    dt = np.diff(t)
    fs = 1.0 / float(np.median(dt))
    if np.any(np.abs(dt - 1.0 / fs) > 0.25 / fs):
        raise UserError(f"{path}: t_s must be uniformly sampled")
    if not 10.0 <= fs <= 1000.0:
        raise UserError(f"{path}: PPG sample rate {fs:.1f} Hz outside 10-1000 Hz")
    if t[-1] - t[0] < MIN_PPG_S:
        raise UserError(f"{path}: too short ({t[-1] - t[0]:.1f} s; need {MIN_PPG_S:.0f} s)")
    return t, x, fs


def cmd_mhr(args: argparse.Namespace) -> int:
    from dsp.mhr import mhr_from_ppg

    t, x, fs = _read_ppg(args.ppg)
    pts = mhr_from_ppg(x, fs)
    t0 = t[0] - 1.0 / fs  # points are timed from the first sample like the FHR
    rows = [[f"{t0 + tt:.2f}", _fmt(b, 1)] for tt, b in zip(pts.t_s, pts.mhr_bpm, strict=True)]
    _write_csv(args.out, ["t_s", "mhr_bpm"], rows)
    return 0


def cmd_ctg(args: argparse.Namespace) -> int:
    from dsp.ctg import analyse_ctg, baseline_trace
    from dsp.dawes_redman import dawes_redman

    cols = _read_columns(args.fhr, ("t_s", "fhr_bpm"), allow_empty={"fhr_bpm"})
    t, f = cols["t_s"], cols["fhr_bpm"]
    _check_time(args.fhr, t)
    if t.size > 1 and np.any(np.abs(np.diff(t) - 0.25) > 0.01):
        raise UserError(f"{args.fhr}: t_s must be at 4 Hz (every 0.25 s) without gaps")
    uc = None
    if args.uc:
        u = _read_columns(args.uc, ("t_s", "uc"), allow_empty={"uc"})
        if u["t_s"].size != t.size or np.any(np.abs(u["t_s"] - t) > 0.01):
            raise UserError(f"{args.uc}: t_s must match {args.fhr}")
        uc = u["uc"]
    try:
        findings = analyse_ctg(t, f, uc)
        antenatal = dawes_redman(t, f)
        base = baseline_trace(t, f) if args.baseline_out else None
    except ValueError as exc:
        raise UserError(f"{args.fhr}: {exc}") from exc
    if base is not None:
        rows = [[f"{tt:.2f}", _fmt(b, 1)] for tt, b in zip(t, base, strict=True)]
        _write_csv(args.baseline_out, ["t_s", "baseline_bpm"], rows)
    out = {**findings.to_dict(), "dawes_redman": antenatal.to_dict()}
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0
