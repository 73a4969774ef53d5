"""The paper's generator: every table and figure from the registered runs and a small results
registry, and a loud failure naming the file when a source is missing. (LaTeX itself is not needed.)"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taco_plus.experiments import __main__ as cli
from taco_plus.experiments.record import MissingResultError, record_run
from taco_plus.experiments.report import build_report
from tests.fixtures.registry.make_runs import make_sweep

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
EXPECTED = ("runs.tex", "results.tex", "rd_kodak.png", "rd_skimage_quickstart.png", "sensitivity.tex",
            "attention.tex", "attention.png", "macros.tex", "manifest.json")


@pytest.fixture(scope="module", autouse=True)
def runs_composed_once():
    """The registered runs are composed once for the module (composing 21 runs dominates a build):
    the second build of the determinism test renders the same runs again."""
    import taco_plus.experiments.report as report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "load_runs", functools.cache(report.load_runs))
        yield


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory) -> Path:
    """The fixture benchmark plus two recorded runs: the Kodak baseline and the quickstart."""
    tmp = tmp_path_factory.mktemp("report")
    root = tmp / "registry"
    (root / "bench").mkdir(parents=True)
    shutil.copy2(FIXTURES / "bench" / "attention.csv", root / "bench" / "attention.csv")
    record_run(make_sweep(tmp / "base", [0.0004, 0.0016, 0.004]), "taco_baseline", root)
    record_run(make_sweep(tmp / "quick", [0.0025, 0.0067], dataset="skimage_quickstart", psnr0=25.0), "quickstart", root)
    return root


@pytest.fixture(scope="module")
def generated(registry_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    (out / "stale.tex").write_text("old")
    written = build_report(registry_dir, out)
    assert sorted(p.name for p in written) == sorted(EXPECTED)
    return out


def test_report_writes_every_file_from_the_registries(generated):
    assert not (generated / "stale.tex").exists(), "earlier generated files are removed"
    for name in EXPECTED:
        if name.endswith(".png"):
            with Image.open(generated / name) as im:
                assert im.size[0] >= 800 and np.asarray(im.convert("L"), dtype=np.float32).std() > 10, name
    # (line-break hints after _ and / are not part of what the tables say)
    text = {name: (generated / name).read_text().replace(r"\allowbreak{}", "") for name in EXPECTED
            if name.endswith(".tex")}

    # Registered runs: derived from the experiment files; without results they say why, never a number.
    runs = text["runs.tex"]
    assert r"linformer & taco\_baseline & attention=linformer & 6 & not run: needs GPU training \\" in runs
    assert r"taco\_baseline & — & (anchor) & 6 & recorded (3 points) \\" in runs
    assert r"fix\_lpips\_range & taco\_baseline & loss.lpips.convention=correct & 6 &" in runs
    assert r"finetune\_official\_control & taco\_baseline & trainer.init\_from=" in runs
    results = text["results.tex"]
    assert r"\includegraphics[width=\linewidth]{generated/rd_kodak.png}" in results
    assert "lmbda\\_0.0016 & 0.5250 & 32.30" in results  # a recorded rate point (mean bpp / PSNR)
    assert "BD-rate against TACO (paper)" in results
    assert "Not recorded yet" in results and "weighting\\_tfidf" in results

    sens = text["sensitivity.tex"]
    assert "taco\\_baseline & lmbda\\_0.0004 & empty" in sens and "quickstart & lmbda\\_0.0025 & other" in sens
    assert "λ 0.0016 & empty & 0.2265" in sens
    assert "+0.0001" in sens  # 0.0241 - 0.0240 from the shipped reference curves
    assert "full fwd ms" in text["attention.tex"] and "crossover" in text["attention.tex"]
    assert "\\newcommand{\\NumRecorded}{2}" in text["macros.tex"]
    sources = json.loads((generated / "manifest.json").read_text())["sources"]
    assert any(s.endswith("bench/attention.csv") for s in sources)
    assert any(s.endswith("taco_baseline/points/lmbda_0.0016/per_image.csv") for s in sources)


def test_report_is_deterministic(registry_dir, generated, tmp_path):
    build_report(registry_dir, tmp_path)
    for path in sorted(generated.glob("*.tex")):
        assert path.read_text() == (tmp_path / path.name).read_text(), path.name


@pytest.mark.parametrize("missing, named", [
    ("bench/attention.csv", "python -m taco_plus.bench.attention --csv experiments/results/bench/attention.csv"),
    ("taco_baseline/points/lmbda_0.0016/per_image.csv", "taco_baseline/points/lmbda_0.0016/per_image.csv"),
    ("quickstart/results.json", "quickstart/results.json"),
])
def test_a_missing_source_fails_loudly_naming_the_file(registry_dir, tmp_path, missing, named):
    root = tmp_path / "registry"
    shutil.copytree(registry_dir, root)
    (root / missing).unlink()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept.tex").write_text("x")
    with pytest.raises(MissingResultError) as info:
        build_report(root, tmp_path / "out")
    assert missing in str(info.value) and named in str(info.value)
    assert (tmp_path / "out" / "kept.tex").is_file(), "nothing is touched before every source is there"
    assert cli.main(["--results", str(root), "report", "--out", str(tmp_path / "out")]) == 2
