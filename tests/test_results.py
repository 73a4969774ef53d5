"""Results files, reference curves, BD-rate, RD plots and the sensitivity table."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from taco_plus.results.bdrate import bd_rate
from taco_plus.results.format import list_references, load_curve, load_results, make_results, merge_results, \
    save_results
from taco_plus.results.per_image import CSV_COLUMNS, read_per_image_csv, summarize, write_per_image_csv
from taco_plus.results.plot import main as plot_main
from taco_plus.results.plot import plot_rd
from taco_plus.results.sensitivity import derangement, sensitivity_table, write_sensitivity
from tests.conftest import shared_path

ELIC_BPP = [0.1235, 0.1965, 0.3337, 0.4908, 0.7041, 0.8573]
ELIC_PSNR = [29.11, 30.70, 32.78, 34.58, 36.49, 37.62]


# ---------------------------------------------------------------- BD-rate


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_rates_scaled_by_0_9_is_minus_10_percent(method):
    test_bpp = [0.9 * b for b in ELIC_BPP]
    assert bd_rate(ELIC_BPP, ELIC_PSNR, test_bpp, ELIC_PSNR, method) == pytest.approx(-10.0, abs=1e-9)
    # The other way round: 1/0.9 - 1 = +11.11 %.
    assert bd_rate(test_bpp, ELIC_PSNR, ELIC_BPP, ELIC_PSNR, method) == pytest.approx(100 / 9, abs=1e-9)


def test_bd_rate_partial_overlap_and_decreasing_metric():
    # log r = 3 - 0.1·q on the anchor, log r = 3 - 0.1·q + ln 1.2 on the test, only
    # q in [32, 36] shared: still +20 %. A falling metric (LPIPS-like) works too.
    q_a, q_t = np.linspace(28, 36, 5), np.linspace(32, 40, 5)
    r_a, r_t = np.exp(3 - 0.1 * q_a), np.exp(3 - 0.1 * q_t) * 1.2
    assert bd_rate(r_a, q_a, r_t, q_t) == pytest.approx(20.0, abs=1e-9)


def test_bd_rate_matches_hand_integral_on_different_shapes():
    # Anchor: log r = q/10 (linear); test: log r = q/10 + (q-30)/20 on q in [30, 40].
    # Mean difference = ∫_30^40 (q-30)/20 dq / 10 = 0.25 -> exp(0.25) - 1.
    q = np.linspace(30, 40, 6)
    got = bd_rate(np.exp(q / 10), q, np.exp(q / 10 + (q - 30) / 20), q, "cubic")
    assert got == pytest.approx((math.exp(0.25) - 1) * 100, abs=1e-9)


def test_bd_rate_bad_inputs():
    with pytest.raises(ValueError, match="share no metric interval"):
        bd_rate([0.1, 0.2], [28, 29], [0.3, 0.4], [35, 36])
    with pytest.raises(ValueError, match="at least 4 points"):
        bd_rate([0.1, 0.2], [28, 29], [0.1, 0.2], [28, 29], "cubic")
    with pytest.raises(ValueError, match="method"):
        bd_rate([0.1, 0.2], [28, 29], [0.1, 0.2], [28, 29], "linear")


def test_bd_rate_on_results_files_through_compare(tmp_path, capsys):
    from taco_plus.experiments import __main__ as experiments

    mine = make_results("mine", {"bpp": [0.9 * b for b in ELIC_BPP], "psnr-rgb": ELIC_PSNR})
    path = save_results(mine, tmp_path / "mine.json")
    assert experiments.main(["compare", "elic_paper", str(path)]) == 0
    assert "-10.00%" in capsys.readouterr().out


# ---------------------------------------------------------------- results files


def test_results_file_round_trip_and_compressai_reader(tmp_path):
    from compressai.utils.plot.__main__ import parse_json_file

    data = make_results("x", {"bpp": [0.3], "psnr-rgb": [30.1], "ms-ssim-rgb": [float("nan")]}, "d", {"k": 1})
    path = save_results(data, tmp_path / "x.json")
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["results"]["ms-ssim-rgb"] == [None]
    assert load_results(path)["meta"] == {"k": 1}
    parsed = parse_json_file(path, "psnr")  # CompressAI's own plotting reader
    assert parsed["xs"] == [0.3] and parsed["ys"] == [30.1] and parsed["name"] == "x"


def test_results_validation(tmp_path):
    with pytest.raises(ValueError, match="lists of one length"):
        make_results("x", {"bpp": [0.1, 0.2], "psnr-rgb": [30.0]})
    bad = tmp_path / "bad.json"
    bad.write_text('{"bpp": [1]}')
    with pytest.raises(ValueError, match="not a CompressAI results file"):
        load_results(bad)


def test_merge_sorts_by_bpp_and_keeps_common_metrics(tmp_path):
    hi = save_results(make_results("hi", {"bpp": [0.5], "psnr-rgb": [34.0], "lpips": [0.05]}, meta={"l": 2}), tmp_path / "hi.json")
    lo = save_results(make_results("lo", {"bpp": [0.2], "psnr-rgb": [30.0]}, meta={"l": 1}), tmp_path / "lo.json")
    merged = merge_results([load_results(hi), load_results(lo)], "curve")
    assert merged["results"] == {"bpp": [0.2, 0.5], "psnr-rgb": [30.0, 34.0]}
    assert sorted(p["l"] for p in merged["meta"]["points"]) == [1, 2]
    assert merged["meta"]["dropped_metrics"] == ["lpips"] and merged["meta"]["seeds"] == [1, 1]


def test_merge_averages_the_seeds_of_a_rate_point():
    """Two seeds of one λ become one point: the means, their standard deviation and count."""
    seeds = [make_results(f"s{i}", {"bpp": [b], "psnr-rgb": [p], "lpips": [None]}) for i, (b, p) in
             enumerate([(0.50, 30.0), (0.52, 30.4), (0.20, 28.0)])]
    merged = merge_results(seeds, "curve", groups=["lmbda_0.004", "lmbda_0.004", "lmbda_0.0016"])
    assert merged["results"]["bpp"] == [0.2, pytest.approx(0.51)] and merged["results"]["psnr-rgb"][1] == pytest.approx(30.2)
    assert merged["results"]["lpips"] == [None, None] and merged["meta"]["labels"] == ["lmbda_0.0016", "lmbda_0.004"]
    assert merged["meta"]["seeds"] == [1, 2] and merged["meta"]["spread"]["bpp"] == [None, pytest.approx(0.02 / 2 ** 0.5)]


def test_per_image_csv_round_trip_and_summary(tmp_path):
    rows = [
        dict(id="a", height=64, width=96, bytes=100, bpp=8 * 100 / (64 * 96), psnr=30.0, ms_ssim=float("nan"),
             lpips=0.2, clip_score=None, enc_ms=10.0, dec_ms=20.0),
        dict(id="b", height=64, width=64, bytes=50, bpp=8 * 50 / 4096, psnr=32.0, ms_ssim=float("nan"),
             lpips=0.4, clip_score=None, enc_ms=30.0, dec_ms=40.0),
    ]
    path = write_per_image_csv(rows, tmp_path / "per_image.csv")
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    back = read_per_image_csv(path)
    assert back[0]["bytes"] == 100 and back[0]["bpp"] == rows[0]["bpp"] and back[0]["clip_score"] is None
    assert math.isnan(back[1]["ms_ssim"])
    results, counts = summarize(back)
    assert results["psnr-rgb"] == [31.0] and results["lpips"] == [pytest.approx(0.3)]
    assert results["ms-ssim-rgb"] == [None] and counts["ms-ssim-rgb"] == 0
    assert "clip_score" not in results
    assert results["encoding_time"] == [pytest.approx(0.02)] and results["decoding_time"] == [pytest.approx(0.03)]
    # Files written before the caption-policy columns existed still read.
    old_header = ",".join(CSV_COLUMNS[:11])
    old = tmp_path / "old.csv"
    old.write_text(old_header + "\n" + "a,64,96,100,0.13,30.0,nan,0.2,,10.0,20.0\n")
    assert read_per_image_csv(old)[0]["caption_policy"] is None and read_per_image_csv(old)[0]["bytes"] == 100


# ---------------------------------------------------------------- reference curves


def _numbers(cell: str):
    """'0.1 / 0.2 (note)' -> [0.1, 0.2]; '—' or 'same rates' -> None."""
    cell = re.sub(r"\(.*\)", "", cell).strip()
    return [float(v) for v in cell.split(" / ")] if re.fullmatch(r"[\d.]+( / [\d.]+)*", cell) else None


def _design_table() -> dict[str, list]:
    """DESIGN.md's "Numbers to compare against" rows: system -> [bpp, PSNR, LPIPS]."""
    rows = {}
    for line in shared_path("DESIGN.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and (_numbers(cells[1]) or cells[1] == "same rates"):
            rows[cells[0]] = [_numbers(c) for c in cells[1:4]]
    return rows


def test_reference_curves_copy_design_md_exactly():
    table = _design_table()
    refs = {name: load_curve(name)["results"] for name in list_references()}
    assert refs["elic_paper"] == {"bpp": table["ELIC (paper)"][0], "psnr-rgb": table["ELIC (paper)"][1]}
    assert refs["lic_tcm_large"] == {"bpp": table["LIC-TCM large"][0], "psnr-rgb": table["LIC-TCM large"][1]}
    taco = table["TACO released, λ 0.0008 … 0.015"]
    assert refs["taco_released_lpips_ref"] == {"bpp": taco[0], "lpips": taco[2]}
    assert refs["taco_released_empty_caption_lpips_ref"] == {"bpp": taco[0], "lpips": table["same, empty caption"][2]}
    repro = table["TACO λ 0.0004, reproduced"]
    assert refs["taco_reproduced_lambda0004"]["bpp"] == repro[0] and refs["taco_reproduced_lambda0004"]["lpips"] == repro[2]
    for name in ("taco_released_lpips_ref", "taco_released_empty_caption_lpips_ref"):
        assert "reference LPIPS convention" in load_curve(name)["description"]


# ---------------------------------------------------------------- plots


def test_rd_plot_written_with_references(tmp_path):
    mine = save_results(make_results("mine", {"bpp": [0.2, 0.4], "psnr-rgb": [29.0, 32.5]}), tmp_path / "m.json")
    out = plot_rd([mine], tmp_path / "rd.png", "psnr-rgb", ["elic_paper", "lic_tcm_large"])
    assert out.stat().st_size > 10_000
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 500
    assert plot_main(["--metric", "lpips", "--reference", "all", "-o", str(tmp_path / "lp.png")]) == 0
    assert (tmp_path / "lp.png").stat().st_size > 10_000
    assert plot_main([str(mine), "--metric", "lpips", "-o", str(tmp_path / "x.png")]) == 2
    # several metrics: one panel each, a results file drawn where it has the metric
    out = plot_rd([mine], tmp_path / "panels.png", ["psnr-rgb", "lpips"], ["taco_released_lpips_ref"])
    with Image.open(out) as im:
        assert im.size[0] > 1.5 * im.size[1]  # two panels side by side


# ---------------------------------------------------------------- sensitivity


def _rows(bpps, psnrs, lpipss):
    return [dict(id=f"im{i}", bpp=b, psnr=p, lpips=l, clip_score=None) for i, (b, p, l) in enumerate(zip(bpps, psnrs, lpipss))]


def test_derangement_has_no_fixed_point():
    mapping = derangement(["c", "a", "b"])
    assert mapping == {"a": "b", "b": "c", "c": "a"}
    with pytest.raises(ValueError, match="at least two"):
        derangement(["a"])


def test_sensitivity_table_three_rows(tmp_path):
    table = sensitivity_table({
        "real": _rows([0.2, 0.4], [30.0, 32.0], [0.10, 0.20]),
        "empty": _rows([0.21, 0.43], [29.0, 31.0], [0.12, 0.20]),
        "other": _rows([0.2, 0.4], [30.0, 32.0], [0.10, 0.20]),
    })
    assert [r["caption"] for r in table] == ["real", "empty", "other"]
    empty = table[1]
    assert empty["delta_bpp"] == pytest.approx(0.02) and empty["delta_bpp_pct"] == pytest.approx(100 * 0.02 / 0.3)
    assert empty["delta_psnr"] == pytest.approx(-1.0) and empty["delta_lpips"] == pytest.approx(0.01)
    assert table[0]["delta_psnr"] == 0.0 and table[2]["delta_lpips"] == 0.0 and empty["delta_clip_score"] is None
    md, csv_path = write_sensitivity(table, tmp_path)
    assert len([l for l in md.read_text().splitlines() if l.startswith("| ") and "caption" not in l]) == 3
    assert len(csv_path.read_text().splitlines()) == 4
    with pytest.raises(ValueError, match="different images"):
        sensitivity_table({"real": _rows([0.2], [30.0], [0.1]), "empty": _rows([0.2, 0.3], [30.0, 1], [0.1, 1])})


def test_rd_figure_keeps_conventions_apart_and_draws_what_a_paper_needs(tmp_path, monkeypatch):
    """One panel per metric and LPIPS convention (the released TACO's reference-convention LPIPS never
    shares an axis with corrected values), no empty panel, a single rate point as a labelled marker,
    seed spread as error bars, MS-SSIM in dB as CompressAI plots it, one legend outside the panels."""
    import matplotlib.figure

    figures = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k)))
    seeds = make_results("two seeds", {"bpp": [0.2, 0.4], "psnr-rgb": [29.0, 32.0], "ms-ssim-rgb": [0.9, 0.99],
                                       "lpips": [0.05, 0.03]},
                         meta={"lpips_convention": "correct", "seeds": [2, 2], "spread": {"psnr-rgb": [0.1, 0.2]}})
    lone = make_results("one point", {"bpp": [0.3], "psnr-rgb": [30.0], "lpips": [0.04]}, meta={"lpips_convention": "correct"})
    plot_rd([seeds, lone], tmp_path / "rd.png", references=["all"])
    (fig,) = figures
    panels = {ax.get_ylabel(): ax for ax in fig.axes}
    assert set(panels) == {"PSNR [dB]", "MS-SSIM [dB]", "LPIPS (lower is better), correct convention",
                           "LPIPS (lower is better), reference convention"}  # no panel for a lone reference point
    labels = {ax.get_ylabel(): {c.get_label() for c in ax.containers} for ax in fig.axes}
    assert labels["LPIPS (lower is better), reference convention"] == {
        "TACO released (LPIPS ref. convention)", "TACO released, empty caption (LPIPS ref. convention)"}
    assert labels["LPIPS (lower is better), correct convention"] == {"two seeds (mean of 2 seeds)", "one point"}
    assert "TACO lambda 0.0004, reproduced" in labels["PSNR [dB]"]  # its one PSNR point, next to ELIC's curve
    assert [t.get_text() for t in panels["PSNR [dB]"].texts].count("one point") == 1  # labelled where it is
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    psnr = next(c for c in panels["PSNR [dB]"].containers if c.get_label().startswith("two seeds"))
    assert psnr.has_yerr and not psnr.has_xerr  # the seeds' spread, where recorded
    ms_ssim = panels["MS-SSIM [dB]"].containers[0].lines[0].get_ydata()
    assert ms_ssim == pytest.approx([10.0, 20.0])  # -10 log10(1 - MS-SSIM)
