"""Loading frozen open_clip models: one place for where CLIP weights come from.

Used by the text encoder (text tower) and by the joint CLIP loss (image and text towers).
``pretrained`` may be

* an open_clip tag (``"openai"``, ``"laion2b_s34b_b79k"``, ...). The weights are looked
  up in the local caches first (Hugging Face hub cache, open_clip's URL cache) and loaded
  from there without touching the network. Only when they are missing is open_clip asked
  to download them, and only if the hub answers: offline (``HF_HUB_OFFLINE=1``, or the hub
  unreachable) :class:`ClipWeightsUnavailableError` is raised at once, saying what to
  download and where to put it. Without this check open_clip retries for ~46 s.
* a local weights file (``.safetensors``, ``.bin``, ``.pt``, ``.pth``), loaded with
  ``weights_only=True``;
* a local folder (a path, or ``"local-dir:/path"``): with an ``open_clip_config.json``
  inside (a downloaded hub repo) the folder's config and weights are used as open_clip's
  ``local-dir:`` schema does; otherwise the folder's checkpoint is loaded into
  ``model_name``'s architecture;
* ``None`` or ``"random"``: a random-init, UNTRAINED model, initialised from a fixed seed
  independently of the global RNG state (tests and offline demos only).

OpenAI's CLIP weights were trained with QuickGELU; the tag records it, a downloaded hub
repo's ``open_clip_config.json`` records it, and a bare file needs ``quick_gelu=True``.
The project's own configs (``model_configs/*.json``, e.g. ``taco-tiny-clip``) are
registered with open_clip on first use.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import open_clip
import torch
from torch import nn

from taco_plus.text.hub_access import (
    PREFERRED_WEIGHTS,
    ClipWeightsUnavailableError,
    cached_hub_snapshot,
    cached_tag_file,
    download_hint,
    hub_url,
    hub_weight_names,
    require_online,
    split_hub,
    url_download_hint,
)

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).with_name("model_configs")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

@dataclass(frozen=True)
class ClipSource:
    """Where a loaded CLIP model's weights came from (``model.taco_source``).

    Args:
        model_name: open_clip architecture name (or ``local-dir:``/``hf-hub:`` id).
        pretrained: the ``pretrained`` value asked for.
        checkpoint: the weights file actually loaded, or None.
        untrained: True for a random-init model.
        seed: the initialisation seed of a random-init model.
    """

    model_name: str
    pretrained: Optional[str]
    checkpoint: Optional[str]
    untrained: bool
    seed: Optional[int] = None

    def describe(self) -> str:
        if self.untrained:
            return f"UNTRAINED random-init {self.model_name} (seed {self.seed})"
        where = f" from {self.checkpoint}" if self.checkpoint else ""
        return f"{self.model_name} pretrained={self.pretrained!r}{where}"


def register_model_configs() -> None:
    """Register the project's open_clip configs (``model_configs/*.json``) once."""
    names = {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")}
    if not names <= set(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def clip_source(model: nn.Module) -> Optional[ClipSource]:
    """The :class:`ClipSource` recorded by :func:`load_clip`, or None."""
    return getattr(model, "taco_source", None)


def load_clip(
    model_name: str = "ViT-B-32",
    pretrained: Optional[str] = "openai",
    device: Union[str, torch.device] = "cpu",
    *,
    quick_gelu: Optional[bool] = None,
    cache_dir: Optional[str] = None,
    seed: int = 0,
) -> nn.Module:
    """Load a frozen open_clip model (eval mode, no parameter requires grad).

    Args:
        model_name: open_clip architecture (``"ViT-B-32"``, ``"taco-tiny-clip"``), or an
            ``"hf-hub:org/repo"`` / ``"local-dir:/path"`` id (``pretrained`` then ignored).
        pretrained: tag, weights file, folder, or None/``"random"`` (see module docstring).
        device: device to place the model on.
        quick_gelu: force QuickGELU on (True) or off (False); None takes it from the tag,
            the folder's ``open_clip_config.json``, or the architecture config.
        cache_dir: Hugging Face / open_clip cache directory (default: their defaults).
        seed: initialisation seed of a random-init model.
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    if pretrained is not None and not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be a str, a path or None, got {type(pretrained).__name__}")
    register_model_configs()
    pretrained = None if pretrained is None else os.fspath(pretrained)
    kwargs: Dict[str, Any] = dict(device=device, cache_dir=cache_dir, weights_only=True)

    if model_name.startswith(("local-dir:", "hf-hub:")):
        pretrained = None  # the id names both config and weights, as in open_clip
        model, checkpoint = _load_schema(model_name, quick_gelu, kwargs)
    elif open_clip.get_model_config(model_name) is None:
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    elif pretrained in (None, "", "random"):
        model = _random_init(model_name, quick_gelu, seed, kwargs)
        checkpoint = None
    elif pretrained.startswith("local-dir:") or os.path.isdir(pretrained):
        model, checkpoint = _load_folder(model_name, pretrained.removeprefix("local-dir:"), quick_gelu, kwargs)
    elif os.path.isfile(pretrained) or pretrained.endswith(WEIGHT_SUFFIXES) or os.sep in pretrained:
        model = _load_file(model_name, pretrained, quick_gelu, kwargs)
        checkpoint = pretrained
    else:
        model, checkpoint = _load_tag(model_name, pretrained, quick_gelu, kwargs)

    model.eval()
    model.requires_grad_(False)
    untrained = checkpoint is None
    model.taco_source = ClipSource(model_name, pretrained, checkpoint, untrained, seed if untrained else None)
    return model


def _model_kwargs(quick_gelu: Optional[bool]) -> Dict[str, Any]:
    # A model kwarg overrides the architecture config in both directions.
    return {} if quick_gelu is None else {"quick_gelu": bool(quick_gelu)}


def _random_init(model_name: str, quick_gelu: Optional[bool], seed: int, kwargs: Dict[str, Any]) -> nn.Module:
    logger.warning(
        "UNTRAINED random-init CLIP %r (seed %d): for tests and offline demos only, "
        "its text features carry no meaning", model_name, seed,
    )
    device = kwargs.pop("device")
    # Fork the CPU RNG so the init depends only on `seed`, not on what ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(
            model_name, pretrained=None, device="cpu", pretrained_image=False, pretrained_text=False,
            **kwargs, **_model_kwargs(quick_gelu),
        )
    return model.to(device)


def _load_file(model_name: str, path: str, quick_gelu: Optional[bool], kwargs: Dict[str, Any],
               preprocess: Optional[Dict[str, Any]] = None) -> nn.Module:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP weights file not found: {path}")
    if not path.endswith(WEIGHT_SUFFIXES):
        raise ValueError(f"CLIP weights file must end with one of {WEIGHT_SUFFIXES}: {path}")
    if quick_gelu is None:
        quick_gelu = _sibling_quick_gelu(Path(path))
    return open_clip.create_model(
        model_name, pretrained=path, require_pretrained=True, force_preprocess_cfg=preprocess,
        **kwargs, **_model_kwargs(quick_gelu),
    )


def _folder_model_cfg(folder: Path) -> Optional[Dict[str, Any]]:
    """``model_cfg`` of a folder's ``open_clip_config.json`` (a downloaded hub repo), if any."""
    config = folder / "open_clip_config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_cfg")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"unreadable open_clip config {config}: {err}") from err


def _sibling_quick_gelu(path: Path) -> Optional[bool]:
    """QuickGELU flag from an ``open_clip_config.json`` next to a weights file."""
    return (_folder_model_cfg(path.parent) or {}).get("quick_gelu")


def _load_folder(model_name: str, folder: str, quick_gelu: Optional[bool], kwargs: Dict[str, Any]):
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"CLIP weights folder not found: {root}")
    if _folder_model_cfg(root) is not None:
        logger.info("loading CLIP from %s with the folder's own open_clip_config.json", root)
        return _load_schema(f"local-dir:{root}", quick_gelu, kwargs)
    found = [root / n for n in PREFERRED_WEIGHTS if (root / n).is_file()]
    found += sorted(p for p in root.iterdir() if p.suffix in WEIGHT_SUFFIXES and p not in found)
    if not found:
        raise FileNotFoundError(f"no CLIP weights ({', '.join(WEIGHT_SUFFIXES)}) in folder {root}")
    return _load_file(model_name, str(found[0]), quick_gelu, kwargs), str(found[0])


def _load_schema(model_id: str, quick_gelu: Optional[bool], kwargs: Dict[str, Any]):
    if model_id.startswith("local-dir:"):
        root = Path(model_id.removeprefix("local-dir:"))
        if _folder_model_cfg(root) is None:
            raise FileNotFoundError(f"{model_id}: folder must hold open_clip_config.json (with model_cfg) and the weights")
        model = open_clip.create_model(model_id, require_pretrained=True, **kwargs, **_model_kwargs(quick_gelu))
        return model, str(root)
    repo = model_id.removeprefix("hf-hub:")
    snapshot = cached_hub_snapshot(repo, kwargs["cache_dir"])
    if snapshot is not None:  # everything cached: load it without asking the hub
        return _load_schema(f"local-dir:{snapshot}", quick_gelu, kwargs)
    hint = download_hint(model_id, None, repo, ["open_clip_model.safetensors"])
    require_online(hint, hub_url(repo))
    try:
        model = open_clip.create_model(model_id, require_pretrained=True, **kwargs, **_model_kwargs(quick_gelu))
    except Exception as err:  # network failures surface as assorted exception types
        raise ClipWeightsUnavailableError(f"{err}\n{hint}") from err
    return model, model_id


def _load_tag(model_name: str, tag: str, quick_gelu: Optional[bool], kwargs: Dict[str, Any]):
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        raise ValueError(
            f"pretrained={tag!r} is neither an existing file or folder nor an open_clip tag for "
            f"{model_name!r}; tags: {open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    if quick_gelu is None:
        quick_gelu = cfg.get("quick_gelu", False)
    preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    cached = cached_tag_file(cfg, kwargs["cache_dir"])
    if cached is not None:
        return _load_file(model_name, cached, quick_gelu, kwargs, preprocess), cached

    if cfg.get("hf_hub"):
        repo, filename = split_hub(cfg["hf_hub"])
        hint = download_hint(model_name, tag, repo, hub_weight_names(filename), quick_gelu)
        require_online(hint, hub_url(repo))
    else:
        hint = url_download_hint(cfg.get("url", ""), kwargs["cache_dir"], quick_gelu)
        require_online(hint, cfg.get("url", ""))
    try:
        model = open_clip.create_model(
            model_name, pretrained=tag, require_pretrained=True, **kwargs, **_model_kwargs(quick_gelu)
        )
    except Exception as err:  # network failures surface as assorted exception types
        raise ClipWeightsUnavailableError(f"could not download {model_name} pretrained={tag!r}: {err}\n{hint}") from err
    return model, tag
