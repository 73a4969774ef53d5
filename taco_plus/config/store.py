"""Registers the structured schemas and resolvers with Hydra and OmegaConf.

:func:`register_configs` must run before a config that names a schema is composed;
importing :mod:`taco_plus.config` does it, as does every entry point (the
``@hydra.main`` of ``taco_plus.train``, :func:`taco_plus.config.compose`).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from taco_plus.config import schema

# (group, name, node): each option yaml of ``group`` lists ``name`` first in its defaults.
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

_registered = False
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def taco_package() -> str:
    """The installed ``taco_plus`` folder (``${taco_package:}``), for data files shipped with it."""
    return str(PACKAGE_DIR)


def clip_text_width(model_name: str) -> int:
    """Token width of an open_clip architecture's text tower, read from its config.

    Used as ``model.text_dim: ${clip_text_width:${text_encoder.model_name}}`` so that
    the codec's adapter always matches the text encoder; no weights are loaded.
    """
    import open_clip

    from taco_plus.text import register_model_configs

    register_model_configs()
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(
            f"unknown open_clip model {model_name!r}: cannot infer the text width; "
            "set model.text_dim explicitly"
        )
    return int(config.get("text_cfg", {}).get("width", 512))


def register_configs() -> None:
    """Stores every schema in Hydra's ConfigStore and registers the resolvers (idempotent)."""
    global _registered
    if _registered:
        return
    from taco_plus.weighting.schema import SCHEMAS as WEIGHTING_SCHEMAS

    store = ConfigStore.instance()
    for group, name, node in (*SCHEMAS, *WEIGHTING_SCHEMAS):
        store.store(group=group, name=name, node=node)
    if not OmegaConf.has_resolver("clip_text_width"):
        OmegaConf.register_new_resolver("clip_text_width", clip_text_width, use_cache=True)
    if not OmegaConf.has_resolver("taco_package"):
        OmegaConf.register_new_resolver("taco_package", taco_package)
    if not OmegaConf.has_resolver("caption_max_len"):
        OmegaConf.register_new_resolver("caption_max_len", schema.caption_max_len)
    _registered = True
