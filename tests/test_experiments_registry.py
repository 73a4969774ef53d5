"""The ablation registry: every entry's commands compose, the parser rejects bad entries,
``show``/``run --dry-run`` print the real commands, the cost model follows the configs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from taco_plus.experiments import __main__ as cli
from taco_plus.experiments.cost import run_cost, training_images
from taco_plus.experiments.paths import ABLATIONS_FILE
from taco_plus.experiments.registry import RegistryError, format_commands, load_registry, parse_registry
from taco_plus.experiments.runner import executable, planned
from taco_plus.experiments.store import ResultsRegistry

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
RAW = yaml.safe_load(ABLATIONS_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_registry_covers_the_study(registry):
    names = {r.name for r in registry}
    # the baseline, each ablation, and the combinations the issue asks for
    assert {"taco_baseline", "linformer", "weighting_tfidf", "weighting_ner", "weighting_tfidf_ner",
            "captions_regenerated", "linformer_tfidf_ner", "captions_regenerated_chunked_linformer",
            "finetune_official_control"} <= names
    assert {r.ablation for r in registry} >= {"baseline", "attention", "weighting", "captions", "combination",
                                              "finetune"}
    assert registry["taco_baseline"].lambdas == (0.0004, 0.0008, 0.0016, 0.004, 0.009, 0.015)


@pytest.mark.slow
def test_every_entry_composes_with_the_project_configs(registry):
    """Each train list composes with configs/train.yaml and each eval list with eval.yaml:
    a misspelt option or key in ablations.yaml fails here, not on the cluster."""
    import taco_plus.evaluate  # noqa: F401  (registers eval_schema)
    from hydra import compose, initialize_config_dir

    from taco_plus.config import CONFIG_DIR

    evals = {}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for run in registry:
            cfg = compose(config_name="train", overrides=run.train_overrides(run.lambdas[-1]))
            assert cfg.loss.lmbda == run.lambdas[-1]
            if "trainer.trainable=adapter" in run.train:
                assert cfg.trainer.trainable == "adapter" and cfg.trainer.init_from.endswith(
                    f"taco_{run.lambdas[-1]!r}.pth")
            evals.setdefault(run.eval, run)
        for eval_overrides, run in evals.items():
            # the multirun sweeps over the checkpoints; each job composes with one of them
            overrides = [f"checkpoint={run.checkpoints()[0]}" if o.startswith("checkpoint=") else o
                         for o in run.eval_overrides() if not o.startswith("hydra.")]
            assert len(overrides) == len(run.eval) + 2
            cfg = compose(config_name="eval", overrides=overrides)
            assert cfg.checkpoint.endswith("/checkpoints/final.pt") and cfg.name == run.name


def test_entries_name_the_captions_and_attention_they_ablate(registry):
    assert "experiment=captions_regenerated" in registry["captions_regenerated"].train
    assert "captions=kodak_detailed_v1" in registry["captions_regenerated"].eval
    combo = registry["captions_regenerated_chunked_linformer"].train
    assert {"text_encoder.max_tokens=chunked", "attention=linformer"} <= set(combo)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["runs"][0].update(lmbdas=[0.1]), "unknown keys"),
    (lambda d: d["runs"].append(copy.deepcopy(d["runs"][0])), "duplicate run names"),
    (lambda d: d["runs"][0].update(needs=["a_gpu_farm"]), "not described under 'needs'"),
    (lambda d: d["runs"][0]["train"].append("loss.lmbda=0.1"), "must not set loss.lmbda"),
    (lambda d: d["runs"][0].update(lambdas=[]), "'lambdas' must be"),
    (lambda d: d["runs"][0].update(device="tpu"), "'device' must be"),
    (lambda d: d["runs"][0].update(name="Bad-Name"), "name must be"),
    (lambda d: d.update(format="something else"), "not an ablation registry"),
])
def test_bad_registry_entries_are_rejected(mutate, message):
    data = copy.deepcopy(RAW)
    mutate(data)
    with pytest.raises(RegistryError, match=message):
        parse_registry(data)


def test_unknown_placeholder_is_an_error(registry):
    data = copy.deepcopy(RAW)
    data["runs"][0]["train"] = ["trainer.init_from={nowhere}/x.pth"]
    run = parse_registry(data).runs[0]
    with pytest.raises(RegistryError, match="nowhere"):
        run.train_overrides(0.0016)


def test_commands_render_stages_and_placeholders(registry, monkeypatch):
    monkeypatch.setenv("TACO_DATA", "/datasets")
    monkeypatch.setenv("TACO_OFFICIAL", "/ckpt")
    run = registry["finetune_official_tfidf_ner"]
    commands = run.commands("runs/x")
    assert [len(commands[s]) for s in ("prepare", "train", "eval", "record")] == [2, 5, 1, 1]
    train = commands["train"][1]
    assert train[:3] == ["python", "-m", "taco_plus.train"]
    assert "trainer.init_from=/ckpt/taco_0.0016.pth" in train and "loss.lmbda=0.0016" in train
    assert train[-1] == "run_dir=runs/x/finetune_official_tfidf_ner/lmbda_0.0016"
    assert "/datasets/coco/annotations/captions_train2014.json" in commands["prepare"][0]
    evaluate = commands["eval"][0]
    assert evaluate[3] == "-m" and "hydra.sweep.dir=runs/x/finetune_official_tfidf_ner/eval" in evaluate
    assert commands["record"][0][-3:] == ["runs/x/finetune_official_tfidf_ner/eval", "--name",
                                          "finetune_official_tfidf_ner"]
    text = format_commands(run, "runs/x")
    assert "[ -e artefacts/weighting/tfidf_coco_train2014.json ] ||" in text
    assert "'optim.scheduler.milestones=[4]'" in text  # shell-quoted


def test_run_plan_skips_finished_points_and_filters_lambdas(registry, tmp_path):
    run = registry["weighting_tfidf"]
    (tmp_path / "artefacts" / "weighting").mkdir(parents=True)
    (tmp_path / "artefacts" / "weighting" / "tfidf_coco_train2014.json").write_text("{}")
    done = tmp_path / run.run_dir(0.0016) / "checkpoints"
    done.mkdir(parents=True)
    (done / "final.pt").write_bytes(b"x")
    plan = planned(run, ("prepare", "train", "eval", "record"), root=tmp_path)
    assert [stage for stage, _, _ in plan] == ["prepare"] + ["train"] * 4 + ["eval", "record"]
    skipped = {stage + (c[-1] if stage == "train" else "") for stage, c, skip in plan if skip}
    assert skipped == {"prepare", f"trainrun_dir={run.run_dir(0.0016)}"}
    only = planned(run, ("train",), lambdas=(0.004,), root=tmp_path)
    assert len(only) == 1 and "loss.lmbda=0.004" in only[0][1]
    with pytest.raises(ValueError, match="no rate point"):
        planned(run, ("train",), lambdas=(0.5,), root=tmp_path)
    assert executable(["python", "-m", "x"])[1:] == ["-m", "x"]
    assert executable(["taco-plus", "weights"])[1:] == ["-m", "taco_plus", "weights"]


def test_cli_show_list_and_dry_run(capsys):
    assert cli.main(["show", "linformer"]) == 0
    out = capsys.readouterr().out
    assert "python -m taco_plus.train experiment=linformer loss.lmbda=0.0004 " \
           "run_dir=runs/experiments/linformer/lmbda_0.0004" in out
    assert cli.main(["run", "linformer", "--dry-run", "--stage", "eval", "--runs-dir", "/nonexistent"]) == 0
    assert "[eval] python -m taco_plus.evaluate -m name=linformer" in capsys.readouterr().out
    assert cli.main(["show", "no_such_run"]) == 2
    assert "no run 'no_such_run'" in capsys.readouterr().err
    assert cli.main(["--registry", str(FIXTURES), "--ablations", str(FIXTURES / "ablations.yaml"), "list"]) == 0
    out = capsys.readouterr().out
    assert "not run: needs GPU training, see experiments/README.md#linformer" in out and "GPU h" in out


def test_cost_follows_the_config_and_the_measured_flops():
    registry = load_registry(FIXTURES / "ablations.yaml")
    results = ResultsRegistry(FIXTURES)
    step_time = results.json("cost/step_time.json")
    images = training_images(step_time, 256)
    assert images == round(82783 * 0.9)
    base = run_cost(registry["taco_baseline"], registry, results, step_time)
    assert base.steps_per_model == 50 * (images // 8)
    assert base.gpu_hours == pytest.approx(3 * base.steps_per_model * 2.0e12 / 20e12 / 3600)
    finetune = run_cost(registry["finetune_official_control"], registry, results, step_time)
    assert finetune.steps_per_model == 5 * (images // 8) and finetune.relative_step_flops == pytest.approx(0.75)
    quick = run_cost(registry["quickstart"], registry, results, step_time)
    assert quick.device == "cpu" and quick.steps_per_model == 300 and quick.gpu_hours is None
