"""The quickstart's main job end to end, on toy sizes (tiny model, 2 photos, 2 steps)."""

from __future__ import annotations

import csv
import json

import pytest


@pytest.mark.slow
def test_demo_writes_a_complete_run_folder(tmp_path, capsys):
    from taco_plus.demo import run_demo

    out = run_demo(tmp_path / "run", ["debug=tiny", "data.limit=2", "data.batch_size=2"], steps=2)
    run = out["run_dir"]
    for name in ("checkpoints/final.pt", "train_log.csv", "results.json", "per_image.csv", "jpeg.json",
                 "rd_psnr.png", "summary.md", "config.yaml"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert results["results"]["bpp"][0] > 0 and results["meta"]["bpp_from"] == "file sizes"
    with (run / "per_image.csv").open() as f:
        assert [r["id"] for r in csv.DictReader(f)] == ["astronaut.png", "chelsea.png"]
    jpeg = json.loads((run / "jpeg.json").read_text())
    assert len(jpeg["results"]["bpp"]) == len(jpeg["meta"]["qualities"])
    summary = (run / "summary.md").read_text()
    assert "UNTRAINED" in summary and "RANDOM" in summary
    printed = capsys.readouterr().out
    assert "loss" in printed and "->" in printed and "UNTRAINED" in printed
