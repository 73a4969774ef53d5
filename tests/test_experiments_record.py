"""Recording finished evaluations into the results registry, and comparing recorded runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taco_plus.atomic import file_sha256
from taco_plus.experiments import __main__ as cli
from taco_plus.experiments.compare import compare, render, resolve
from taco_plus.experiments.record import MissingResultError, RecordError, load_recorded, record_run
from taco_plus.results.bdrate import bd_rate
from taco_plus.results.format import load_results
from taco_plus.results.plot import plot_rd
from tests.fixtures.registry.make_runs import FINGERPRINT, make_eval_point, make_sweep, make_train_run


@pytest.fixture
def results(tmp_path) -> Path:
    return tmp_path / "registry"


def test_record_a_sweep_copies_files_and_writes_provenance(tmp_path, results):
    sweep = make_sweep(tmp_path / "runs", [0.0004, 0.0016, 0.004])
    path = record_run(sweep, "linformer", results)
    provenance = json.loads((path / "provenance.json").read_text())
    assert provenance["dataset"] == "kodak" and provenance["git_commits"] == ["1234567890abcdef1234567890abcdef12345678"]
    assert provenance["caption_set_fingerprints"] == [FINGERPRINT]
    points = provenance["points"]
    assert [p["label"] for p in points] == ["lmbda_0.0004", "lmbda_0.0016", "lmbda_0.004"]
    assert [p["lambda"] for p in points] == [0.0004, 0.0016, 0.004]
    assert points[0]["checkpoint_sha256"] == "c" * 64 and points[0]["source"].endswith("runs/eval/0")
    for label in ("lmbda_0.0004", "lmbda_0.0016", "lmbda_0.004"):
        point = path / "points" / label
        for name in ("per_image.csv", "results.json", "eval_config.yaml", "train_config.yaml", "train_log.csv",
                     "sensitivity/sensitivity.csv", "sensitivity/empty/per_image.csv"):
            assert (point / name).is_file(), name
    # every recorded file is listed with its hash
    assert provenance["files"]["points/lmbda_0.0016/per_image.csv"] == file_sha256(
        path / "points" / "lmbda_0.0016" / "per_image.csv")
    curve = load_results(path / "results.json")
    assert curve["name"] == "linformer" and curve["results"]["bpp"] == sorted(curve["results"]["bpp"])
    assert len(curve["meta"]["points"]) == 3
    run = load_recorded("linformer", results)
    assert run.labels == [p["label"] for p in points] and len(run.files()) == len(provenance["files"])
    assert not list(results.glob(".linformer.*")), "no temporary folder left behind"


def test_record_refuses_overwrite_unknown_folders_and_bad_names(tmp_path, results):
    sweep = make_sweep(tmp_path / "runs", [0.0016, 0.004])
    record_run(sweep, "mine", results)
    with pytest.raises(RecordError, match="already recorded; pass --force"):
        record_run(sweep, "mine", results)
    record_run(sweep, "mine", results, force=True)
    with pytest.raises(RecordError, match="no results.json"):
        record_run(tmp_path, "other", results)
    for bad in ("Bad", "bench", "a-b"):
        with pytest.raises(RecordError, match="run name"):
            record_run(sweep, bad, results)


def test_record_needs_to_know_the_captions(tmp_path, results):
    train = make_train_run(tmp_path / "train", 0.0016)
    (train / "config.yaml").write_text("loss: {lmbda: 0.0016}\n")  # no captions node
    point = make_eval_point(tmp_path / "eval", train / "checkpoints" / "final.pt", 0.3, 31.0, with_fingerprint=False)
    with pytest.raises(RecordError, match="pass --caption-set FILE"):
        record_run(point, "x", results)
    assert not (results / "x").exists()
    caption_file = Path(__file__).parents[1] / "taco_plus" / "captions" / "skimage_quickstart.json"
    path = record_run(point, "x", results, caption_set=caption_file)
    entry = json.loads((path / "provenance.json").read_text())["points"][0]
    assert entry["caption_set"]["from"] == "--caption-set" and len(entry["caption_set"]["fingerprint"]) == 64


def test_record_takes_the_fingerprint_from_the_training_config(tmp_path, results):
    """The quickstart demo's results name no caption set; its config.yaml does."""
    from taco_plus.captions.sources import CaptionSetSource

    train = make_train_run(tmp_path / "demo", 0.0067)
    make_eval_point(train, train / "checkpoints" / "final.pt", 0.5, 28.0, with_fingerprint=False, sensitivity=False)
    shutil.rmtree(train / ".hydra")  # not a Hydra run: no eval config, no dataset choice
    with pytest.raises(RecordError, match="--dataset"):
        record_run(train, "demo", results)
    path = record_run(train, "demo", results, dataset="skimage_quickstart")
    entry = json.loads((path / "provenance.json").read_text())["points"][0]
    expected = CaptionSetSource(Path(__file__).parents[1] / "taco_plus" / "captions" / "skimage_quickstart.json").fingerprint
    assert entry["caption_set"] == {"source": entry["caption_set"]["source"], "fingerprint": expected,
                                    "from": "training config"}
    assert entry["label"] == "demo" and (path / "points" / "demo" / "train_config.yaml").is_file()


def test_compare_tables_and_bd_rate(tmp_path, results):
    make_sweep(tmp_path / "a", [0.0004, 0.0016, 0.004])
    make_sweep(tmp_path / "b", [0.0004, 0.0016, 0.004], rate_scale=0.9)
    record_run(tmp_path / "a" / "eval", "taco_baseline", results)
    record_run(tmp_path / "b" / "eval", "linformer", results)
    curves, summary, notes, points = compare(["taco_baseline", "linformer", "elic_paper"], results)
    assert list(summary["against"]) == ["—", "taco_baseline", "taco_baseline"]  # curve names: the records' titles
    # the fixture's MS-SSIM and CLIP scores are the same at every rate: no BD-rate, and the note says why
    assert notes == ["[1] anchor: repeated metric values; the curve is not monotonic"]
    assert list(summary["BD-rate MS-SSIM"]) == ["anchor", "— [1]", "—"]
    # Same quality at 0.9x the rate: BD-rate -10 % in every metric.
    a, b = (load_results(results / n / "results.json") for n in ("taco_baseline", "linformer"))
    expected = bd_rate(a["results"]["bpp"], a["results"]["psnr-rgb"], b["results"]["bpp"], b["results"]["psnr-rgb"])
    assert expected == pytest.approx(-10.0, abs=1e-6)
    psnr = list(summary["BD-rate PSNR"])
    assert psnr[:2] == ["anchor", "-10.00%"] and psnr[2].endswith("%")  # ELIC's published PSNR curve overlaps
    text = render(summary, "text", notes)
    assert "-10.00%" in text and "anchor" in text
    assert len(points) == 3 + 3 + 6 and list(points["point"])[:3] == ["lmbda_0.0004", "lmbda_0.0016", "lmbda_0.004"]
    latex = render(summary, "latex", caption="BD & more", label="tab:x")
    assert r"-10.00\%" in latex and r"BD \& more" in latex and r"\label{tab:x}" in latex and r"\resizebox" in latex
    assert render(points, "csv").splitlines()[0].startswith("run,point,seeds,bpp,PSNR")
    png = plot_rd([dict(c.results, name=c.label) for c in curves], tmp_path / "rd.png", references=["lic_tcm_large"])
    with Image.open(png) as im:
        assert im.size[0] > 1000 and np.asarray(im.convert("L")).std() > 10


def test_bd_rate_cells_say_why_they_are_missing(tmp_path, results):
    make_sweep(tmp_path / "a", [0.0004, 0.0016], dataset="kodak")
    make_sweep(tmp_path / "q", [0.0025, 0.0067], dataset="skimage_quickstart")
    make_sweep(tmp_path / "r", [0.0004, 0.0016], lpips_convention="reference")
    for name in ("a", "q", "r"):
        record_run(tmp_path / name / "eval", name, results)
    _, summary, notes, _ = compare(["a", "q", "r", "elic_paper"], results)
    assert notes[0] == "[1] different datasets (kodak vs skimage_quickstart)"
    assert summary.loc[1, "BD-rate PSNR"] == "not comparable [1]"
    # LPIPS: one column per convention; r's reference-convention values are not compared with a's corrected ones
    assert summary.loc[2, "BD-rate LPIPS (correct)"] == "—" and summary.loc[0, "BD-rate LPIPS (reference)"] == "—"
    assert summary.loc[2, "BD-rate LPIPS (reference)"].startswith("not comparable [")
    assert "different LPIPS conventions (correct vs reference)" in " ".join(notes)
    assert summary.loc[2, "BD-rate PSNR"].endswith("%")  # PSNR is comparable
    assert summary.loc[3, "BD-rate LPIPS (correct)"] == "—"  # elic_paper has no LPIPS: nothing to explain
    assert resolve("elic_paper", results).dataset == "kodak"


def test_compare_anchors_each_run_on_its_declared_base(tmp_path, results):
    """Not on the first name: linformer_tfidf_ner against linformer, linformer against taco_baseline."""
    for name, scale in (("linformer_tfidf_ner", 0.8), ("linformer", 0.9), ("taco_baseline", 1.0)):
        record_run(make_sweep(tmp_path / name, [0.0004, 0.0016, 0.004], rate_scale=scale), name, results)
    _, summary, notes, _ = compare(["linformer_tfidf_ner", "linformer", "taco_baseline"], results)
    assert list(summary["against"]) == ["linformer", "taco_baseline", "—"]
    assert list(summary["BD-rate PSNR"]) == ["-11.11%", "-10.00%", "anchor"]  # 0.8 / 0.9 - 1, 0.9 - 1
    assert list(compare(["linformer_tfidf_ner", "linformer"], results, anchor="linformer")[1]["against"]) == \
        ["linformer", "—"]  # an explicit anchor for every row
    # a declared base that is not recorded is named, never replaced by another curve
    shutil.rmtree(results / "linformer")
    _, summary, notes, _ = compare(["linformer_tfidf_ner", "taco_baseline"], results)
    assert summary.loc[0, "against"] == "linformer" and summary.loc[0, "BD-rate PSNR"] == "— [1]"
    assert notes == ["[1] linformer is not recorded"]


def test_runs_are_comparable_only_on_the_same_images_and_captions(tmp_path, results):
    record_run(make_sweep(tmp_path / "b", [0.0004, 0.0016]), "taco_baseline", results)
    record_run(make_sweep(tmp_path / "l", [0.0004, 0.0016], fingerprint="e" * 64), "linformer", results)
    record_run(make_sweep(tmp_path / "c", [0.0004, 0.0016], fingerprint="e" * 64), "captions_regenerated", results)
    record_run(make_sweep(tmp_path / "w", [0.0004, 0.0016], ids=("a.png", "b.png")), "weighting_ner", results)
    _, summary, notes, _ = compare(["taco_baseline", "linformer", "captions_regenerated", "weighting_ner"], results)
    psnr = list(summary["BD-rate PSNR"])
    assert psnr[1] == "not comparable [1]" and notes[0] == "[1] different caption sets (ffffffff vs eeeeeeee)"
    assert psnr[2].endswith("%"), "captions are what captions_regenerated changes: compared"
    assert psnr[3] == "not comparable [3]" and notes[2] == "[3] different image lists (3 vs 2 images, e.g. c.png)"


def test_seeds_are_kept_averaged_and_their_spread_judges_each_difference(tmp_path, results):
    """Two seeds per run: the registry keeps each seed's points, the curve is their mean, the tables
    give mean ± spread (n stated) and say whether a BD-rate exceeds the seed spread."""
    for seed, suffix, jitter in ((100, "", 1.0), (101, "_seed101", 1.01)):
        record_run(make_sweep(tmp_path / "b", [0.0004, 0.0016, 0.004], seed=seed, suffix=suffix, rate_scale=jitter),
                   "taco_baseline", results)
        for name, scale in (("linformer", 0.9), ("linformer_text", 0.995)):
            record_run(make_sweep(tmp_path / name, [0.0004, 0.0016, 0.004], seed=seed, suffix=suffix,
                                  rate_scale=scale * jitter), name, results)
    run = load_recorded("taco_baseline", results)
    assert sorted((p["label"], p["seed"]) for p in run.provenance["points"])[:2] == [
        ("lmbda_0.0004", 100), ("lmbda_0.0004_seed101", 101)]
    assert run.results["meta"]["seeds"] == [2, 2, 2] and len(run.results["results"]["bpp"]) == 3
    assert run.results["results"]["bpp"][0] == pytest.approx(0.21 * 1.005)  # the fixture's images: 1.05 x 0.2
    assert set(run.seed_curves()) == {100, 101}
    _, summary, notes, points = compare(["taco_baseline", "linformer", "linformer_text"], results)
    assert list(summary["seeds"]) == [2, 2, 2]
    big, small = summary.loc[1, "BD-rate PSNR"], summary.loc[2, "BD-rate PSNR"]
    assert big.startswith("-10.00 ± ") and big.endswith("% *"), big  # 10 % against a 1 % seed spread
    assert small.startswith("-0.50 ± ") and not small.endswith("*"), small  # 0.5 %: within the spread
    assert any("exceeds the seed spread" in n for n in notes)
    assert points.loc[0, "seeds"] == 2 and points.loc[0, "bpp"] == "0.2111 ± 0.0015"  # 0.21105, 0.0021 / √2
    assert list(points.loc[:2, "point"]) == ["lmbda_0.0004", "lmbda_0.0016", "lmbda_0.004"]


def test_compare_cli_and_unknown_names(tmp_path, results, capsys):
    record_run(make_sweep(tmp_path / "a", [0.0004, 0.0016]), "a", results)
    code = cli.main(["--results", str(results), "compare", "a", "--format", "markdown",
                     "--plot", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert code == 0 and "| a " in out and (tmp_path / "p.png").is_file()
    assert cli.main(["--results", str(results), "compare", "nothing_like_it"]) == 2
    assert "neither a recorded run" in capsys.readouterr().err
    # a recorded run whose files went missing fails naming the file
    (results / "a" / "points" / "lmbda_0.0016" / "per_image.csv").unlink()
    with pytest.raises(MissingResultError, match="lmbda_0.0016/per_image.csv"):
        load_recorded("a", results)


def test_real_evaluation_folder_records(tmp_path, results):
    """A folder written by the real evaluator (tiny random-init model) records as it is."""
    import taco_plus.evaluate as evaluate
    from taco_plus.schemas import compose

    torch.manual_seed(0)
    (tmp_path / "images").mkdir()
    captions = {}
    for i in range(2):
        array = (np.random.default_rng(i).random((64, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(tmp_path / "images" / f"im{i}.png")
        captions[f"im{i}.png"] = f"a test image number {i}"
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        evaluate.run(compose([
            "data=folder", f"data.image_dir={tmp_path / 'images'}", "captions=file",
            f"captions.path={tmp_path / 'captions.json'}", "device=cpu", "model=tiny", "text_encoder=tiny",
            f"out_dir={tmp_path / 'eval'}", "metrics.lpips=null", "metrics.clip_score=null",
            "metrics.fid.enabled=false", "save_bitstreams=false", "name=tiny",
        ], config_name="eval"))
    finally:
        torch.set_num_threads(threads)
    path = record_run(tmp_path / "eval", "tiny_smoke", results, dataset="folder")
    provenance = json.loads((path / "provenance.json").read_text())
    entry = provenance["points"][0]
    assert entry["random_init"] is True and entry["caption_set"]["from"] == "results meta"
    assert (path / "points" / "eval" / "eval_config.yaml").is_file()
    assert load_recorded("tiny_smoke", results).results["results"]["bpp"] == entry["bpp"]
