"""The registered runs (configs/experiment): the baseline is the paper, each run differs
from its base only where it says, every run trains and evaluates, and the CLI prints real commands."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from taco_plus.schemas import compose
from taco_plus.experiments import __main__ as cli
from taco_plus.experiments.jobs import job_table
from taco_plus.experiments.registry import creates, load_run, run_names
from tests.conftest import shared_path

RUNS = run_names()
PAPER_LAMBDAS = (0.0004, 0.0008, 0.0016, 0.004, 0.009, 0.015)
ARTEFACT_KEYS = ("artefact", "tfidf_artefact", "cache", "ner_cache")


def test_the_study_is_registered():
    assert {"taco_baseline", "fix_lpips_range", "fix_mask_padding", "linformer", "linformer_text", "linformer_image",
            "weighting_tfidf", "weighting_ner", "weighting_tfidf_ner", "captions_regenerated",
            "captions_regenerated_chunked", "captions_regenerated_chunked_linformer",
            "captions_regenerated_chunked_linformer_text", "captions_regenerated_chunked_linformer_image",
            "linformer_tfidf_ner", "finetune_official_control", "finetune_official_linformer", "quickstart",
            "captions_regenerated_longclip", "captions_regenerated_longclip_linformer_text",
            "scale_table_512"} <= set(RUNS)


def test_taco_baseline_is_the_papers_recipe_exactly(monkeypatch):
    run = load_run("taco_baseline")
    cfg = run.cfg
    assert run.base is None and run.lambdas == PAPER_LAMBDAS and run.needs == ("GPU training",)
    assert {g: cfg.hydra.runtime.choices[g] for g in ("model", "text_encoder", "attention", "weighting", "captions",
                                                      "data", "loss", "optim", "trainer")} == dict(
        model="taco", text_encoder="clip_vit_b32", attention="full", weighting="none", captions="coco", data="coco",
        loss="taco", optim="adam", trainer="default")
    paper = {
        "model.N": 192, "model.M": 320, "model.slice_ch": [16, 16, 32, 64, 192], "model.num_heads": 8,
        "model.mask_padding": False, "model.caption_summary": None, "model.scale_table_levels": 64,
        "model.injector_attention._target_": "taco_plus.models.attention.FullCrossAttention",
        "model.extractor_attention._target_": "taco_plus.models.attention.FullCrossAttention",
        "text_encoder.model_name": "ViT-B-32", "text_encoder.pretrained": "openai", "text_encoder.max_tokens": 38,
        "text_encoder.pad": "eot", "weighting._target_": "taco_plus.weighting.NoWeighting",
        "data.image_dir": "data/coco/train2014", "data.min_side": 256, "data.crop_size": 256, "data.batch_size": 8,
        "loss.k_p": 3.5, "loss.k_j": 0.0025, "loss.lpips.net": "alex", "loss.lpips.convention": "reference",
        "loss.lpips.pretrained": True, "loss.joint.model_name": "ViT-B-32", "loss.joint.pretrained": "openai",
        "loss.joint.beta": 40.0, "loss.joint.logit_scale": 2.6592, "loss.joint.context_length": 38,
        "optim.optimizer._target_": "torch.optim.Adam", "optim.optimizer.lr": 1e-4,
        "optim.optimizer.betas": [0.9, 0.999], "optim.aux_optimizer.lr": 1e-3,
        "optim.scheduler._target_": "torch.optim.lr_scheduler.MultiStepLR", "optim.scheduler.milestones": [45, 48],
        "optim.scheduler.gamma": 0.1, "optim.scheduler_unit": "epoch", "optim.clip_max_norm": 1.0,
        "trainer.epochs": 50, "trainer.max_steps": None, "trainer.precision": "fp32", "trainer.trainable": "all",
        "trainer.init_from": None,
    }
    monkeypatch.delenv("TACO_DATA", raising=False)
    resolved = OmegaConf.to_container(compose(["experiment=taco_baseline"]), resolve=True)
    for key, value in paper.items():
        node = resolved
        for part in key.split("."):
            node = node[part]
        assert node == value, key


def _flat(node, prefix=""):
    if isinstance(node, dict) and node:
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


@functools.cache
def _composed(name: str):
    """Each run composed once for the module (bases serve several runs); only read, never changed."""
    return load_run(name)


@pytest.mark.parametrize("name", [n for n in RUNS if n not in ("taco_baseline", "quickstart")])
def test_each_run_differs_from_its_base_only_where_it_declares(name):
    run = _composed(name)
    base = _composed(run.base)
    configs = [OmegaConf.to_container(r.cfg, resolve=False) for r in (run, base)]
    for c in configs:
        for key in ("hydra", "name", "meta"):
            c.pop(key)
    a, b = (_flat(c) for c in configs)
    keys = {k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>")}
    groups = {g for g, choice in run.cfg.hydra.runtime.choices.items()
              if not g.startswith("hydra") and g != "experiment" and base.cfg.hydra.runtime.choices[g] != choice}
    declared = set(run.changes)
    undeclared = sorted(k for k in keys if not any(k == d or k.startswith(d + ".") for d in declared))
    assert not undeclared and groups <= declared, f"{name} also changes {undeclared + sorted(groups - declared)}"
    stale = [d for d in declared if d not in groups and not any(k == d or k.startswith(d + ".") for k in keys)]
    assert not stale, f"{name} declares changes it does not make: {stale}"


# ------------------------------------------------------------ every run starts


def _thumbnail(source: Path, target: Path) -> None:
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as im:
        im.convert("RGB").resize((64, 64)).save(target)


@pytest.fixture(scope="module")
def study_data(tmp_path_factory):
    """$TACO_DATA laid out as the configs expect, from ../shared (links, nothing copied): the COCO
    sample stands in for train2014, thumbnails for the evaluation photos; long captions for the
    GPT-4o sets; a tiny trained
    checkpoint stands in for the released ones ($TACO_OFFICIAL/taco_0.0016.pth)."""
    from taco_plus.captions.skimage_photos import export_skimage_photos
    from taco_plus.train import train

    shared = shared_path("data")
    root = tmp_path_factory.mktemp("study")
    data = root / "data"
    (data / "coco" / "annotations").mkdir(parents=True)
    (data / "captions").mkdir()
    (data / "coco" / "train2014").symlink_to(shared / "coco_mini" / "train2017")
    coco = shared / "coco_mini" / "annotations" / "captions_train2017.json"
    (data / "coco" / "annotations" / "captions_train2014.json").symlink_to(coco)
    for name in ("kodim01.png", "kodim02.png", "kodim23.png"):  # evaluation sets at thumbnail size: fast
        _thumbnail(shared / "kodak" / name, data / "kodak" / name)
    export_skimage_photos(data / "skimage_photos")
    for path in (data / "skimage_photos").iterdir():
        _thumbnail(path, path)
    (data / "captions" / "kodak_ofa.json").symlink_to(shared / "captions" / "kodak_ofa.json")
    annotations = json.loads(coco.read_text())
    names = {i["id"]: i["file_name"] for i in annotations["images"]}
    joined: dict[str, list[str]] = {}
    for a in annotations["annotations"]:
        joined.setdefault(names[a["image_id"]], []).append(a["caption"].strip())
    long_captions = {k: " ".join(v * 3) for k, v in joined.items()}  # five captions, three times: > 77 tokens
    (data / "captions" / "coco_train2014_detailed_v1.json").write_text(json.dumps(long_captions))
    kodak = json.loads((shared / "captions" / "kodak_ofa.json").read_text())
    (data / "captions" / "kodak_detailed_v1.json").write_text(json.dumps({k: (v + ". ") * 12 for k, v in kodak.items()}))
    official = root / "official"
    result = train(compose(["debug=tiny", "loss=rd", "data=folder", f"data.image_dir={data / 'coco' / 'train2014'}",
                            "captions=coco", f"captions.annotations_json={coco}", "trainer.max_steps=1"]), root / "init")
    official.mkdir()
    (official / "taco_0.0016.pth").write_bytes(result.final_checkpoint.read_bytes())
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_every_registered_run_trains_one_step_and_evaluates(name, study_data, tmp_path, monkeypatch):
    """Its own train overrides (tiny sizes, one step) after its prepare commands, then its own
    evaluation overrides through evaluate.run on the checkpoint it wrote. (Two compositions per
    run, the training config's and the evaluation's: composing dominates a tiny step.)"""
    import taco_plus.evaluate as evaluate
    from taco_plus.cli import main as taco_plus_cli
    from taco_plus.train import train

    monkeypatch.setenv("TACO_DATA", str(study_data / "data"))
    monkeypatch.setenv("TACO_OFFICIAL", str(study_data / "official"))
    run = load_run(name, ["debug=tiny", "trainer.max_steps=1", "data.limit=8"])
    cfg = run.cfg
    for key in ARTEFACT_KEYS:  # fitted artefacts go to tmp_path; the prepare commands follow (interpolations)
        if cfg.weighting.get(key):
            OmegaConf.update(cfg, f"weighting.{key}", f"{tmp_path / key}.json")
    for command in cfg.meta.prepare:
        if command.startswith("taco-plus captions regenerate"):  # the API's output, laid out by the fixture
            assert Path(creates(command)).is_file(), command
        else:
            assert taco_plus_cli(command.split()[1:]) == 0, command
    with open_dict(cfg):
        del cfg["hydra"]  # what compose() returns without return_hydra_config
    result = train(cfg, tmp_path / "run")
    assert result.steps == 1 and result.final_checkpoint.is_file()
    assert all(math.isfinite(result.history[-1][k]) for k in ("loss", "bpp", "mse", "lpips", "joint", "aux"))
    metrics = [] if "metrics.lpips=null" in run.eval else ["metrics.lpips.pretrained=false"]
    eval_cfg = compose([*run.eval, f"checkpoint={result.final_checkpoint}", "device=cpu", "data.limit=2",
                        "metrics.clip_score=null", "metrics.fid.enabled=false", "save_bitstreams=false",
                        f"out_dir={tmp_path / 'eval'}", f"name={name}", *metrics], config_name="eval")
    results = evaluate.run(eval_cfg)
    assert results["results"]["bpp"][0] > 0
    if "caption_sensitivity=true" in run.eval:
        assert (tmp_path / "eval" / "sensitivity" / "sensitivity.csv").is_file()


# -------------------------------------------------------------------- commands


def test_job_table_resumes_and_spans_seeds(tmp_path, monkeypatch):
    """One job per (λ, seed): a point in the registry is done, a trained one is only evaluated; another
    seed than the run's trains into its own folder; the measured step time is shown where recorded."""
    import json as json_lib

    monkeypatch.setenv("TACO_DATA", "/datasets")
    run = load_run("weighting_tfidf")
    assert run.prepare == ("taco-plus weights fit --weighting tfidf --captions "
                           "/datasets/coco/annotations/captions_train2014.json "
                           "--out artefacts/weighting/tfidf_coco_train2014.json",)
    runs_dir, results = str(tmp_path / "runs"), tmp_path / "registry"
    (tmp_path / "runs/weighting_tfidf/lmbda_0.0016_seed7/checkpoints").mkdir(parents=True)
    (tmp_path / "runs/weighting_tfidf/lmbda_0.0016_seed7/checkpoints/final.pt").write_bytes(b"x")
    (results / "weighting_tfidf").mkdir(parents=True)
    (results / "weighting_tfidf/provenance.json").write_text(json_lib.dumps({"points": [{"label": "lmbda_0.0016"}]}))
    (results / "bench").mkdir()
    (results / "bench/train_step.csv").write_text("variant,precision,compile,step_ms\nfull,fp32,False,412.5\n"
                                                 "full,fp32,True,300.0\n")
    table = job_table([run], (0.0016, 0.004), (100, 7), runs_dir, results, launcher_args=["gpus_per_node=4"])
    assert list(zip(table.λ, table.seed, table.folder, table["to do"])) == [
        (0.0016, 100, "lmbda_0.0016", "nothing (recorded)"), (0.0016, 7, "lmbda_0.0016_seed7", "evaluate, record"),
        (0.004, 100, "lmbda_0.004", "train, evaluate, record"), (0.004, 7, "lmbda_0.004_seed7", "train, evaluate, record")]
    assert set(table.GPUs) == {4} and set(table["step (ms)"]) == {"412"}  # eager fp32 full attention
    assert len(job_table([run], runs_dir=runs_dir, results=results)) == 6  # every rate point, the run's seed
    assert job_table([run], (0.0016,), (), runs_dir, results, force=True)["to do"][0] == "train, evaluate, record"
    with pytest.raises(ValueError, match="rate points"):
        job_table([run], (0.5,), (), runs_dir, results)


def test_finetuning_pairs_each_rate_point_with_its_released_checkpoint(monkeypatch):
    monkeypatch.setenv("TACO_OFFICIAL", "/ckpt")
    run = load_run("finetune_official_tfidf_ner", ["loss.lmbda=0.009"])
    assert run.cfg.trainer.init_from == "/ckpt/taco_0.009.pth" and run.cfg.trainer.trainable == "adapter"
    assert run.lambdas == (0.0008, 0.0016, 0.004, 0.009, 0.015)
    assert run.needs == ("GPU training", "the released TACO checkpoints")


def test_cli_show_list_and_dry_run(capsys, tmp_path):
    assert cli.main(["show", "fix_mask_padding"]) == 0
    out = capsys.readouterr().out
    assert "base: taco_baseline; changes: model.mask_padding=True" in out
    assert "python -m taco_plus.experiments.jobs -m +job=fix_mask_padding/0.0004/100,fix_mask_padding/0.0008/100," in out
    assert cli.main(["--results", str(tmp_path), "run", "linformer", "quickstart", "--dry-run", "--seed", "1",
                     "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "linformer 0.0016     1 lmbda_0.0016_seed1     1         — train, evaluate, record" in out
    assert "quickstart 0.0067     1 lmbda_0.0067_seed1     0" in out and "[jobs]" not in out
    assert cli.main(["run", "--dry-run"]) == 2 and "name the runs to run, or --all" in capsys.readouterr().err
    assert cli.main(["show", "no_such_run"]) == 2
    assert "no registered run 'no_such_run'" in capsys.readouterr().err
