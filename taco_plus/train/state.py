"""Training state in checkpoint form: RNG states, scheduler state, initial weights.

Checkpoints are read with ``torch.load(weights_only=True)``, which accepts only plain
containers, numbers, strings and tensors. Everything the trainer saves is converted
to those: the numpy RNG key to an int64 tensor, Python's ``random`` state to a list,
MultiStepLR's ``Counter`` of milestones to a dict.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seeds Python's ``random``, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as plain containers and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def scheduler_state(scheduler: Any) -> dict[str, Any]:
    """``scheduler.state_dict()`` with ``Counter``s turned into dicts (weights_only-safe)."""
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in scheduler.state_dict().items()}


def load_scheduler_state(scheduler: Any, state: Mapping[str, Any]) -> None:
    """Inverse of :func:`scheduler_state`."""
    current = scheduler.state_dict()
    scheduler.load_state_dict(
        {k: Counter(v) if isinstance(current.get(k), Counter) else v for k, v in state.items()}
    )


def load_initial_weights(model: nn.Module, path: str | Path) -> None:
    """Loads an official TACO or taco-plus checkpoint into ``model`` for fine-tuning.

    The backbone must match exactly; the adapter (``model.is_adapter_key``) may differ
    (fine-tuning a Linformer adapter from an official full-attention checkpoint, or the
    reverse): adapter keys the checkpoint lacks keep their fresh initialisation,
    adapter keys the model lacks are ignored, and both are logged. Any other mismatch
    is an error.
    """
    from taco_plus.checkpoint import FORMAT, read_checkpoint
    from taco_plus.models.official import normalise_state_dict

    checkpoint = read_checkpoint(path)
    official = checkpoint.get("format") != FORMAT
    state = normalise_state_dict(checkpoint) if official else checkpoint["state_dict"]
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"cannot initialise the model from {path}: {err}") from err
    foreign_missing = [k for k in result.missing_keys if not model.is_adapter_key(k)]
    foreign_unexpected = [k for k in result.unexpected_keys if not model.is_adapter_key(k)]
    if foreign_missing or foreign_unexpected:
        raise ValueError(
            f"{path} does not fit this model outside the text adapter: missing "
            f"{foreign_missing[:5]}{'...' if len(foreign_missing) > 5 else ''}, unexpected "
            f"{foreign_unexpected[:5]}{'...' if len(foreign_unexpected) > 5 else ''}"
        )
    kind = "official TACO" if official else "taco-plus"
    logger.info("initialised from %s checkpoint %s", kind, path)
    if result.missing_keys:
        logger.warning("%d adapter tensors not in %s keep their initialisation, e.g. %s",
                       len(result.missing_keys), path, result.missing_keys[:3])
    if result.unexpected_keys:
        logger.warning("%d adapter tensors of %s do not exist in this model and are ignored, e.g. %s",
                       len(result.unexpected_keys), path, result.unexpected_keys[:3])
