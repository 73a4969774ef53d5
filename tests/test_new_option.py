"""A new weighting scheme, attention option or caption source is one module plus one YAML: written
here to a temporary folder (the module on sys.path, the YAML in a copy of configs/), each composes
with a typed schema from its constructor, instantiates, and is picked up by the checkpoint
allow-list, ``taco-plus weights`` and the attention benchmark without any registration."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from taco_plus import schemas
from taco_plus.checkpoint import UntrustedConfigError, allowed_targets, build_model, check_stored_config, load_codec, \
    save_codec
from taco_plus.cli import main
from taco_plus.schemas import compose, to_container

MODULE = '''
import re

from taco_plus.captions.sources import CaptionSetSource
from taco_plus.models.attention import FullCrossAttention
from taco_plus.weighting import TokenWeighting, WordWeight


class LongWordWeighting(TokenWeighting):
    """Words of at least ``min_length`` letters weigh ``max_weight``."""

    def __init__(self, min_length: int = 6, max_weight: float = 1.5) -> None:
        super().__init__(max_weight)
        self.min_length = min_length

    def word_weights(self, captions):
        return [[WordWeight(m.start(), m.end(), self.max_weight, "long word") for m in re.finditer(r"\\w+", c)
                 if len(m.group()) >= self.min_length] for c in captions]


class TemperedCrossAttention(FullCrossAttention):
    """Full attention, its output scaled by ``gain``."""

    def __init__(self, dim: int, num_heads: int = 8, gain: float = 1.0) -> None:
        super().__init__(dim, num_heads)
        self.gain = gain

    def forward(self, query, context, context_mask=None, context_weights=None):
        return self.gain * super().forward(query, context, context_mask, context_weights)


class PrefixedCaptions(CaptionSetSource):
    """A caption file whose captions get a prefix."""

    def __init__(self, path: str, prefix: str = "a photo of") -> None:
        super().__init__(path)
        self._captions = {k: [f"{prefix} {c}" for c in v] for k, v in self._captions.items()}
'''

OPTIONS = {
    "weighting/long_words.yaml": "defaults:\n  - /schema/throwaway_options.LongWordWeighting@_here_\n  - _self_\n\n"
                                 "min_length: 5\n",
    "attention/tempered.yaml": "defaults:\n  - /schema/taco_plus.schemas.AttentionConfig@_here_\n  - _self_\n\n"
                               "injector:\n  _target_: throwaway_options.TemperedCrossAttention\n  _partial_: true\n"
                               "  gain: 0.5\n",
    "captions/prefixed.yaml": "defaults:\n  - /schema/throwaway_options.PrefixedCaptions@_here_\n  - _self_\n\n"
                              "prefix: a picture of\n",
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The project's configs plus the three new options, and their module importable."""
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "throwaway_options.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    configs = tmp_path / "configs"
    shutil.copytree(schemas.CONFIG_DIR, configs, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in OPTIONS.items():
        (configs / name).write_text(text)
    monkeypatch.setattr(schemas, "CONFIG_DIR", configs)
    allowed_targets.cache_clear()
    yield tmp_path
    allowed_targets.cache_clear()


def test_new_weighting_scheme(project, capsys):
    cfg = compose(["weighting=long_words", "weighting.max_weight=2"])
    assert OmegaConf.to_container(cfg.weighting) == {"_target_": "throwaway_options.LongWordWeighting",
                                                     "min_length": 5, "max_weight": 2.0}
    for typo in ("weighting.min_lenght=3", "weighting.min_length=long"):  # key and type from the signature
        with pytest.raises(ConfigCompositionException):
            compose(["weighting=long_words", typo])
    weighting = instantiate(cfg.weighting)
    assert [(w.start, w.weight) for w in weighting.word_weights(["a lighthouse at dusk"])[0]] == [(2, 2.0)]

    stored = to_container(cfg.weighting)  # what training writes into a checkpoint
    check_stored_config(stored, "weighting_config")
    assert "throwaway_options.LongWordWeighting" in allowed_targets(("weighting",))
    with pytest.raises(UntrustedConfigError, match="is a str, not the int"):
        check_stored_config({**stored, "min_length": "5"}, "weighting_config")

    assert main(["weights", "--weighting", "long_words", "--max-weight", "3", "--json", "a lighthouse"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["token"]: r["weight"] for r in rows}["lighthouse"] == 3.0
    with pytest.raises(SystemExit):
        main(["weights", "--help"])
    assert "long_words" in capsys.readouterr().out


def test_new_attention_option(project):
    from taco_plus.bench.attention import attention_factories, attention_options

    cfg = compose(["attention=tempered", "model=tiny", "text_encoder=tiny"])
    model = build_model(to_container(cfg.model))  # through the checkpoint allow-list
    save_codec(project / "tempered.pt", model, to_container(cfg.model), to_container(cfg.text_encoder))
    loaded = load_codec(project / "tempered.pt").model
    tempered = [m for m in loaded.modules() if type(m).__name__ == "TemperedCrossAttention"]
    assert tempered and all(m.gain == 0.5 for m in tempered)
    assert "throwaway_options.TemperedCrossAttention" in allowed_targets(("attention",))

    assert "tempered" in attention_options(schemas.CONFIG_DIR)
    injector, extractor, summary = attention_factories("tempered", schemas.CONFIG_DIR)
    assert type(injector(64, 4)).__name__ == "TemperedCrossAttention" and summary is None


def test_new_caption_source(project):
    (project / "images").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(project / "images" / "a.png")
    (project / "captions.json").write_text(json.dumps({"a.png": "a red bus"}))
    cfg = compose(["captions=prefixed", f"captions.path={project / 'captions.json'}", "data=folder",
                   f"data.image_dir={project / 'images'}"])
    with pytest.raises(ConfigCompositionException):
        compose(["captions=prefixed", "captions.prefx=x"])
    data = instantiate(cfg.data, _convert_="all")  # the data reads the captions group
    assert data.eval_dataset()[0]["caption"] == "a picture of a red bus"
    # Not a group checkpoints store: its classes stay outside the allow-list.
    assert "throwaway_options.PrefixedCaptions" not in allowed_targets()
