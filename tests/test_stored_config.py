"""A checkpoint is data: hostile configs stored in it are refused before anything is
instantiated, through load_codec and through the CLI, and the victim file is untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from taco_plus.checkpoint import (CHECKPOINT_GROUPS, FORMAT, FORMAT_VERSION, UntrustedConfigError, _walk,
                                  allowed_targets, load_codec, save_codec)
from taco_plus.cli import main as cli_main
from taco_plus.schemas import compose, options
from tests.test_codec import TINY_MODEL, TINY_TEXT, make_model

VICTIM_TEXT = "precious data\n"


@pytest.fixture(scope="module")
def state_dict():
    model = make_model(0)
    model.update(force=True)
    return model.state_dict()


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def write_checkpoint(path, state_dict, model=TINY_MODEL, text=TINY_TEXT, weighting=None):
    """A checkpoint as an attacker would craft it: valid format, any stored configs."""
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": model,
                "text_encoder_config": text, "weighting_config": weighting, "state_dict": state_dict}, path)
    return path


def hostile_configs(victim, copy):
    """(name, model_config, text_encoder_config, weighting_config, refused path)."""
    open_victim = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    return [
        ("builtins.open", open_victim, TINY_TEXT, None, "model_config._target_"),
        ("shutil.copyfile", TINY_MODEL, {"_target_": "shutil.copyfile", "src": str(victim), "dst": str(copy)},
         None, "text_encoder_config._target_"),
        ("os.system", TINY_MODEL, TINY_TEXT, {"_target_": "os.system", "command": f"truncate -s 0 {victim}"},
         "weighting_config._target_"),
        ("subprocess.call", TINY_MODEL, TINY_TEXT,
         {"_target_": "subprocess.call", "args": ["truncate", "-s", "0", str(victim)]}, "weighting_config._target_"),
        # Nested: an attention factory inside an allowed model config.
        ("nested attention factory", {**TINY_MODEL, "injector_attention": open_victim}, TINY_TEXT, None,
         "model_config.injector_attention._target_"),
        # An allowed outer target whose positional _args_ build the hostile one first.
        ("_args_ trick", {**TINY_MODEL, "caption_summary": {
            "_target_": "taco_plus.models.attention.CaptionSummary", "_partial_": True,
            "_args_": [{"_target_": "builtins.open", "_args_": [str(victim), "w"]}]}}, TINY_TEXT, None,
         "model_config.caption_summary._args_[0]._target_"),
        ("_partial_ trick", {**TINY_MODEL, "extractor_attention": {
            "_target_": "shutil.copyfile", "_partial_": True, "src": str(victim), "dst": str(copy)}}, TINY_TEXT,
         None, "model_config.extractor_attention._target_"),
        # An interpolation that decodes to a new _target_ only at instantiation time.
        ("oc.decode interpolation", {**TINY_MODEL, "injector_attention":
            f"${{oc.decode:'{{_target_: builtins.open, file: {victim}, mode: w}}'}}"}, TINY_TEXT, None,
         "holds an interpolation"),
        ("non-dict config", ["_target_", "builtins.open"], TINY_TEXT, None, "model_config is a list"),
        ("non-string _target_", {**TINY_MODEL, "_target_": ["builtins.open"]}, TINY_TEXT, None,
         "model_config._target_"),
        # A project class, but of a group checkpoints never store (it exports files).
        ("data source class", {"_target_": "taco_plus.data.SkimagePhotosData", "image_dir": str(victim.parent)},
         TINY_TEXT, None, "taco_plus.data.SkimagePhotosData"),
        # An allowed class with a key its schema lacks (where weights would be downloaded).
        ("key outside the schema", TINY_MODEL, {**TINY_TEXT, "cache_dir": str(victim.parent / "downloads")},
         None, "Key 'cache_dir' not in"),
        # The schemas are the constructors' signatures, nested factories' included.
        ("weighting key outside the schema", TINY_MODEL, TINY_TEXT,
         {"_target_": "taco_plus.weighting.NoWeighting", "max_wieght": 2.0}, "Key 'max_wieght' not in"),
        ("string in a nested factory", {**TINY_MODEL, "extractor_attention": {
            "_target_": "taco_plus.models.attention.PooledLinformerCrossAttention", "_partial_": True, "k": "8"}},
         TINY_TEXT, None, "model_config.extractor_attention.k = '8' is a str, not the int"),
    ]


CASES = [c[0] for c in hostile_configs(Path("v"), Path("c"))]


@pytest.mark.parametrize("case", CASES)
def test_load_codec_refuses_hostile_configs(case, state_dict, victim, tmp_path):
    copy = tmp_path / "copy.txt"
    name, model, text, weighting, where = next(c for c in hostile_configs(victim, copy) if c[0] == case)
    path = write_checkpoint(tmp_path / "hostile.pt", state_dict, model, text, weighting)
    with pytest.raises(UntrustedConfigError, match="refusing to load it") as err:
        load_codec(path)
    assert where in str(err.value) and str(path) in str(err.value)
    assert victim.read_text() == VICTIM_TEXT
    assert not copy.exists() and not (tmp_path / "downloads").exists()


@pytest.mark.parametrize("command,case", [("decompress", "builtins.open"), ("compress", "shutil.copyfile"),
                                          ("compress", "os.system"), ("compress", "nested attention factory")])
def test_cli_refuses_hostile_checkpoints(command, case, state_dict, victim, tmp_path, capsys):
    copy = tmp_path / "copy.txt"
    good = write_checkpoint(tmp_path / "good.pt", state_dict)
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    assert cli_main(["compress", str(image), "--caption", "x", "--checkpoint", str(good)]) == 0
    _, model, text, weighting, where = next(c for c in hostile_configs(victim, copy) if c[0] == case)
    hostile = write_checkpoint(tmp_path / "hostile.pt", state_dict, model, text, weighting)
    argv = ["decompress", str(tmp_path / "img.tacoz")] if command == "decompress" else \
        ["compress", str(image), "--caption", "x", "--force"]
    capsys.readouterr()
    assert cli_main([*argv, "--checkpoint", str(hostile)]) == 2
    err = capsys.readouterr().err
    assert "refusing to load it (nothing was instantiated)" in err and where in err and "Traceback" not in err
    assert victim.read_text() == VICTIM_TEXT and not copy.exists()


def test_allow_list_follows_the_config_groups():
    allowed = allowed_targets()
    # Every class an option of the checkpoint groups builds is in; other groups' classes and foreign code are not.
    for group in CHECKPOINT_GROUPS:
        for option in options(group):
            node = OmegaConf.to_container(compose([f"{group}={option}"])[group], resolve=False)
            targets = {n["_target_"] for _, n in _walk(node, "") if isinstance(n, dict) and "_target_" in n}
            assert targets and targets <= allowed, (group, option, targets - allowed)
    assert {"taco_plus.models.TACO", "taco_plus.text.ClipTextEncoder", "taco_plus.weighting.TfidfEmbeddingScale",
            "taco_plus.models.attention.PooledLinformerCrossAttention"} <= allowed
    assert not any(t.startswith(("builtins.", "os.", "torch.", "taco_plus.data")) for t in allowed)


def test_genuine_checkpoints_still_load(tmp_path):
    from taco_plus.checkpoint import build_model

    linformer = {**TINY_MODEL,
                 "caption_summary": {"_target_": "taco_plus.models.attention.CaptionSummary",
                                     "_partial_": True, "k": 8, "max_len": 38},
                 "extractor_attention": {"_target_": "taco_plus.models.attention.PooledLinformerCrossAttention",
                                         "_partial_": True, "k": 8}}
    built = build_model(linformer)
    save_codec(tmp_path / "lin.pt", built, linformer, TINY_TEXT,
               {"_target_": "taco_plus.weighting.NoWeighting", "max_weight": 1.0})
    loaded = load_codec(tmp_path / "lin.pt")
    assert type(loaded.model).__name__ == "TACO" and loaded.weighting_config["max_weight"] == 1.0


def hostile_sizes(tmp_path, state_dict):
    """(name, checkpoint object, what the one-line error says): configs and weights that pass the
    allow-list but used to crash the CLI (ZeroDivisionError, an 8 TB allocation, TypeError ...)."""
    import os
    import pickle

    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    pickled = tmp_path / "clip.pt"
    if tmp_path.is_dir():
        pickled.write_bytes(pickle.dumps(RunsCode()))
    weight = "g_s.synthesis_transform.0.conv_a.0.conv.0.weight"

    def ours(model=TINY_MODEL, text=TINY_TEXT, state=state_dict):
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": model,
                "text_encoder_config": text, "weighting_config": None, "state_dict": state}

    return [
        ("zero heads", ours({**TINY_MODEL, "num_heads": 0}), "model_config.num_heads = 0 is out of range"),
        ("negative heads", ours({**TINY_MODEL, "num_heads": -4}), "model_config.num_heads = -4 is out of range"),
        ("string N", ours({**TINY_MODEL, "N": "32"}), "model_config.N = '32' is a str, not the int"),
        ("huge N", ours({**TINY_MODEL, "N": 10**7}), "model_config.N = 10000000 is out of range [1, 65536]"),
        ("partial text config", ours(text={"_target_": "taco_plus.text.ClipTextEncoder", "model_name": 5}),
         "text_encoder_config.model_name = 5 is a int, not the str"),
        ("text target a model class", ours(text=TINY_MODEL), "text_encoder_config._target_ = 'taco_plus.models.TACO' "
                                                             "is not a text_encoder component"),
        ("YAML anchor string", ours({**TINY_MODEL, "caption_summary": "*summary"}),  # an Any-typed key
         "its stored model does not build: 'str' object is not callable"),
        ("integer state-dict entry", ours(state={**state_dict, weight: 5}), f"not a tensor of the model's kind and "
                                                                           f"shape: {weight}"),
        ("list state-dict entry", ours(state={**state_dict, weight: [1.0]}), f"shape: {weight}"),
        ("flat official-format dict", {**{k: 1 for k in state_dict}, "x": torch.zeros(1)},
         "(read as an official TACO checkpoint): its stored model does not build"),
        ("scalar official-format dict", {"state_dict": {k: torch.tensor(1.0) for k in state_dict}},
         "(read as an official TACO checkpoint): its stored model does not build"),
        ("pickled text pretrained", ours(text={**TINY_TEXT, "pretrained": str(pickled)}),
         f"text_encoder_config.pretrained = '{pickled}' is not a checkpoint, or is damaged"),
    ]


SIZE_CASES = [c[0] for c in hostile_sizes(Path("/nonexistent"), {})]


@pytest.mark.parametrize("case", SIZE_CASES)
def test_hostile_sizes_and_weights_are_one_line_errors(case, state_dict, tmp_path, capsys):
    _, obj, message = next(c for c in hostile_sizes(tmp_path, state_dict) if c[0] == case)
    torch.save(obj, tmp_path / "hostile.pt")
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    capsys.readouterr()
    assert cli_main(["compress", str(image), "--caption", "x", "--checkpoint", str(tmp_path / "hostile.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "ran").exists()


def test_an_8_terabyte_model_is_refused_before_allocation(state_dict, tmp_path):
    """A real `taco-plus decompress` process on a checkpoint whose sizes pass the range check but not its
    weights (N = 65536, 4 TB of float32 for the analysis transform): built on the meta device, compared, refused."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": {**TINY_MODEL, "N": 65536},
                "text_encoder_config": TINY_TEXT, "weighting_config": None, "state_dict": state_dict},
               tmp_path / "big.pt")
    (tmp_path / "x.tacoz").write_bytes(b"TACZ")
    proc = subprocess.run([sys.executable, "-m", "taco_plus", "decompress", str(tmp_path / "x.tacoz"),
                           "--checkpoint", str(tmp_path / "big.pt")], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "its weights do not fit its model: not a tensor of the model's kind and shape: g_a." in proc.stderr
