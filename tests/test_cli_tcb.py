"""`perimon dsp tcb ...` as the other tools call it: files in, CSV/JSON out, one-line errors."""

import argparse
import csv
import json

import pytest

from gateway.cli import UserError, dsp_tcb

pytestmark = pytest.mark.unit

LED_NM = (450, 470, 505, 550, 590, 650)
ROW = {
    "r_near_450": 0.12, "r_near_470": 0.15, "r_near_505": 0.36, "r_near_550": 0.53,
    "r_near_590": 0.60, "r_near_650": 0.69, "r_far_450": 0.0045, "r_far_470": 0.0081,
    "r_far_505": 0.093, "r_far_550": 0.22, "r_far_590": 0.30, "r_far_650": 0.42,
}  # fmt: skip


def run(argv: list[str]) -> int:
    """The dispatcher's contract: func(args) -> exit code; UserError -> one line, exit 2."""
    parser = argparse.ArgumentParser(prog="perimon")
    sub = parser.add_subparsers(dest="command", required=True)
    dsp = sub.add_parser("dsp").add_subparsers(dest="dsp_command", required=True)
    dsp_tcb.register(dsp)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"perimon: error: {exc}")
        return 2


def _write_meas(path, rows):
    cols = ["id"] + [f"r_near_{nm}" for nm in LED_NM] + [f"r_far_{nm}" for nm in LED_NM]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow(row)


def test_estimate_writes_the_contract_columns(tmp_path, capsys):
    meas = tmp_path / "meas.csv"
    bad = dict(ROW, id="b2", r_near_450="")
    _write_meas(meas, [dict(ROW, id="b1"), bad])
    out = tmp_path / "est.csv"
    assert run(["dsp", "tcb", "estimate", str(meas), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["id", "tcb_mg_dl", "ci_low", "ci_high", "flag"]
    assert rows[0]["flag"] == "" and 5 < float(rows[0]["tcb_mg_dl"]) < 20
    assert float(rows[0]["ci_low"]) < float(rows[0]["tcb_mg_dl"]) < float(rows[0]["ci_high"])
    assert rows[1]["flag"] == "invalid_reflectance" and rows[1]["tcb_mg_dl"] == ""
    assert run(["dsp", "tcb", "estimate", str(meas)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "id,tcb_mg_dl,ci_low,ci_high,flag"


def test_estimate_bad_files_give_one_line_error(tmp_path, capsys):
    assert run(["dsp", "tcb", "estimate", str(tmp_path / "missing.csv")]) == 2
    broken = tmp_path / "broken.csv"
    broken.write_text("id,r_near_450\nx,0.1\n")
    assert run(["dsp", "tcb", "estimate", str(broken)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(s.startswith("perimon: error:") for s in lines)
    assert "missing column" in lines[1]


def test_calibrate_then_estimate_with_that_model(tmp_path):
    cal = tmp_path / "cal.csv"
    cols = ["id", "tsb_mg_dl"] + list(ROW)
    with open(cal, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for i in range(60):
            k = i / 60
            row = {c: v * (1 - 0.5 * k if "45" in c or "47" in c else 1 + 0.01 * (i % 7))
                   for c, v in ROW.items()}  # fmt: skip
            w.writerow(dict(row, id=f"c{i}", tsb_mg_dl=2 + 20 * k))
    model = tmp_path / "model.json"
    assert run(["dsp", "tcb", "calibrate", str(cal), "--out", str(model)]) == 0
    assert len(json.loads(model.read_text())["coef"]) == 19
    meas = tmp_path / "meas.csv"
    _write_meas(meas, [dict(ROW, id="x")])
    out = tmp_path / "est.csv"
    assert run(["dsp", "tcb", "estimate", str(meas), "--model", str(model), "--out", str(out)]) == 0
    assert list(csv.DictReader(open(out)))[0]["id"] == "x"
    assert run(["dsp", "tcb", "calibrate", str(meas), "--out", str(model)]) == 2


def test_assess_prints_thresholds_json(capsys):
    argv = ["dsp", "tcb", "assess", "--tcb", "12.4", "--age-hours", "40", "--ga-weeks", "38"]
    assert run(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["phototherapy_threshold_mg_dl"] == pytest.approx(14.8)
    assert data["margin_to_phototherapy_mg_dl"] == pytest.approx(2.4)
    assert data["serum_test_advised"] is True
    assert data["bhutani_zone"] in ("low", "low_intermediate", "high_intermediate", "high")
    assert run(argv + ["--risk-factors"]) == 0
    with_rf = json.loads(capsys.readouterr().out)
    assert with_rf["phototherapy_threshold_mg_dl"] < data["phototherapy_threshold_mg_dl"]


@pytest.mark.parametrize(
    "extra",
    [["--ga-weeks", "33"], ["--ga-weeks", "nan"], ["--ga-weeks", "38", "--previous", "x"]],
)
def test_assess_bad_input_exit_2(extra, capsys):
    argv = ["dsp", "tcb", "assess", "--tcb", "12.4", "--age-hours", "40"] + extra
    assert run(argv) == 2
    assert capsys.readouterr().out.startswith("perimon: error:")
