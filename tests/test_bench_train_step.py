"""The training-step benchmark on CPU at toy sizes: real measurements in the table and the
CSVs (one row per variant x precision), the official defaults it composes (every attention
option and the baseline), the registry writer and its GPU-only guard."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pandas as pd
import pytest

from taco_plus.atomic import file_sha256
from taco_plus.bench import train_step
from taco_plus.schemas import CONFIG_DIR
from tests.conftest import shared_path

# The baseline and the most composite option (caption summary + pooled image side); the
# default list, every option, is tested below without building each one.
VARIANTS = [train_step.BASELINE, "linformer"]


@pytest.fixture(scope="module")
def coco_mini():
    return shared_path("data", "coco_mini")


@pytest.fixture(scope="module")
def bench(coco_mini, tmp_path_factory):
    """One run: tiny model and CLIP (debug=tiny: batch 2, 64x64 crops), 1 warm-up + 1 timed
    step per configuration, eager only, the loader with 0 workers, two variants."""
    csv = tmp_path_factory.mktemp("bench") / "train_step.csv"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = train_step.main(["--data", str(coco_mini), "--split", "train2017", "--compile", "none",
                                "--variants", ",".join(VARIANTS),
                                "--steps", "1", "--warmup", "1", "--workers", "0", "--load-batches", "2",
                                "--device", "cpu", "--csv", str(csv), "debug=tiny"])
    assert code == 0, out.getvalue()
    return pd.read_csv(csv), pd.read_csv(train_step.loader_csv_path(csv)), out.getvalue()


def test_one_real_measurement_per_variant_and_precision(bench):
    steps, loader, text = bench
    assert sorted(zip(steps["variant"], steps["precision"])) == sorted(
        (v, p) for v in VARIANTS for p in train_step.PRECISIONS)
    assert not steps["compile"].any()
    for column in ("steps_per_s", "step_ms", "first_step_s", "peak_mb", "images_per_s", "params_m"):
        assert all(math.isfinite(v) and v > 0 for v in steps[column]), column
    assert (steps["batch"] == 2).all() and (steps["crop"] == 64).all()
    assert steps["steps_per_s"].mul(steps["step_ms"]).sub(1000).abs().max() < 1  # same median
    assert (steps["images_per_s"] - 2 * steps["steps_per_s"]).abs().max() < 1e-3
    params = steps.groupby("variant")["params_m"].first()
    assert params[train_step.BASELINE] != params["linformer"]  # the baseline is another codec (ELIC)
    # The loader table is measured; min_workers says whether 0 workers keep up.
    assert loader["workers"].tolist() == [0] and math.isfinite(loader["images_per_s"][0]) and loader["images_per_s"][0] > 0
    keeps_up = steps["images_per_s"] <= loader["images_per_s"][0]
    assert (steps["min_workers"].fillna(-1) == keeps_up.map({True: 0, False: -1})).all()
    # The printed table carries the same rows, and the output says the weights are random.
    assert "RANDOM init" in text and "lpips pnet_rand=True" in text
    assert all(v in text for v in VARIANTS) and "min_workers" in text and "loading keeps up" in text


def test_defaults_are_the_official_step_with_random_weights(coco_mini):
    options = sorted(p.stem for p in (CONFIG_DIR / "attention").glob("*.yaml"))
    assert train_step.build_parser().parse_args([]).variants == [train_step.BASELINE, *options]
    assert len(options) >= 4
    cfg = train_step.compose_variant("linformer", coco_mini, "train2017")
    assert (cfg.model.N, cfg.model.M, cfg.data.batch_size, cfg.data.crop_size) == (192, 320, 8, 256)
    assert cfg.text_encoder.model_name == cfg.loss.joint.model_name == "ViT-B-32"
    assert cfg.text_encoder.pretrained is None and cfg.loss.joint.pretrained is None
    assert cfg.loss.lpips.pretrained is False and cfg.loss.k_p > 0 and cfg.loss.k_j > 0
    assert cfg.model.extractor_attention._target_.endswith("PooledLinformerCrossAttention")
    base = train_step.compose_variant(train_step.BASELINE, coco_mini, "train2017")
    assert base.loss.k_p == base.loss.k_j == 0
    with pytest.raises(ValueError, match="unknown variant"):
        train_step.compose_variant("nope", coco_mini, "train2017")
    with pytest.raises(FileNotFoundError, match="COCO-style folder"):
        train_step.compose_variant("full", coco_mini, "train2014")


def test_compile_selection():
    v, p = ["elic", "full"], ["fp32", "bf16"]
    assert train_step.parse_compile("none", v, p) == set()
    assert len(train_step.parse_compile("all", v, p)) == 4
    assert train_step.parse_compile("full:bf16,elic", v, p) == {("full", "bf16"), ("elic", "fp32"), ("elic", "bf16")}
    with pytest.raises(ValueError, match="linformer"):
        train_step.parse_compile("linformer", v, p)


def test_record_is_for_gpu_runs_only(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    assert train_step.main(["--device", "cpu", "--record", "--csv", str(csv)]) == 2
    assert "GPU measurements only" in capsys.readouterr().err and not csv.exists()


def test_record_writes_tables_and_provenance(bench, tmp_path):
    steps, loader, _ = bench
    path = train_step.record(steps, loader, tmp_path, ["# device: test"])
    provenance = json.loads(path.read_text())
    for name in ("train_step.csv", "train_step_loader.csv"):
        assert provenance["files"][name] == file_sha256(tmp_path / name)
    assert pd.read_csv(tmp_path / "train_step.csv").shape == steps.shape
    assert provenance["environment"]["device"] == "cpu" and provenance["notes"] == ["# device: test"]
