"""The paper's generator: every table and figure from a small fixture registry, and a loud
failure naming the file when a source is missing. (LaTeX itself is not needed here.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taco_plus.experiments.caption_stats import compute as compute_caption_stats
from taco_plus.experiments.record import record_run
from taco_plus.experiments.registry import load_registry
from taco_plus.experiments.report import build_report
from taco_plus.experiments.report.__main__ import main as report_main
from taco_plus.experiments.store import MissingResultError, ResultsRegistry
from tests.fixtures.registry.make_runs import make_sweep
from tests.registry_data import write_source_data

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
MEASUREMENTS = ("cost/step_time.json", "bench/attention.csv", "bench/attention.provenance.json",
                "captions/caption_stats.json", "weighting/token_weights.json")
EXPECTED = ("ablations.tex", "cost_profiles.tex", "cost_runs.tex", "attention.tex", "attention.png",
            "caption_stats.tex", "token_weights.tex", "results.tex", "rd_kodak.png", "rd_skimage_quickstart.png",
            "sensitivity.tex", "macros.tex", "manifest.json")


@pytest.fixture
def registry_dir(tmp_path) -> Path:
    """The fixture measurements plus two recorded runs: the Kodak baseline and the quickstart."""
    root = tmp_path / "registry"
    for rel in MEASUREMENTS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(FIXTURES / rel, root / rel)
    results = ResultsRegistry(root)
    record_run(make_sweep(tmp_path / "base", [0.0004, 0.0016, 0.004]), "taco_baseline", results)
    record_run(make_sweep(tmp_path / "quick", [0.0025, 0.0067], dataset="skimage_quickstart", psnr0=25.0),
               "quickstart", results)
    return root


@pytest.fixture(scope="module")
def ablations():
    return load_registry(FIXTURES / "ablations.yaml")


def _image_ok(path: Path) -> None:
    with Image.open(path) as im:
        gray = np.asarray(im.convert("L"), dtype=np.float32)
    assert im.size[0] >= 800 and gray.std() > 10, f"{path} looks empty"


def test_report_writes_every_file_from_the_registry(registry_dir, ablations, tmp_path):
    out = tmp_path / "generated"
    (out).mkdir()
    (out / "stale.tex").write_text("old")
    written = build_report(ablations, ResultsRegistry(registry_dir), out)
    assert sorted(p.name for p in written) == sorted(EXPECTED)
    assert not (out / "stale.tex").exists(), "earlier generated files are removed"
    for name in EXPECTED:
        if name.endswith(".png"):
            _image_ok(out / name)
    # (line-break hints after / and # are not part of what the tables say)
    text = {name: (out / name).read_text().replace(r"\allowbreak{}", "") for name in EXPECTED if name.endswith(".tex")}

    # Runs without results say so, with the reason and the README anchor; never a number.
    assert r"linformer & attention & attention=linformer. & 3 & not run: needs GPU training, see " \
           r"experiments/README.md\#linformer \\" in text["ablations.tex"]
    assert r"taco\_baseline & baseline & Nothing. & 3 & recorded (3 points) \\" in text["ablations.tex"]
    results_tex = text["results.tex"]
    assert r"\emph{Linformer adapter attention: not run: needs GPU training" in results_tex
    assert r"\includegraphics[width=\linewidth]{generated/rd_kodak.png}" in results_tex
    assert "lmbda\\_0.0016 & 0.5250 & 32.30" in results_tex  # a recorded rate point (mean bpp / PSNR)
    assert "BD-rate against TACO (baseline)" in results_tex

    # Cost: measured FLOPs, the assumption stated, the quickstart's CPU minutes from its logs.
    assert "ASSUMED sustained 20 TFLOP/s" in text["cost_runs.tex"]
    assert "quickstart & 2 & 300 & --- & --- & 4 CPU min (measured)" in text["cost_runs.tex"]
    assert "linformer\\_38 & Linformer adapter attention & 38 & 1.900 & 0.950 & 18.0 & 10.0" in text["cost_profiles.tex"]

    # Benchmark, captions, token weights and sensitivity come from their registry files.
    assert "full ms" in text["attention.tex"] and "crossover" in text["attention.tex"]
    assert "not run: needs the OpenAI API (caption regeneration)" in text["caption_stats.tex"]
    assert "Kodak, OFA (TACO) & 3 &" in text["caption_stats.tex"]
    assert "two 1.50" in text["token_weights.tex"] and "american 1.50" in text["token_weights.tex"]
    sens = text["sensitivity.tex"]
    assert "taco\\_baseline & lmbda\\_0.0004 & empty" in sens and "quickstart & lmbda\\_0.0025 & other" in sens
    assert "TACO released (Kodak, third party) & $\\lambda$ 0.0016 & empty & 0.2265" in sens
    assert "+0.0001 (ref. conv.)" in sens  # 0.0241 - 0.0240 from the shipped reference curves
    assert "Not run yet (why: the table of runs, experiments/README.md): linformer, finetune\\_official\\_control" in sens
    assert "\\newcommand{\\NumRecorded}{2}" in text["macros.tex"]

    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert any("bench/attention.csv sha256:" in s for s in manifest["attention.tex"])
    assert any("taco_baseline/results.json" in s for s in manifest["results.tex"])
    assert text["attention.tex"].startswith("% Generated by `python -m taco_plus.experiments.report`")


def test_report_is_deterministic(registry_dir, ablations, tmp_path):
    build_report(ablations, ResultsRegistry(registry_dir), tmp_path / "one")
    build_report(ablations, ResultsRegistry(registry_dir), tmp_path / "two")
    for path in sorted((tmp_path / "one").glob("*.tex")):
        assert path.read_text() == (tmp_path / "two" / path.name).read_text(), path.name


@pytest.mark.parametrize("missing, named", [
    ("cost/step_time.json", "python -m taco_plus.experiments.step_time"),
    ("bench/attention.csv", "python -m taco_plus.experiments bench-attention"),
    ("bench/attention.provenance.json", "bench/attention.provenance.json"),
    ("captions/caption_stats.json", "python -m taco_plus.experiments caption-stats"),
    ("weighting/token_weights.json", "python -m taco_plus.experiments token-weights"),
    ("taco_baseline/points/lmbda_0.0016/per_image.csv", "taco_baseline/points/lmbda_0.0016/per_image.csv"),
    ("quickstart/results.json", "quickstart/results.json"),
])
def test_a_missing_source_fails_loudly_naming_the_file(registry_dir, ablations, tmp_path, missing, named):
    (registry_dir / missing).unlink()
    with pytest.raises(MissingResultError) as info:
        build_report(ablations, ResultsRegistry(registry_dir), tmp_path / "out")
    assert missing in str(info.value) and named in str(info.value)


def test_report_cli_reports_the_missing_file(registry_dir, tmp_path, capsys):
    (registry_dir / "bench" / "attention.csv").unlink()
    code = report_main(["--registry", str(registry_dir), "--ablations", str(FIXTURES / "ablations.yaml"),
                        "--out", str(tmp_path / "out")])
    assert code == 2 and "bench/attention.csv" in capsys.readouterr().err


def test_caption_stats_use_a_regenerated_set_when_it_exists(tmp_path):
    data = write_source_data(tmp_path / "source_data")
    record = compute_caption_stats(data, repo_root=tmp_path)
    assert record["sets"]["kodak_ofa"]["stats"]["num_captions"] == 3
    assert record["sets"]["kodak_detailed_v1"]["status"] == "not_run"
    regenerated = tmp_path / "captions" / "regenerated" / "kodak_detailed_v1.json"
    regenerated.parent.mkdir(parents=True)
    long = " ".join(["a detailed description of a red brick house with white windows and a garden"] * 8)
    regenerated.write_text(json.dumps({"kodim01.png": long, "kodim23.png": long + " and two parrots"}))
    entry = compute_caption_stats(data, repo_root=tmp_path)["sets"]["kodak_detailed_v1"]
    assert entry["status"] == "ok" and entry["stats"]["share_over_77_tokens"] == 1.0
    with pytest.raises(FileNotFoundError, match="original caption file not found"):
        compute_caption_stats(tmp_path / "nowhere")
