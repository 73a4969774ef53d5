"""Evaluation at scale: entropy coding in worker processes (bit-identical to inline coding), sharded
evaluation under torchrun (identical to one process), caption sensitivity without a redundant pass."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from taco_plus.evaluate import evaluate_dataset
from taco_plus.evaluate.workers import code_job, coding_pool, decode_network, encode_network
from taco_plus.results.format import load_results
from taco_plus.results.per_image import read_per_image_csv
from tests.conftest import REPO_ROOT
from tests.test_evaluate import codec, dataset, lpips, one_thread, small_fid  # noqa: F401  (fixtures)

TIMING = ("enc_ms", "dec_ms")


def _rows(folder):
    return repr([{k: v for k, v in r.items() if k not in TIMING} for r in read_per_image_csv(folder / "per_image.csv")])


def test_coding_workers_give_bit_identical_results(tmp_path, codec, dataset, lpips):  # noqa: F811
    serial = evaluate_dataset(codec, dataset, tmp_path / "serial", name="w", lpips=lpips, fid=small_fid())
    pool = coding_pool(codec, 2)
    try:
        pooled = evaluate_dataset(codec, dataset, tmp_path / "pool", name="w", lpips=lpips, fid=small_fid(),
                                  coding_workers=pool)
        assert pooled["meta"]["time_split"]["coding_workers"] == 2
    finally:
        pool.shutdown()
    assert _rows(tmp_path / "pool") == _rows(tmp_path / "serial")  # bpp, PSNR, LPIPS... exactly
    for item in dataset:  # the files are the codec's own, byte for byte
        name = f"{item['id']}.tacoz"
        expected = codec.encode(item["image"], item["caption"]).data
        assert (tmp_path / "pool" / "bitstreams" / name).read_bytes() == expected
        assert (tmp_path / "serial" / "bitstreams" / name).read_bytes() == expected
    for key in ("bpp", "psnr-rgb", "lpips", "fid"):
        assert pooled["results"][key] == serial["results"][key], key
    assert serial["meta"]["decode_vs_encoder_max_abs_diff"] == 0.0
    assert set(serial["meta"]["time_split"]) >= {"network_s", "coding_s", "metrics_s", "wall_s"}


def test_decoding_from_the_worker_equals_the_codec_and_falls_back_when_tables_differ(codec, dataset):  # noqa: F811
    x, caption = dataset[1]["image"], dataset[1]["caption"]
    tables = codec.model.gaussian_conditional.tables()
    job, y_hat, _ = encode_network(codec, x, caption)
    coded = code_job(job, tables)
    assert coded.data == codec.encode(x, caption).data
    x_hat, diff, _ = decode_network(codec, job, coded, y_hat)
    assert torch.equal(x_hat, codec.decode(coded.data)) and diff == 0.0
    # Had the decoder's network chosen other tables than the encoder's (another device, another
    # build), the worker's symbols would be wrong for it: the file is then decoded as a user would.
    other = job._replace(indexes=job.indexes.copy())
    other.indexes[-1] = (other.indexes[-1] + 1) % len(tables.lengths)
    x_hat, diff, _ = decode_network(codec, other, coded, y_hat)
    assert torch.equal(x_hat, codec.decode(coded.data)) and math.isinf(diff)


def test_caption_sensitivity_reuses_the_real_run(tmp_path, dataset, monkeypatch):  # noqa: F811
    # Today's evaluation with caption_sensitivity=true codes each image three times (real, empty,
    # other), not four: the sensitivity table takes the real rows from the run itself.
    from taco_plus.schemas import compose
    from taco_plus.evaluate import run
    from taco_plus.models import TACO
    from tests.test_evaluate import _folder

    coded = []  # the encoder's analysis transform: one call per coding
    analysis = TACO.analysis
    monkeypatch.setattr(TACO, "analysis", lambda self, x, *args: coded.append(x.shape) or analysis(self, x, *args))
    overrides = _folder(tmp_path, dataset) + [
        "model=tiny", "text_encoder=tiny", f"out_dir={tmp_path / 'out'}", "metrics.lpips=null",
        "metrics.clip_score=null", "metrics.fid.enabled=false", "caption_sensitivity=true"]
    run(compose(overrides, config_name="eval"))
    assert len(coded) == 3 * 2  # 2 images: real, empty, other
    table = (tmp_path / "out" / "sensitivity" / "sensitivity.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table[1:]] == ["real", "empty", "other"]
    assert not (tmp_path / "out" / "sensitivity" / "real").exists()


def _cli(tmp_path, dataset, out, extra=()):  # noqa: F811
    """Overrides of a tiny-checkpoint evaluation of three Kodak crops, FID on a random-init Inception file."""
    from taco_plus.checkpoint import save_codec
    from tests.test_evaluate import TINY_TEXT, _folder, tiny_model

    ckpt = tmp_path / "tiny.pt"
    if not ckpt.exists():
        config = {"_target_": "taco_plus.models.TACO", "N": 32, "M": 64, "slice_ch": [4, 4, 8, 16, 32], "text_dim": 64,
                  "num_heads": 4}
        save_codec(ckpt, tiny_model(), config, TINY_TEXT, None)
    inception = tmp_path / "inception.pth"
    if not inception.exists():  # the FID Inception's architecture, random weights: the real loading path
        from torchvision.models import inception_v3

        torch.manual_seed(0)  # He-scaled so that features stay O(1) through ~90 convolutions
        state = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False).state_dict()
        torch.save({k: v * 6**0.5 if k.endswith("conv.weight") else v for k, v in state.items()}, inception)
    return [*_folder(tmp_path, dataset, n=3), f"checkpoint={ckpt}", f"out_dir={out}", "name=tiny", "coding_workers=0",
            "metrics.lpips=null", "metrics.clip_score=null", f"metrics.fid.weights={inception}", "metrics.fid.patch_size=32", *extra]


@pytest.mark.slow
def test_two_gloo_processes_write_what_one_process_writes(tmp_path, dataset):  # noqa: F811
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    from taco_plus.schemas import compose
    from taco_plus.evaluate import run

    one, two = tmp_path / "one", tmp_path / "two"
    run(compose(_cli(tmp_path, dataset, one), config_name="eval"))  # one process, one thread
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "taco_plus.evaluate"]
    done = subprocess.run([*torchrun, *_cli(tmp_path, dataset, two)], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _rows(two) == _rows(one)  # per-image rows in dataset order, bpp exactly
    a, b = load_results(one / "results.json"), load_results(two / "results.json")
    fid_one, fid_two = a["results"].pop("fid")[0], b["results"].pop("fid")[0]
    assert fid_two == pytest.approx(fid_one, rel=1e-6) and fid_one > 0  # the ranks' FID sums reduced (torchmetrics)
    assert {k: v for k, v in a["results"].items() if "time" not in k} == \
        {k: v for k, v in b["results"].items() if "time" not in k}
    assert b["meta"]["time_split"]["processes"] == 2 and b["meta"]["images"] == 3
    # Each rank journalled its own images (every other one), and a rerun resumes per rank.
    shards = sorted((two / "shards").iterdir())
    assert [p.name for p in shards] == ["0-of-2", "1-of-2"]
    assert [len(read_per_image_csv(s / "per_image.csv")) for s in shards] == [2, 1]
    again = subprocess.run([*torchrun, *_cli(tmp_path, dataset, two)], env=env, capture_output=True, text=True,
                           timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert load_results(two / "results.json")["meta"]["resumed_images"] == 3 and _rows(two) == _rows(one)
    assert json.loads((shards[1] / "eval_state.json").read_text())["settings"]["shard"] == "1 of 2"


def test_evaluation_benchmark_prints_its_tables(capsys):
    from taco_plus.bench.evaluate import main
    from tests.conftest import shared_path

    assert main(["--images", "2", "--model", "tiny", "--workers", "0", "--folder", str(shared_path("data", "coco_mini",
                                                                                                     "val2017"))]) == 0
    out = capsys.readouterr().out
    [row] = [line.split() for line in out.splitlines() if line.strip().startswith("0 ")]
    assert len(row) == 7 and float(row[1]) > 0 and "DIFFER" not in out
    assert "taco_plus RansStream" in out and "compressai RansDecoder" in out and "ns/symbol" in out
