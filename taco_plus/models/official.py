"""Reading official TACO checkpoints (the official model's ``state_dict``: 441 entries for N=192, M=320,
groups [16, 16, 32, 64, 192], CLIP width 512): key normalisation and size inference."""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def normalise_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """Unwraps ``{"state_dict": ...}``-style checkpoints and strips DDP ``module.`` prefixes."""
    state = checkpoint
    for key in _WRAPPER_KEYS:
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not any(isinstance(v, Tensor) for v in state.values()):
        raise ValueError("checkpoint holds no tensors: not a TACO state dict")
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    if "g_a.analysis_transform.0.weight" not in out:
        raise ValueError("not a TACO checkpoint: key 'g_a.analysis_transform.0.weight' is missing")
    return out


def infer_official_config(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Constructor arguments (N, M, slice_ch, text_dim) read off tensor shapes; the head count is not stored
    (the official code always uses 8)."""
    N = state_dict["g_a.analysis_transform.0.weight"].shape[0]
    M = state_dict["h_a.reduction.0.weight"].shape[1]
    text_dim = state_dict["g_a.analysis_transform.8.text_feature_dim_proj.weight"].shape[1]
    slice_ch = []
    while f"local_context.{len(slice_ch)}.weight" in state_dict:
        slice_ch.append(state_dict[f"local_context.{len(slice_ch)}.weight"].shape[1])
    if sum(slice_ch) != M:
        raise ValueError(f"inferred channel groups {slice_ch} do not sum to M={M}")
    return {"N": N, "M": M, "slice_ch": slice_ch, "text_dim": text_dim, "num_heads": 8}
