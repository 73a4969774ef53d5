"""Training on a tiny config: exact resume, atomic checkpoints, NaN stop, adapter-only fine-tuning,
official initialisation, logs, DDP and sweeps (every registered run: test_experiments_registry; bad input:
test_train_entry; signals, full disks and a torchrun job: test_train_signals)."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taco_plus.checkpoint import load_codec, read_checkpoint
from taco_plus.schemas import compose
from taco_plus.losses import TacoLoss
from taco_plus.train import NonFiniteLossError, train
from tests.conftest import shared_path

CAPTIONS = {
    "a.png": "a red bus parked on a street in Paris",
    "b.png": ["two cats asleep on a blue sofa", "a pair of sleeping cats"],
    "c.png": "a lighthouse on a rocky island near the sea",
    "d.png": "a bowl of green apples on a wooden table",
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Four smooth 72x80 photos-like images and their captions."""
    root = tmp_path_factory.mktemp("tiny_data")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:80] / 80.0
    for i, name in enumerate(CAPTIONS):
        phase = rng.uniform(0, 6, 3)
        img = 0.5 + 0.4 * np.sin(np.stack([xx * (3 + i), yy * (2 + i), (xx + yy) * 4], -1) + phase)
        Image.fromarray((img * 255).astype(np.uint8)).save(root / name)
    (root / "captions.json").write_text(json.dumps(CAPTIONS))
    return root


def tiny_overrides(data: Path, *extra: str) -> list[str]:
    return ["debug=tiny", "data=folder", f"data.image_dir={data}", "captions=file",
            f"captions.path={data / 'captions.json'}", *extra]


def run_tiny(data: Path, run_dir: Path, *extra: str):
    return train(compose(tiny_overrides(data, *extra)), run_dir)


def run_tiny_rd(data: Path, run_dir: Path, *extra: str):
    """A tiny run with the plain rate-distortion loss (no LPIPS/CLIP): loop mechanics only."""
    return run_tiny(data, run_dir, "loss=rd", *extra)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = run_tiny(tiny_data, run_dir, "trainer.max_steps=4", "trainer.log_every=2",
                      "trainer.checkpoint_every=2", "trainer.tensorboard=true")
    return result


def test_logs_and_checkpoints(trained):
    with (trained.run_dir / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "epoch", "loss", "bpp", "mse", "lpips", "joint", "aux", "lr", "time"]
    assert [r["step"] for r in rows] == ["2", "4"] and [r["epoch"] for r in rows] == ["0", "1"]
    assert all(float(r["loss"]) > 0 for r in rows)
    assert list((trained.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (trained.run_dir / "config.yaml").is_file()
    ckpt = read_checkpoint(trained.final_checkpoint)  # weights_only=True
    assert ckpt["step"] == 4 and ckpt["epoch"] == 1 and ckpt["final"] is True
    assert ckpt["model_config"]["N"] == 32 and ckpt["text_encoder_config"]["model_name"] == "taco-tiny-clip"
    rng = ckpt["rng"][0]
    assert rng["torch"].dtype == torch.uint8 and rng["numpy"]["keys"].shape == (624,)
    assert isinstance(ckpt["scheduler"]["milestones"], dict)


def test_final_checkpoint_codes_real_bitstreams(trained, tiny_data):
    from taco_plus.codec import TacoCodec
    from taco_plus.images import load_image

    codec = TacoCodec(load_codec(trained.final_checkpoint))
    x = load_image(tiny_data / "a.png")
    encoded = codec.encode(x, CAPTIONS["a.png"])
    assert len(encoded.data) > 0
    assert torch.equal(codec.decode(encoded.data), encoded.x_hat)


def _final_state(run_dir: Path) -> dict:
    return read_checkpoint(run_dir / "checkpoints" / "final.pt")


def test_resume_is_exact(tiny_data, tmp_path):
    common = ["trainer.checkpoint_every=1", "trainer.seed=5", "optim.scheduler_unit=step",
              "optim.scheduler.milestones=[2,3]", "optim.scheduler.gamma=0.5"]
    # 4 images, batch 2: epoch 0 = steps 1-2, epoch 1 = steps 3-4.
    run_tiny(tiny_data, tmp_path / "a", *common, "trainer.max_steps=4")
    run_tiny(tiny_data, tmp_path / "b", *common, "trainer.max_steps=3")  # stops mid-epoch 1
    interrupted = read_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert (interrupted["step"], interrupted["epoch"], interrupted["batch_in_epoch"]) == (3, 1, 1)
    run_tiny(tiny_data, tmp_path / "c", *common, "trainer.max_steps=4",
             f"trainer.resume={tmp_path / 'b' / 'checkpoints' / 'last.pt'}")
    a, c = _final_state(tmp_path / "a"), _final_state(tmp_path / "c")
    assert a["state_dict"].keys() == c["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, c["state_dict"][key]), key
    for name in ("optimizer", "aux_optimizer"):
        for pid, state in a[name]["state"].items():
            assert all(torch.equal(state[k], c[name]["state"][pid][k]) for k in state)
    assert a["scheduler"] == c["scheduler"]
    assert torch.equal(a["rng"][0]["torch"], c["rng"][0]["torch"])
    # Sanity: the interrupted run really is behind (a no-op resume would pass the above too).
    b = _final_state(tmp_path / "b")
    assert not all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())


def test_resume_auto_and_wrong_model(tiny_data, tmp_path):
    run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=2")
    again = run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=3", "trainer.resume=auto")
    assert again.steps == 3 and [r["step"] for r in again.history] == [3]  # steps 1-2 not redone
    with pytest.raises(ValueError, match="model config"):
        run_tiny_rd(tiny_data, tmp_path / "other", "trainer.max_steps=3", "model.num_heads=2",
                 f"trainer.resume={tmp_path / 'checkpoints' / 'last.pt'}")


def test_crash_during_checkpoint_keeps_the_old_one(tiny_data, tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the step-2 checkpoint
            real_save({"partial": torch.zeros(3)}, f)  # bytes reach the temp file, then:
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(OSError, match="simulated"):
        run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=3", "trainer.checkpoint_every=1")
    ckpt_dir = tmp_path / "checkpoints"
    assert read_checkpoint(ckpt_dir / "last.pt")["step"] == 1
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last.pt"]  # no temp file left


def test_non_finite_loss_stops_with_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    real_forward = TacoLoss.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        terms = real_forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(TacoLoss, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="step 3") as err:
        run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=4", "trainer.checkpoint_every=1")
    assert "last.pt" in str(err.value)
    last = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["step"] == 2 and all(torch.isfinite(v).all() for v in last["state_dict"].values()
                                     if v.is_floating_point())
    assert not (tmp_path / "checkpoints" / "final.pt").exists()


def test_adapter_only_fine_tuning_from_a_checkpoint(trained, tiny_data, tmp_path):
    from taco_plus.checkpoint import build_model

    start = read_checkpoint(trained.final_checkpoint)["state_dict"]
    run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=1", "trainer.trainable=adapter",
             f"trainer.init_from={trained.final_checkpoint}")
    end = _final_state(tmp_path)["state_dict"]
    built = build_model(read_checkpoint(trained.final_checkpoint)["model_config"])
    params = {n for n, _ in built.named_parameters()}
    changed = {k for k in params if not torch.equal(start[k], end[k])}
    assert changed and all(built.is_adapter_key(k) or k.endswith(".quantiles") for k in changed)


def test_initialise_from_an_official_checkpoint(tiny_data, tmp_path):
    golden = torch.load(shared_path("reference", "taco_golden_small.pt"), weights_only=False)
    official = tmp_path / "official.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in golden["state_dict"].items()}}, official)
    run_tiny_rd(tiny_data, tmp_path / "run", "trainer.max_steps=1", "optim.optimizer.lr=0",
             "optim.aux_optimizer.lr=0", f"trainer.init_from={official}", "model.num_heads=8")
    end = _final_state(tmp_path / "run")["state_dict"]
    for key, value in golden["state_dict"].items():
        if value.is_floating_point() and key in end and "_quantized_cdf" not in key and "_offset" not in key \
                and "_cdf_length" not in key and "scale_table" not in key:
            assert torch.equal(end[key], value), key
    with pytest.raises(ValueError, match="cannot initialise|outside the text adapter"):
        run_tiny_rd(tiny_data, tmp_path / "bad", "trainer.max_steps=1", f"trainer.init_from={official}",
                 "model=small")


@pytest.mark.slow
def test_hydra_entry_point_sweeps_lambda(tiny_data, tmp_path, monkeypatch):
    from hydra.core.global_hydra import GlobalHydra

    from taco_plus.train.__main__ import main

    # an experiment file's rate points are its sweep (hydra.sweeper.params): -m alone runs them
    argv = ["taco_plus.train", "-m", "experiment=quickstart", *tiny_overrides(tiny_data), "loss=rd",
            "trainer.max_steps=1", f"hydra.sweep.dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        main()  # Hydra's multirun, in this process: one job per lambda
    finally:
        GlobalHydra.instance().clear()
    finals = sorted(tmp_path.glob("*/checkpoints/final.pt"))
    assert [p.parts[-3] for p in finals] == ["0_lmbda0.0025", "1_lmbda0.0067", "2_lmbda0.018"]
    assert read_checkpoint(finals[2])["config"]["loss"]["lmbda"] == 0.018


def test_bf16_keeps_the_entropy_model_in_fp32(tiny_data, tmp_path, monkeypatch):
    """trainer.precision=bf16: the transforms run in bf16, the entropy model (likelihoods of
    z and y, rounding around the means) in fp32, as compress/decompress compute it."""
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional

    from taco_plus.coding.checkerboard import RoundingCoder
    from taco_plus.models.transforms import SynthesisTransform

    seen: dict[str, set] = {}

    def spy(cls, name):
        real = getattr(cls, name)

        def wrapped(self, *args, **kwargs):
            out = real(self, *args, **kwargs)
            tensors = [a for a in (*args, *(out if isinstance(out, tuple) else (out,))) if torch.is_tensor(a)]
            seen.setdefault(cls.__name__, set()).update(t.dtype for t in tensors if t.is_floating_point())
            return out

        monkeypatch.setattr(cls, name, wrapped)

    for cls, name in ((EntropyBottleneck, "forward"), (GaussianConditional, "forward"), (RoundingCoder, "code"),
                      (SynthesisTransform, "forward")):
        spy(cls, name)
    result = run_tiny_rd(tiny_data, tmp_path, "trainer.precision=bf16", "trainer.max_steps=1")
    assert result.steps == 1 and np.isfinite(result.history[-1]["loss"])
    assert seen == {"EntropyBottleneck": {torch.float32}, "GaussianConditional": {torch.float32},
                    "RoundingCoder": {torch.float32}, "SynthesisTransform": {torch.float32, torch.bfloat16}}


def _run_rank(rank: int, store_port: int, data: str, run_dir: str) -> str:
    """One rank of a 2-process CPU run (full tiny loss: the joint loss gathers across ranks),
    launched as torchrun would; returns its run folder."""
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(store_port))
    try:
        return str(run_tiny(Path(data), Path(run_dir), "trainer.max_steps=2", "data.batch_size=1").run_dir)
    finally:
        for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(var, None)


def _rank_child(rank: int, port: int, data: str, run_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    Path(out).write_text(_run_rank(rank, port, data, run_dir))


@pytest.mark.slow
def test_ddp_on_cpu_in_rank_0s_run_folder(tiny_data, tmp_path):
    """A 2-process Gloo run (this process is rank 0, a spawned one rank 1). Each rank is
    given its own folder (as each rank's Hydra names one from its clock): every rank works
    in rank 0's, so `trainer.resume=auto` finds the same checkpoint. (A real torchrun job:
    test_train_signals.py::test_torchrun_ranks_stop_at_the_same_step.)"""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "rank1.txt"
    child = mp.get_context("spawn").Process(target=_rank_child,
                                            args=(1, port, str(tiny_data), str(tmp_path / "rank1"), str(out)))
    child.start()
    try:
        rank0 = _run_rank(0, port, str(tiny_data), str(tmp_path / "rank0"))
    finally:
        child.join(timeout=300)
    assert child.exitcode == 0
    assert rank0 == out.read_text() == str(tmp_path / "rank0")
    assert not (tmp_path / "rank1").exists()
    ckpt = read_checkpoint(tmp_path / "rank0" / "checkpoints" / "final.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["step"] == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # per-rank streams
    # 4 images over 2 ranks with batch 1: 2 steps per epoch, one CSV row per step.
    with (tmp_path / "rank0" / "train_log.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "0"]


# ------------------------------------------------- the official step, resume changes, test-set selection


def test_step_is_the_official_loop(tiny_data):
    """Trainer.step equals TACO's train_one_epoch step by step (train.py of the official code): the main
    loss's backward, clip_grad_norm_ over model.parameters() (quantiles included), the codec's Adam step,
    THEN aux_loss from the updated entropy bottleneck, its backward and step. Bitwise, after 3 steps."""
    import copy

    from taco_plus.train import build_components
    from taco_plus.train.trainer import Trainer

    torch.manual_seed(0)
    parts = build_components(compose(tiny_overrides(tiny_data, "loss=rd", "optim.clip_max_norm=0.05")))
    trainer = Trainer(device="cpu")
    models = [parts.model, copy.deepcopy(parts.model)]
    opts = []
    for model in models:
        main, aux = trainer.split_parameters(model)
        opts.append((parts.optimizer(main), parts.aux_optimizer(aux)))
    loader, sampler = parts.data.train_loader(parts.data.train_dataset(), 0)
    sampler.set_epoch(0)
    batches = [b for b, _ in zip(loader, range(3))]
    for i, batch in enumerate(batches):
        torch.manual_seed(i)  # the same noise (entropy bottleneck) in both
        trainer.step(batch, parts, models[0], opts[0])
        torch.manual_seed(i)
        model, (optimizer, aux_optimizer) = models[1], opts[1]  # the official loop, verbatim
        text = parts.text_encoder(batch["caption"])
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        out_net = model(batch["image"], text.tokens, text.mask)
        out_criterion = parts.loss(out_net, batch["image"], batch["caption"])
        out_criterion["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        optimizer.step()
        aux_loss = model.aux_loss()
        aux_loss.backward()
        aux_optimizer.step()
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_resume_records_changes_and_refuses_loss_or_data_changes(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    run_tiny_rd(tiny_data, run_dir, "trainer.max_steps=2")
    assert "resume_changes" not in _yaml(run_dir / "config.yaml")
    for change in ("loss.lmbda=0.5", "data.batch_size=1", "text_encoder.max_tokens=20"):
        with pytest.raises(ValueError, match=f"changes what the model learns from \\({change.split('=')[0]}.*"
                                             "trainer.allow_resume_changes=true"):
            run_tiny_rd(tiny_data, run_dir, "trainer.resume=auto", "trainer.max_steps=3", change)
    run_tiny_rd(tiny_data, run_dir, "trainer.resume=auto", "trainer.max_steps=3", "optim.optimizer.lr=2e-4")
    run_tiny_rd(tiny_data, run_dir, "trainer.resume=auto", "trainer.max_steps=4", "optim.optimizer.lr=2e-4",
                "loss.lmbda=0.5", "trainer.allow_resume_changes=true")
    expected = [{"step": 2, "changes": {"optim.optimizer.lr": [1e-4, 2e-4], "trainer.max_steps": [2, 3]}},
                {"step": 3, "changes": {"loss.lmbda": [0.0016, 0.5], "trainer.max_steps": [3, 4]}}]
    assert _yaml(run_dir / "config.yaml")["resume_changes"] == expected
    assert read_checkpoint(run_dir / "checkpoints" / "final.pt")["config"]["resume_changes"] == expected


def test_test_set_selection_is_opt_in_and_labelled(tiny_data, tmp_path, caplog):
    run_tiny_rd(tiny_data, tmp_path / "default", "trainer.max_steps=4")
    assert not (tmp_path / "default" / "checkpoints" / "best_on_test_set.pt").exists()
    caplog.set_level("WARNING")
    run_dir = tmp_path / "selected"
    run_tiny_rd(tiny_data, run_dir, "trainer.max_steps=4", "trainer.test_set_selection.metric=bpp",
                f"trainer.test_set_selection.image_dir={tiny_data}",
                f"trainer.test_set_selection.captions={tiny_data / 'captions.json'}")
    lines = [r.getMessage() for r in caplog.records if "TEST-SET SELECTION" in r.getMessage()]
    assert len(lines) == 2 and all(f"on {tiny_data}: bpp " in line for line in lines)  # 2 epochs of 2 steps
    best = read_checkpoint(run_dir / "checkpoints" / "best_on_test_set.pt")["test_set_selection"]
    assert best["metric"] == "bpp" and best["epoch"] in (0, 1) and best["values"]["bpp"] == best["value"] > 0
    assert best["value"] == min(float(line.split("bpp ")[1].split(",")[0]) for line in lines) or abs(
        best["value"] - min(float(line.split("bpp ")[1].split(",")[0]) for line in lines)) < 1e-4
    load_codec(run_dir / "checkpoints" / "best_on_test_set.pt")  # codes real files, like final.pt


def test_training_data_is_stated_in_the_run_config(tiny_data, tmp_path):
    run_tiny_rd(tiny_data, tmp_path / "a", "trainer.max_steps=1", "data.train_caption=first", "data.min_side=60")
    stated = _yaml(tmp_path / "a" / "config.yaml")["training_data"]
    assert stated == (f"every image file in {tiny_data} with both sides >= 60 px; the first of each image's captions "
                      f"in {tiny_data / 'captions.json'}; TACO's published lists (data.name_list, data.caption_list) "
                      "not given")
    (tmp_path / "names.json").write_text(json.dumps(["b.png", "c.png"]))
    (tmp_path / "caps.json").write_text(json.dumps(["two cats", "a lighthouse"]))
    run_tiny_rd(tiny_data, tmp_path / "b", "trainer.max_steps=1", "data.batch_size=1",
                f"data.name_list={tmp_path / 'names.json'}", f"data.caption_list={tmp_path / 'caps.json'}")
    assert _yaml(tmp_path / "b" / "config.yaml")["training_data"] == \
        f"the 2 images of {tmp_path / 'names.json'}; one caption each from {tmp_path / 'caps.json'}"
