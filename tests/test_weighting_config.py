"""The ``weighting`` config group and the ablation-2 experiment files."""

from __future__ import annotations

import json
import shutil

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from taco_plus.captions.sources import CaptionSetSource
from taco_plus.schemas import CONFIG_DIR as CONFIGS
from taco_plus.schemas import compose as project_compose
from taco_plus.schemas import options, register_configs, schema
from taco_plus.weighting import (
    FingerprintMismatchError,
    NerWeighting,
    NoWeighting,
    TfidfEmbeddingScale,
    TfidfNerWeighting,
    TfidfStatistics,
    TfidfWeighting,
    load_corpus,
)

EXPERIMENTS = ["weighting_tfidf", "weighting_ner", "weighting_tfidf_ner"]
# A stand-in primary config holding only what the weighting group refers to, so these
# tests exercise this group's files whatever the rest of configs/ looks like.
STUB = """
defaults:
  - weighting: none
  - _self_
  - optional experiment: null
captions:
  path: null
name: train
"""


@pytest.mark.parametrize("option", options("weighting"))
def test_option_is_its_constructor(option):
    """The option's keys are its class's arguments: a misspelt key fails, any argument can be set."""
    (entry, _) = OmegaConf.load(CONFIGS / "weighting" / f"{option}.yaml").defaults
    target = entry.removeprefix("/schema/").removesuffix("@_here_")
    assert target.startswith("taco_plus.weighting.") and schema(target)._target_ == target
    with pytest.raises(ConfigCompositionException, match="max_wieght"):
        project_compose([f"weighting={option}", "weighting.max_wieght=2"])
    assert project_compose([f"weighting={option}", "weighting.max_weight=2"]).weighting.max_weight == 2


@pytest.fixture
def config_dir(tmp_path):
    register_configs()  # the schemas the options' defaults name, whatever ran before
    root = tmp_path / "configs"
    shutil.copytree(CONFIGS / "weighting", root / "weighting")
    (root / "experiment").mkdir()
    for name in EXPERIMENTS:
        shutil.copy(CONFIGS / "experiment" / f"{name}.yaml", root / "experiment")
    (root / "experiment" / "taco_baseline.yaml").write_text("# @package _global_\n")  # their base, stubbed
    (root / "train.yaml").write_text(STUB, encoding="utf-8")
    return root


@pytest.fixture
def fitted(tmp_path):
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"a.png": "a red bus", "b.png": "a blue car"}), "utf-8")
    artefact = tmp_path / "tfidf.json"
    TfidfStatistics.fit(load_corpus(captions)).save(artefact)
    return captions, artefact


def compose_in(config_dir, overrides):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def test_default_is_unweighted(config_dir):
    cfg = compose_in(config_dir, [])
    weighting = instantiate(cfg.weighting)
    assert isinstance(weighting, NoWeighting)


@pytest.mark.parametrize(
    "experiment, cls, artefact_key",
    [
        ("weighting_tfidf", TfidfWeighting, "artefact"),
        ("weighting_ner", NerWeighting, None),
        ("weighting_tfidf_ner", TfidfNerWeighting, "tfidf_artefact"),
    ],
)
def test_experiments_instantiate(config_dir, fitted, experiment, cls, artefact_key):
    captions, artefact = fitted
    overrides = [f"experiment={experiment}", f"captions.path={captions}"]
    if artefact_key:
        overrides.append(f"weighting.{artefact_key}={artefact}")
    cfg = compose_in(config_dir, overrides)
    assert cfg.name == experiment
    weighting = instantiate(cfg.weighting)
    assert isinstance(weighting, cls)
    assert weighting.max_weight == 1.5
    weighting.check_caption_set(CaptionSetSource(captions).fingerprint)  # what training does


def test_artefact_of_other_captions_is_refused(config_dir, fitted, tmp_path):
    _, artefact = fitted
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"c.png": "a green tram"}), "utf-8")
    cfg = compose_in(config_dir, ["experiment=weighting_tfidf", f"weighting.artefact={artefact}"])
    weighting = instantiate(cfg.weighting)
    with pytest.raises(FingerprintMismatchError, match="fitted on caption set"):
        weighting.check_caption_set(CaptionSetSource(other).fingerprint)
    cfg.weighting.caption_set = str(other)  # checked at construction when given
    with pytest.raises(Exception, match="fitted on caption set"):
        instantiate(cfg.weighting)


def test_project_config_composes_each_experiment():
    for name in EXPERIMENTS:
        cfg = project_compose([f"experiment={name}"])
        assert cfg.name == name and cfg.weighting._target_.startswith("taco_plus.weighting.")


def test_embedding_scale_control_replaces_the_tfidf_of_an_experiment(config_dir, fitted):
    """The naive control is a weighting option with tfidf's keys: it swaps into the
    tf-idf experiment, which keeps its artefact, and scales the features itself."""
    captions, artefact = fitted
    cfg = compose_in(config_dir, ["experiment=weighting_tfidf", "weighting=tfidf_embedding_scale",
                                  f"weighting.artefact={artefact}"])  # fmt: skip
    weighting = instantiate(cfg.weighting)
    assert type(weighting) is TfidfEmbeddingScale and weighting.max_weight == 1.5
    default, tfidf = (compose_in(config_dir, [f"weighting={o}"]).weighting for o in ("tfidf_embedding_scale", "tfidf"))
    assert {k: v for k, v in default.items() if k != "_target_"} == {k: v for k, v in tfidf.items() if k != "_target_"}
