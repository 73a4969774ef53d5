"""Benchmark scripts: smoke runs on a tiny grid, CSV validity, computed conclusions."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from taco_plus.bench import attention, codec
from taco_plus.results import attention_bench as report
from tests.conftest import shared_path


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_attention_benchmark_smoke(tmp_path, capsys):
    out_csv, out_png = tmp_path / "a.csv", tmp_path / "a.png"
    argv = ["--tokens", "38,77", "--sizes", "64x64", "--train-sizes", "64x64", "--repeat", "1", "--warmup", "0",
            "--dims", "32,64,64,4", "--device", "cpu", "--clock", "cpu", "--threads", "1",
            "--csv", str(out_csv), "--plot", str(out_png)]  # fmt: skip
    assert attention.main(argv) == 0
    rows = read_rows(out_csv)
    assert list(rows[0]) == attention.COLUMNS
    variants = ("full", "linformer", "linformer_image", "linformer_text")  # every option by default
    assert {(r["variant"], r["tokens"], r["part"]) for r in rows} == {
        (v, t, p) for v in variants for t in ("38", "77") for p in ("adapter", "encoder")
    }
    for r in rows:
        assert (r["height"], r["width"], r["image_tokens"]) == ("64", "64", "64")
        for key in ("fwd_ms", "fwd_bwd_ms", "gflops"):
            assert float(r[key]) > 0 and math.isfinite(float(r[key]))
        assert float(r["peak_mb"]) >= 0 or math.isnan(float(r["peak_mb"]))
    # The adapter is part of the encoder: fewer FLOPs.
    by = {(r["variant"], r["tokens"], r["part"]): float(r["gflops"]) for r in rows}
    assert all(by[(v, t, "adapter")] < by[(v, t, "encoder")] for v, t, _ in by)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    for v in variants[1:]:  # every option is compared with full attention
        assert f"crossover (FLOPs): {v} " in printed and f"adapter share of g_a time, {v}:" in printed


def test_attention_benchmark_rejects_unknown_variant(tmp_path, capsys):
    argv = ["--variants", "sparse", "--tokens", "38", "--sizes", "64x64", "--csv", str(tmp_path / "x.csv")]
    assert attention.main(argv) == 2
    assert "unknown attention variant 'sparse'" in capsys.readouterr().err


def test_size_parsing():
    assert attention.parse_size("2048x1365") == (2048, 1365)
    with pytest.raises(Exception, match="WIDTHxHEIGHT"):
        attention.parse_size("2048")


def fake_rows() -> list[dict]:
    """Rows shaped like the benchmark's: full grows with length, linformer is flat."""
    rows = []
    for n in (38, 77, 308, 2464):
        for variant, adapter_ms in (("full", 10.0 + 0.1 * n), ("linformer", 17.0 + 0.001 * n)):
            for part, ms in (("adapter", adapter_ms), ("encoder", adapter_ms + 100.0)):
                rows.append(dict(variant=variant, tokens=n, width=256, height=256, part=part,
                                 fwd_ms=ms, gflops=ms / 10))  # fmt: skip
    return rows


def test_conclusions_are_computed_from_rows():
    lines = report.conclusions(fake_rows())
    text = "\n".join(lines)
    # linformer 2464 vs 77: (17 + 2.464) / (17 + 0.077)
    assert f"{(17 + 2.464) / (17 + 0.077):.2f}x its time at 77 tokens" in text and "within 1.2x" in text
    # full is cheaper at 38 (13.8 < 17.04) and 77 (17.7 > 17.08): crossover at 77
    assert "crossover (time): linformer cheaper from 77 tokens on" in text
    assert f"full: 38: {100 * 13.8 / 113.8:.0f}%" in text


def test_crossover_requires_every_longer_length():
    full = pd.Series({38: 5.0, 77: 9.0, 154: 7.0, 308: 20.0})
    assert report.crossover(full, full * 0 + 8.0) == 308
    assert report.crossover(full, full * 0 + 99.0) is None
    assert report.crossover(full, full * 0 + 1.0) == 38
    assert report.crossover(full, pd.Series({38: 1.0, 77: 1.0})) == 38  # measured lengths only


@pytest.mark.slow
def test_codec_benchmark_smoke(tmp_path, capsys):
    kodak = shared_path("data", "kodak")
    out_csv = tmp_path / "c.csv"
    argv = ["--kodak", str(kodak), "--images", "1", "--crop", "64x64", "--repeat", "1",
            "--widths", "32,192", "--device", "cpu", "--csv", str(out_csv)]  # fmt: skip
    assert codec.main(argv) == 0
    rows = read_rows(out_csv)
    assert [r["model"] for r in rows] == ["taco", "elic"]
    for r in rows:
        assert r["image"] == "kodim01.png" and (r["height"], r["width"]) == ("64", "64")
        assert all(float(r[k]) > 0 for k in ("encode_ms", "decode_ms", "g_a_ms", "bytes", "bpp"))
    assert "g_a only" in capsys.readouterr().out


def test_codec_benchmark_missing_images(tmp_path, capsys):
    assert codec.main(["--kodak", str(tmp_path), "--images", "1"]) == 2
    assert "no PNG images" in capsys.readouterr().err


def test_measure_primitives():
    import torch

    from taco_plus.bench import measure

    cpu = torch.device("cpu")
    peak = measure.peak_memory_mb(lambda: torch.ones(512, 1024) + torch.ones(512, 1024), cpu)
    assert 5.9 <= peak <= 7.0  # two inputs + the sum, 2 MiB each
    layer = torch.nn.Linear(64, 32, bias=False)
    assert measure.forward_gflops(layer, torch.randn(10, 64)) == pytest.approx(2 * 10 * 64 * 32 / 1e9)
    assert measure.time_ms(lambda: None, cpu) >= 0


def test_attention_benchmark_default_grids_have_long_clip_rows(tmp_path):
    """Long-CLIP's 248-token captions are a row of the default grids, in the same CSV columns."""
    out_csv = tmp_path / "a.csv"
    argv = ["--quick", "--variants", "full,linformer_text", "--sizes", "64x64", "--train-sizes", "64x64",
            "--repeat", "1", "--warmup", "0", "--dims", "32,64,64,4", "--device", "cpu", "--clock", "cpu",
            "--csv", str(out_csv), "--plot", str(tmp_path / "a.png")]  # fmt: skip
    assert attention.main(argv) == 0
    rows = read_rows(out_csv)
    assert list(rows[0]) == attention.COLUMNS and 248 in attention.TOKENS
    long = [r for r in rows if r["tokens"] == "248"]
    assert {(r["variant"], r["part"]) for r in long} == {(v, p) for v in ("full", "linformer_text")
                                                          for p in ("adapter", "encoder")}
    assert all(float(r["gflops"]) > 0 for r in long)


def test_attention_figure_one_colour_per_option_one_style_per_size(tmp_path, monkeypatch):
    """The paper's attention figure: colour = attention option, line style = image size, the legend
    outside the panels, the measuring conditions (device, threads) in the title."""
    import matplotlib.figure

    figures = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k)))
    rows = fake_rows() + [dict(r, width=768, height=512, fwd_ms=3 * r["fwd_ms"]) for r in fake_rows()]
    report.plot(rows, tmp_path / "attention.png", "device=cpu (x86_64, 1 threads), clock=cpu")
    (fig,) = figures
    assert "device=cpu (x86_64, 1 threads)" in fig._suptitle.get_text()
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1  # beside the data, not on it
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"full, 256×256", "linformer, 256×256", "full, 768×512", "linformer, 768×512"}
        for variant in ("full", "linformer"):
            assert lines[f"{variant}, 256×256"].get_color() == lines[f"{variant}, 768×512"].get_color()
        for size in ("256×256", "768×512"):
            assert lines[f"full, {size}"].get_linestyle() == lines[f"linformer, {size}"].get_linestyle()
        assert lines["full, 256×256"].get_color() != lines["linformer, 256×256"].get_color()
        assert lines["full, 256×256"].get_linestyle() != lines["full, 768×512"].get_linestyle()


def test_docs_measurements_are_the_recorded_csv(tmp_path):
    """docs/attention.md's measurement block is what the recorded CSV generates; a drifted row changes it."""
    root, csv = Path(__file__).resolve().parents[1], Path("experiments/results/bench/attention.csv")
    copy = tmp_path / "attention.md"
    copy.write_text((root / "docs/attention.md").read_text(encoding="utf-8"), encoding="utf-8")
    assert not report.update_doc(csv, copy, root), \
        f"docs/attention.md differs from {csv}: python -m taco_plus.results.attention_bench {csv} docs/attention.md"
    rows = pd.read_csv(root / csv)
    before = report.doc_tables(rows, "")
    rows.loc[0, "fwd_ms"] *= 2
    assert report.doc_tables(rows, "") != before
