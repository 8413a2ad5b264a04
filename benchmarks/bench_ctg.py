"""CTG analysis on the recorded CTU-UHB traces (Chudacek et al., BMC Pregnancy Childbirth
2014;14:16): distribution of findings, FIGO class against umbilical artery pH, and speed.

Usage: python benchmarks/bench_ctg.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsp.ctg import analyse_ctg  # noqa: E402
from simulators.ctg_records import list_ctg_records, load_ctg_index, load_ctg_record  # noqa: E402


def main() -> None:
    ph = {r["record"]: float(r["pH"]) for r in load_ctg_index() if r.get("pH")}
    rows = []
    cpu = 0.0
    hours = 0.0
    for name in list_ctg_records():
        t, f, uc = load_ctg_record(name)
        # The last 60 min before delivery, as usually analysed on this database.
        n = min(t.size, 60 * 60 * 4)
        t, f, uc = t[-n:] - t[-n] + 0.25, f[-n:], uc[-n:]
        t0 = time.process_time()
        c = analyse_ctg(t, f, uc)
        cpu += time.process_time() - t0
        hours += n / 4 / 3600
        rows.append((name, c, ph.get(name, np.nan)))
    classes = ["normal", "suspicious", "pathological", "indeterminate"]
    print("| FIGO class | records | median pH | pH < 7.05 |")
    print("|---|---|---|---|")
    for k in classes:
        p = np.array([r[2] for r in rows if r[1].figo_class == k])
        if p.size:
            print(f"| {k} | {p.size} | {np.nanmedian(p):.2f} | {int(np.sum(p < 7.05))} |")
    base = np.array([r[1].baseline_bpm or np.nan for r in rows])
    var = np.array([r[1].variability_bpm or np.nan for r in rows])
    stv = np.array([r[1].stv_ms or np.nan for r in rows])
    loss = np.array([r[1].signal_loss_pct for r in rows])
    nacc = np.array([len(r[1].accelerations) for r in rows])
    ndec = np.array([len(r[1].decelerations) for r in rows])
    print()
    print("| finding (last 60 min) | median | 10th-90th centile |")
    print("|---|---|---|")
    for label, x in (
        ("baseline bpm", base),
        ("variability bpm", var),
        ("STV ms", stv),
        ("signal loss %", loss),
        ("accelerations", nacc),
        ("decelerations", ndec),
    ):
        lo, mid, hi = np.nanpercentile(x, [10, 50, 90])
        print(f"| {label} | {mid:.1f} | {lo:.1f}-{hi:.1f} |")
    low = np.array([r[2] < 7.05 for r in rows])
    patho = np.array([r[1].figo_class == "pathological" for r in rows])
    print()
    print(
        f"Records: {len(rows)}; acidaemic (pH < 7.05): {low.sum()}; pathological among "
        f"them: {int((patho & low).sum())}; pathological among the others: "
        f"{int((patho & ~low).sum())}. Speed: {hours / (cpu / 3600):.0f}x real time "
        f"({hours:.0f} h of trace in {cpu:.1f} s CPU)."
    )


if __name__ == "__main__":
    main()
