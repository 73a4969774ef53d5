"""Codec checkpoints: taco-plus's own format and official TACO checkpoints.

A taco-plus checkpoint is a ``torch.save``'d dict of plain containers and tensors,
readable with ``torch.load(..., weights_only=True)``::

    {
      "format": "taco-plus", "format_version": 1,
      "model_config": {...},         # Hydra node: {"_target_": "taco_plus.models.TACO", ...}
      "text_encoder_config": {...},  # Hydra node for the caption encoder used at encode time
      "weighting_config": {...} | None,
      "state_dict": {...},           # model weights (entropy-coder CDFs included once updated)
      ...                            # training state (optimisers, step, RNG) when written by the trainer
    }

An official TACO checkpoint (a bare or wrapped state dict) is recognised by its keys
and gets the official text pipeline: CLIP ViT-B/32 (OpenAI weights), 38 tokens,
end-of-text padding, padding attended.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from taco_plus.atomic import atomic_writer

FORMAT = "taco-plus"
FORMAT_VERSION = 1

OFFICIAL_TEXT_ENCODER = {
    "_target_": "taco_plus.text.ClipTextEncoder",
    "model_name": "ViT-B-32",
    "pretrained": "openai",
    "max_tokens": 38,
    "pad": "eot",
}


@dataclass
class LoadedCodec:
    """A model ready for coding, with the configs needed to encode its text."""

    model: torch.nn.Module
    text_encoder_config: dict[str, Any]
    weighting_config: Optional[dict[str, Any]] = None
    source: str = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename.

    A crash mid-write leaves the previous file intact.
    """
    with atomic_writer(path, "wb") as f:
        torch.save(obj, f)


def save_codec(
    path: str | os.PathLike,
    model: torch.nn.Module,
    model_config: Mapping[str, Any],
    text_encoder_config: Mapping[str, Any],
    weighting_config: Optional[Mapping[str, Any]] = None,
    **extra: Any,
) -> None:
    """Writes a taco-plus checkpoint atomically. Configs must be plain containers."""
    atomic_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_config": dict(model_config),
            "text_encoder_config": dict(text_encoder_config),
            "weighting_config": None if weighting_config is None else dict(weighting_config),
            "state_dict": model.state_dict(),
            **extra,
        },
        path,
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated zip, unsafe globals ...
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err


def build_model(model_config: Mapping[str, Any]) -> torch.nn.Module:
    """Instantiates a model from its Hydra node."""
    from hydra.utils import instantiate

    return instantiate(dict(model_config), _convert_="all")


def load_codec(path: str | os.PathLike, update_cdfs: bool = True) -> LoadedCodec:
    """Loads a taco-plus or official TACO checkpoint in eval mode, CDFs updated."""
    from taco_plus.models import TACO

    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") == FORMAT:
        version = checkpoint.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported taco-plus checkpoint version {version}")
        model = build_model(checkpoint["model_config"])
        model.load_state_dict(checkpoint["state_dict"])
        loaded = LoadedCodec(
            model,
            dict(checkpoint["text_encoder_config"]),
            checkpoint.get("weighting_config"),
            FORMAT,
            {k: v for k, v in checkpoint.items() if k not in ("state_dict",)},
        )
    else:
        loaded = LoadedCodec(TACO.from_official(checkpoint), dict(OFFICIAL_TEXT_ENCODER), None, "official")
    loaded.model.eval()
    if update_cdfs:
        loaded.model.update(force=True)
    return loaded
