"""Long-CLIP weights (Zhang et al., "Long-CLIP: Unlocking the Long-Text Capability of CLIP", ECCV 2024) as an
open_clip ``CLIP`` with 248 text positions, from a release file or a Hugging Face folder (docs/text.md)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import Tensor, nn

from taco_plus.text.clip_loading import ClipWeightsUnavailableError
from taco_plus.text.tokenizer import LONG_CONTEXT_LENGTH

KEEP = 20  # positions Long-CLIP keeps from CLIP: rows [0, 20) of positional_embedding
RELEASE = "release"  # pretrained tag: the released checkpoint, from the Hugging Face cache
# open_clip name -> (Hugging Face repo, file, `taco-plus download` name)
RELEASES = {"LongCLIP-B": ("BeichenZhang/LongCLIP-B", "longclip-B.pt", "longclip-b"),
            "LongCLIP-L": ("BeichenZhang/LongCLIP-L", "longclip-L.pt", "longclip-l")}
# transformers' CLIPModel key pieces -> open_clip's, applied in order
HF_RENAMES = ((r"^text_model\.embeddings\.token_embedding", "token_embedding"),
              (r"^text_model\.embeddings\.position_embedding\.weight", "positional_embedding"),
              (r"^text_model\.final_layer_norm", "ln_final"),
              (r"^text_model\.encoder\.layers", "transformer.resblocks"),
              (r"^vision_model\.embeddings\.class_embedding", "visual.class_embedding"),
              (r"^vision_model\.embeddings\.patch_embedding", "visual.conv1"),
              (r"^vision_model\.embeddings\.position_embedding\.weight", "visual.positional_embedding"),
              (r"^vision_model\.pre_layrnorm", "visual.ln_pre"), (r"^vision_model\.post_layernorm", "visual.ln_post"),
              (r"^vision_model\.encoder\.layers", "visual.transformer.resblocks"),
              (r"\.self_attn\.out_proj", ".attn.out_proj"), (r"\.layer_norm1", ".ln_1"), (r"\.layer_norm2", ".ln_2"),
              (r"\.fc1", ".c_fc"), (r"\.fc2", ".c_proj"))


def weights_hint(model_name: str) -> str:
    repo, file, name = RELEASES.get(model_name, ("BeichenZhang/LongCLIP-B", "longclip-B.pt", "longclip-b"))
    return (f"On a machine with internet access run `taco-plus download {name}` (it puts {repo}'s {file} into the "
            f"Hugging Face cache, ~/.cache/huggingface/hub) and copy that cache here, or pass the file or a Hugging "
            f"Face CLIPModel folder: text_encoder.pretrained=/path/to/{file} loss.joint.pretrained=/path/to/{file}")


def longclip_weights(model_name: str, pretrained: str, cache_dir: str | None = None) -> Path:
    """The file or folder ``pretrained`` names: a path, or ``"release"``: the released one (Hugging Face cache)."""
    if pretrained != RELEASE:
        if not os.path.exists(pretrained):
            raise FileNotFoundError(f"Long-CLIP weights: no such file or folder: {pretrained}. "
                                    + weights_hint(model_name))
        return Path(pretrained)
    if model_name not in RELEASES:
        raise ValueError(f"{model_name} has no released Long-CLIP checkpoint: pass a file or folder as pretrained")
    from huggingface_hub import hf_hub_download

    repo, file, _ = RELEASES[model_name]
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    try:
        return Path(hf_hub_download(repo, file, cache_dir=cache_dir, local_files_only=offline))
    except Exception as err:  # noqa: BLE001 - missing file, offline, network: one message that says what to do
        raise ClipWeightsUnavailableError(f"{model_name} weights ({repo}, {file}) are not on this machine and "
                                          f"cannot be downloaded now ({type(err).__name__}). "
                                          + weights_hint(model_name)) from err


def from_release(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """A release state dict with Long-CLIP's two positional tables as the one its model adds."""
    state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    if "positional_embedding_res" not in state:
        raise ValueError(f"{path} has no positional_embedding_res: not a Long-CLIP checkpoint (longclip-B.pt, -L.pt)")
    res = state.pop("positional_embedding_res")
    state["positional_embedding"] = torch.cat([state["positional_embedding"][:KEEP], res[KEEP:]])  # (248, width)
    return state


def from_hugging_face(folder: Path) -> dict[str, Tensor]:
    """A transformers ``CLIPModel`` folder with 248 text positions, in open_clip's key names."""
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    text, vision = config.get("text_config", {}), config.get("vision_config", {})
    positions = text.get("max_position_embeddings", 77)  # transformers writes only non-default values
    acts = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
    if positions != LONG_CONTEXT_LENGTH or acts != {"quick_gelu"}:
        raise ValueError(f"{folder} is not a Hugging Face CLIPModel folder of a Long-CLIP model (config.json: "
                         f"{positions} text positions, activations {sorted(acts)}; 248 and quick_gelu needed)")
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(folder / "model.safetensors")
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin")
    out, qkv = {}, {}
    for key, value in state.items():
        if key in ("text_projection.weight", "visual_projection.weight"):  # nn.Linear -> (width, embed_dim) matrix
            out["text_projection" if key[0] == "t" else "visual.proj"] = value.t()
            continue
        for pattern, new in HF_RENAMES:
            key = re.sub(pattern, new, key)
        if m := re.fullmatch(r"(.*)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            qkv.setdefault(f"{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = value
        elif not key.endswith("position_ids"):
            out[key] = value
    return out | {key: torch.cat([p["q"], p["k"], p["v"]]) for key, p in qkv.items()}


def load_longclip(model_name: str, pretrained: str, kwargs: dict[str, Any]) -> tuple[nn.Module, str]:
    """``model_name``'s open_clip model with the Long-CLIP weights ``pretrained`` names, and their path."""
    path = longclip_weights(model_name, pretrained, kwargs.get("cache_dir"))
    try:
        state = from_hugging_face(path) if path.is_dir() else \
            from_release(torch.load(path, map_location="cpu", weights_only=True), path)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # noqa: BLE001 - not a checkpoint, truncated, an unsafe pickle
        raise ValueError(f"{path}: not a readable Long-CLIP checkpoint ({str(err).splitlines()[0]})") from None
    model = open_clip.create_model(model_name, pretrained=None, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the {model_name} architecture ({' '.join(str(err).split())[:300]}): "
                         "LongCLIP-B takes longclip-B.pt, LongCLIP-L longclip-L.pt") from None
    return model, str(path)
