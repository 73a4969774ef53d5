"""Hydra configuration: structured schemas, resolvers and a ``compose`` helper.

The YAML options live in ``taco_plus/configs/`` (shipped with the package) (groups ``model``,
``text_encoder``, ``attention``, ``weighting``, ``captions``, ``data``, ``loss``,
``optim``, ``trainer``, ``experiment``, ``debug``); the dataclasses in
:mod:`taco_plus.config.schema` type them so a misspelt key fails at composition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from taco_plus.config.store import register_configs

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

register_configs()


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Composes ``taco_plus/configs/<config_name>.yaml`` with command-line style overrides.

    The same composition as ``python -m taco_plus.train <overrides>`` minus the
    ``hydra`` node; for tests, notebooks and the quickstart.

    Args:
        overrides: e.g. ``["experiment=quickstart", "loss.lmbda=0.004"]``.
        config_name: primary config (``train``, ``eval``).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(f"config folder not found: {CONFIG_DIR}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def to_container(node: DictConfig) -> dict:
    """A resolved plain-dict copy of a config node (for checkpoints and logs)."""
    return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)  # type: ignore[return-value]


__all__ = ["CONFIG_DIR", "compose", "register_configs", "to_container"]
