"""Hydra configuration: the structured schemas, the resolvers and a ``compose`` helper.

The YAML options ship in ``taco_plus/configs/`` (search path ``pkg://taco_plus.configs``);
each starts its defaults list with its group's schema (:mod:`taco_plus.config.schema`), so
a misspelt key fails at composition. Importing this package registers the schemas and
resolvers; every entry point does (docs/training.md).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from taco_plus.config import schema

CONFIG_MODULE = "taco_plus.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"  # for @hydra.main
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONFIG_DIR = PACKAGE_DIR / "configs"  # the same files, for listing options

# (group, name, node): each option of ``group`` lists ``name`` first in its defaults.
SCHEMAS = (
    (None, "train_schema", schema.TrainConfig),
    ("model", "schema_taco", schema.TacoModelConfig),
    ("attention", "schema_attention", schema.AttentionConfig),
    ("text_encoder", "schema_clip", schema.ClipTextEncoderConfig),
    ("captions", "schema_caption_set", schema.CaptionSetConfig),
    ("captions", "schema_coco", schema.CocoCaptionsConfig),
    ("data", "schema_folder", schema.DataConfig),
    ("data", "schema_skimage", schema.SkimagePhotosConfig),
    ("loss", "schema_taco", schema.TacoLossConfig),
    ("optim", "schema_adam", schema.OptimConfig),
    ("trainer", "schema_trainer", schema.TrainerConfig),
)


def clip_text_width(model_name: str) -> int:
    """``${clip_text_width:NAME}``: the token width of an open_clip text tower, read from
    its architecture config (no weights), so that ``model.text_dim`` follows the encoder."""
    import open_clip

    from taco_plus.text import register_model_configs

    register_model_configs()
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f"unknown open_clip model {model_name!r}: cannot infer the text width; set model.text_dim")
    return int(config.get("text_cfg", {}).get("width", 512))


def tiny_clip_name(max_tokens) -> str:
    """``${tiny_clip:MAX_TOKENS}``: the UNTRAINED tiny tower with enough positions for the captions:
    ``taco-tiny-clip`` (77), or ``taco-tiny-longclip`` (Long-CLIP's 248) above 77 tokens."""
    return "taco-tiny-longclip" if str(max_tokens) != "chunked" and int(max_tokens) > 77 else "taco-tiny-clip"


def config_groups(config_name: str) -> str:
    """``${config_groups:train}`` in ``--help``: each group of ``<config_name>.yaml``'s defaults
    list and its options (the YAML files; the schemas in Hydra's ConfigStore are not options)."""
    defaults = OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml").defaults
    groups = [next(iter(d)).removeprefix("optional ") for d in defaults if isinstance(d, DictConfig)]
    return "\n".join(f"{g}: {', '.join(sorted(p.stem for p in (CONFIG_DIR / g).glob('*.yaml')))}" for g in groups)


def register_configs() -> None:
    """Stores every schema in Hydra's ConfigStore and registers the resolvers (idempotent)."""
    from taco_plus.weighting.schema import SCHEMAS as WEIGHTING_SCHEMAS

    for group, name, node in (*SCHEMAS, *WEIGHTING_SCHEMAS):
        ConfigStore.instance().store(group=group, name=name, node=node)
    resolvers = {"clip_text_width": clip_text_width, "taco_package": lambda: str(PACKAGE_DIR),
                 "caption_max_len": schema.caption_max_len, "tiny_clip": tiny_clip_name,
                 "config_groups": config_groups,
                 "first_set": lambda *values: next((v for v in values if v not in (None, "")), None)}
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=name == "clip_text_width")


register_configs()


def compose(overrides: Sequence[str] = (), config_name: str = "train", return_hydra_config: bool = False) -> DictConfig:
    """Composes ``<config_name>.yaml`` (``train``, ``eval``) with command-line style
    overrides, as ``python -m taco_plus.train <overrides>`` does (the ``hydra`` node only
    with ``return_hydra_config``); inside a Hydra app, through its search path (the study's jobs)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with contextlib.nullcontext() if GlobalHydra.instance().is_initialized() else \
            initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


def to_container(node: DictConfig) -> dict:
    """A resolved plain-dict copy of a config node (for checkpoints and logs)."""
    return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
