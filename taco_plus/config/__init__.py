"""Hydra configuration: structured schemas, resolvers and a ``compose`` helper.

The YAML options ship with the package in ``taco_plus/configs/`` (Hydra search path
``pkg://taco_plus.configs``; groups ``model``, ``text_encoder``, ``attention``,
``weighting``, ``captions``, ``data``, ``loss``, ``optim``, ``trainer``, ``experiment``,
``debug``); the dataclasses in :mod:`taco_plus.config.schema` type them so a misspelt key
fails at composition. Data paths come from the configs and ``$TACO_DATA`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from taco_plus.config.store import register_configs

CONFIG_MODULE = "taco_plus.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"  # for @hydra.main
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the same files, for listing options

register_configs()


def compose(overrides: Sequence[str] = (), config_name: str = "train", return_hydra_config: bool = False) -> DictConfig:
    """Composes ``<config_name>.yaml`` with command-line style overrides.

    The same composition as ``python -m taco_plus.train <overrides>`` (without the
    ``hydra`` node unless ``return_hydra_config``); for tests, notebooks and the quickstart.

    Args:
        overrides: e.g. ``["experiment=quickstart", "loss.lmbda=0.004"]``.
        config_name: primary config (``train``, ``eval``).
        return_hydra_config: keep the ``hydra`` node (sweep parameters, group choices).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


def to_container(node: DictConfig) -> dict:
    """A resolved plain-dict copy of a config node (for checkpoints and logs)."""
    return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)  # type: ignore[return-value]


__all__ = ["CONFIG_DIR", "CONFIG_PATH", "compose", "register_configs", "to_container"]
