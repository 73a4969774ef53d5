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

Loading is safe for files of unknown origin: the pickle cannot run code
(``weights_only=True``) and the stored configs are checked against the project's own
components before anything is instantiated (:mod:`taco_plus.stored_config`). A file
that is not a checkpoint, is damaged, or needs code to load gets a
:class:`CheckpointError` that says which.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from taco_plus.atomic import atomic_writer, remove_stale_temporaries
from taco_plus.stored_config import check_stored_config, instantiate_stored

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


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint (the message says why)."""


class _ErrorKeepingFile:
    """Keeps the ``OSError`` of a failed write: torch.save's C++ writer swallows it when
    it writes tensor data and fails later with "unexpected pos ..." (a full disk)."""

    def __init__(self, f: Any) -> None:
        self._f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self._f.flush()


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename.

    A crash mid-write leaves the previous file intact; the temporary a killed writer
    left behind is removed first. A failed write raises its ``OSError`` (ENOSPC, EFBIG).
    """
    remove_stale_temporaries(path)
    with atomic_writer(path, "wb") as f:
        out = _ErrorKeepingFile(f)
        try:
            torch.save(obj, out)
        except RuntimeError as err:
            if out.error is None:
                raise
            raise out.error from err


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



def _written_by_torch(head: bytes) -> bool:
    """A zip archive (PyTorch >= 1.6) or the legacy format's pickled magic number (a
    10-byte long, after the pickle protocol opcode)."""
    return head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[2:4] == b"\x8a\x0a")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with path.open("rb") as f:
        head = f.read(4)
    if not _written_by_torch(head):
        raise CheckpointError(f"{path} is not a checkpoint (not a file written by torch.save)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unsafe globals, truncated zip, foreign zip ...
        unsafe = re.search(r"GLOBAL (\S+)", str(err))
        if unsafe:
            raise CheckpointError(
                f"{path} is refused: loading it would run code ({unsafe.group(1)}); checkpoints are "
                "read with weights_only=True (tensors and plain containers only)"
            ) from err
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is damaged or not a checkpoint: {reason}") from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(checkpoint).__name__}, not a dict")
    return checkpoint


def build_model(model_config: Mapping[str, Any]) -> torch.nn.Module:
    """Instantiates a model from its (checked) Hydra node."""
    model = instantiate_stored(model_config, "model_config")
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError(f"model_config builds {type(model).__name__}, not a model")
    return model


def load_codec(path: str | os.PathLike, update_cdfs: bool = True) -> LoadedCodec:
    """Loads a taco-plus or official TACO checkpoint in eval mode, CDFs updated."""
    from taco_plus.models import TACO

    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") == FORMAT:
        version = checkpoint.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: unsupported taco-plus checkpoint version {version}")
        # Every stored config is checked before any of them is instantiated.
        check_stored_config(checkpoint.get("model_config"), "model_config", str(path))
        check_stored_config(checkpoint.get("text_encoder_config"), "text_encoder_config", str(path))
        check_stored_config(checkpoint.get("weighting_config"), "weighting_config", str(path), optional=True)
        model = build_model(checkpoint["model_config"])
        try:
            model.load_state_dict(checkpoint["state_dict"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"{path}: its weights do not fit its model config: {err}") from err
        loaded = LoadedCodec(
            model,
            dict(checkpoint["text_encoder_config"]),
            checkpoint.get("weighting_config"),
            FORMAT,
            {k: v for k, v in checkpoint.items() if k not in ("state_dict",)},
        )
    else:
        try:
            model = TACO.from_official(checkpoint)
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"{path} is neither a taco-plus nor an official TACO checkpoint: {err}") from err
        loaded = LoadedCodec(model, dict(OFFICIAL_TEXT_ENCODER), None, "official")
    loaded.model.eval()
    if update_cdfs:
        loaded.model.update(force=True)
    return loaded
