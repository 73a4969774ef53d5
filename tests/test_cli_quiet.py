"""Quiet, accurate help and output: Hydra's help lists real options only, no third-party
deprecation warning on every command, open_clip's INFO lines once, nothing written in the
working directory when run_dir/out_dir is set, every regeneration default shown, and the
benchmarks' data folder follows $TACO_DATA (real subprocesses where it is what a user sees)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from taco_plus.bench.codec import build_parser as codec_bench_parser
from taco_plus.cli import build_parser
from tests.conftest import REPO_ROOT
from tests.test_train import tiny_data, tiny_overrides  # noqa: F401  (fixture)


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def help_groups(text: str) -> dict[str, list[str]]:
    section = text.split("== Configuration groups ==")[1].split("== Config ==")[0]
    return {m[1]: m[2].split(", ") for m in re.finditer(r"^(\w+): (.+)$", section, re.MULTILINE)}


def hydra_help(main, capsys, monkeypatch, tmp_path) -> str:
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["prog", "--help"])
    try:
        with pytest.raises(SystemExit) as info:
            main()
    finally:
        GlobalHydra.instance().clear()
    assert info.value.code in (0, None)
    return capsys.readouterr().out


def test_help_lists_only_the_entry_points_options(capsys, monkeypatch, tmp_path):
    from taco_plus.evaluate import main as evaluate_main
    from taco_plus.train.__main__ import main as train_main

    train, evaluate = (hydra_help(m, capsys, monkeypatch, tmp_path) for m in (train_main, evaluate_main))
    for text in (train, evaluate):
        assert "schema" not in text.split("== Config ==")[0]
    groups = help_groups(train)
    assert {"experiment", "debug", "loss", "optim", "trainer"} <= set(groups)
    assert "taco_baseline" in groups["experiment"] and "coco30k" in groups["data"]
    assert set(help_groups(evaluate)) == {"model", "text_encoder", "attention", "weighting", "captions", "data"}
    assert not list(tmp_path.iterdir())  # --help writes nothing


def test_only_the_torch_jit_script_warning_is_silenced(tmp_path):
    code = ("import warnings, taco_plus\n"
            "warnings.warn('`torch.jit.script` is deprecated. Please switch to `torch.compile`', FutureWarning)\n"
            "warnings.warn('another deprecation', FutureWarning)")
    proc = python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "torch.jit.script" not in proc.stderr and "another deprecation" in proc.stderr


def test_run_dir_and_out_dir_keep_the_working_directory_clean(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    from hydra.core.global_hydra import GlobalHydra

    from taco_plus.evaluate import main as evaluate_main

    run_dir, out_dir = tmp_path / "run", tmp_path / "eval"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    train = python("-m", "taco_plus.train", *tiny_overrides(tiny_data), "trainer.max_steps=1",
                   f"run_dir={run_dir}", cwd=cwd)
    assert train.returncode == 0, train.stderr
    assert "torch.jit.script" not in train.stderr  # compressai imported it, silently
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [
        "evaluate", f"checkpoint={run_dir / 'checkpoints' / 'final.pt'}", "data=folder", f"data.image_dir={tiny_data}",
        "captions=file", f"captions.path={tiny_data / 'captions.json'}", "metrics.lpips.pretrained=false",
        "metrics.clip_score=null", "metrics.fid.enabled=false", "device=cpu", f"out_dir={out_dir}"])
    try:
        evaluate_main()
    finally:
        GlobalHydra.instance().clear()
    assert (out_dir / "results.json").is_file()
    assert not list(cwd.iterdir())  # no outputs/train/<date>/, no outputs/eval/eval/<date>/
    assert (run_dir / "train.log").is_file() and (out_dir / "evaluate.log").is_file()  # Hydra's logs sit there
    # The text encoder and the joint loss each create a CLIP: open_clip's INFO lines are logged once.
    lines = [line.split(" - ", 1)[1] for line in (run_dir / "train.log").read_text().splitlines()
             if "[root][INFO]" in line]
    assert any("Instantiating model architecture" in line for line in lines)
    assert max(Counter(lines).values()) == 1, Counter(lines).most_common(3)


def test_regenerate_help_shows_every_default():
    regenerate = build_parser()._subparsers._group_actions[0].choices["captions"]
    regenerate = regenerate._subparsers._group_actions[0].choices["regenerate"]
    text = regenerate.format_help()
    flat = " ".join(text.split())
    for option, default in [("--model", "gpt-4o"), ("--temperature", "0.2"), ("--max-tokens", "450"),
                            ("--detail", "high"), ("--mode", "online"), ("--concurrency", "8"),
                            ("--batch-max-requests", "50000"), ("--batch-max-bytes", "199998976")]:
        assert re.search(rf"{option} \S+ [^-]*\(default: {re.escape(default)}\)", flat), option
    assert "(default: True)" not in flat and "(default: False)" not in flat and "(default: None)" not in flat
    assert flat.count("(default") == len(re.findall(r"\(default", flat))
    for option in ("--prompt", "--journal", "--prices"):  # their help states the default once
        help_text = flat.split(option, 2)[2].split(" --", 1)[0] if flat.count(option) > 1 else ""
        assert help_text.count("default") == 1, (option, help_text)
    assert re.search(r"--no-progress no progress bar", flat)


def test_codec_benchmark_reads_kodak_from_taco_data(monkeypatch, tmp_path):
    monkeypatch.setenv("TACO_DATA", str(tmp_path))
    assert codec_bench_parser().parse_args([]).kodak == tmp_path / "kodak"
    monkeypatch.delenv("TACO_DATA")
    assert codec_bench_parser().parse_args([]).kodak == Path("data") / "kodak"


def test_training_docs_list_every_option():
    """docs/training.md's switchboard table names each option file of each group, and no other."""
    from taco_plus.schemas import CONFIG_DIR

    rows = {m[1]: set(re.findall(r"`([a-z0-9_]+)`", m[2]))
            for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \| [^|]+ \|$", (REPO_ROOT / "docs" / "training.md").read_text(),
                                 re.MULTILINE)}
    groups = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))
    assert sorted(rows) == groups
    for group in groups:
        assert rows[group] == {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}, group


def test_evaluation_docs_list_the_csv_columns():
    from taco_plus.results.per_image import CSV_COLUMNS

    text = (REPO_ROOT / "docs" / "evaluation.md").read_text()
    listed = re.search(r"per_image\.csv +([a-z_,]+,)\n +([a-z_,]+)\n", text)
    assert (listed[1] + listed[2]).split(",") == list(CSV_COLUMNS)
    assert "enc_ms,dec_ms" not in (REPO_ROOT / "docs" / "experiments.md").read_text()  # one list, in one place
