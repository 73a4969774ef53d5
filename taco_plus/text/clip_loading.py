"""Loading frozen open_clip models: the one place where the CLIP weights of the text encoder, the
joint loss and the CLIP score come from (docs/text.md, "Where the weights come from")."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import open_clip
import torch
from torch import nn

from taco_plus.text.tokenizer import LONG_CONTEXT_LENGTH

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).with_name("model_configs")
TINY_CLIP_NAME = "taco-tiny-clip"  # model_configs/taco-tiny-clip.json: CLIP's interfaces at toy sizes
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# What `hf download` of an open_clip repo leaves, in open_clip's order of preference.
HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class ClipWeightsUnavailableError(RuntimeError):
    """Pretrained CLIP weights are not on this machine and cannot be downloaded."""


@dataclass(frozen=True)
class ClipSource:
    """Where a loaded CLIP model's weights came from (``model.taco_source``)."""

    model_name: str
    pretrained: Optional[str]
    checkpoint: Optional[str] = None  # the local weights file or folder loaded
    seed: Optional[int] = None  # the initialisation seed of a random-init model

    @property
    def untrained(self) -> bool:
        return self.seed is not None

    def describe(self) -> str:
        if self.untrained:
            return f"UNTRAINED random-init {self.model_name} (seed {self.seed})"
        return f"{self.model_name} pretrained={self.pretrained!r}" + (f" from {self.checkpoint}" if self.checkpoint else "")


class _OnceFilter(logging.Filter):
    """Drops repeats of open_clip's INFO lines (the text encoder and the joint loss each create a CLIP)."""

    seen: set = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or f"{os.sep}open_clip{os.sep}" not in record.pathname:
            return True
        repeat = record.getMessage() in self.seen
        self.seen.add(record.getMessage())
        return not repeat


def register_model_configs() -> None:  # the project's open_clip configs, model_configs/*.json, once
    if not {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")} <= set(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def clip_source(model: nn.Module) -> Optional[ClipSource]:  # recorded by load_clip, or None
    return getattr(model, "taco_source", None)


def load_clip(model_name: str = "ViT-B-32", pretrained: Optional[str] = "openai",
              device: Union[str, torch.device] = "cpu", *, quick_gelu: Optional[bool] = None,
              cache_dir: Optional[str] = None, seed: int = 0) -> nn.Module:
    """Loads a frozen open_clip model with the weights ``pretrained`` names: a tag, weights file, folder, or
    None/``"random"`` (random init from ``seed``); docs/text.md, "Where the weights come from"."""
    register_model_configs()
    if not any(isinstance(f, _OnceFilter) for f in logging.getLogger().filters):
        logging.getLogger().addFilter(_OnceFilter())
    pretrained = None if pretrained in (None, "", "random") else os.fspath(pretrained)
    kwargs: dict[str, Any] = dict(cache_dir=cache_dir, weights_only=True)
    if quick_gelu is not None:  # a model kwarg overrides the architecture config both ways
        kwargs["quick_gelu"] = bool(quick_gelu)
    source = ClipSource(model_name, pretrained)
    if model_name.startswith("hf-hub:"):
        source = ClipSource(model_name, None)
        model = _create(model_name, None, kwargs, _hub_hint(model_name.removeprefix("hf-hub:"), model_name))
    elif model_name.startswith("local-dir:"):
        folder = model_name.removeprefix("local-dir:")
        if _folder_model_cfg(Path(folder)) is None:
            raise FileNotFoundError(f"{model_name}: the folder must hold open_clip_config.json and the weights")
        model = open_clip.create_model(model_name, require_pretrained=True, **kwargs)
        source = ClipSource(model_name, None, folder)
    elif open_clip.get_model_config(model_name) is None:
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    elif pretrained is None:
        logger.warning("UNTRAINED random-init CLIP %r (seed %d): for tests and offline demos only, "
                       "its text features carry no meaning", model_name, seed)
        with torch.random.fork_rng(devices=[]):  # the init depends on `seed` only
            torch.manual_seed(seed)
            model = open_clip.create_model(model_name, pretrained=None, **kwargs)
        source = ClipSource(model_name, None, seed=seed)
    elif open_clip.get_model_config(model_name).get("text_cfg", {}).get("context_length") == LONG_CONTEXT_LENGTH:
        # Long-CLIP's 248 text positions: a release file or Hugging Face folder (taco_plus.text.longclip)
        from taco_plus.text.longclip import load_longclip

        model, checkpoint = load_longclip(model_name, pretrained, kwargs)
        source = ClipSource(model_name, pretrained, checkpoint)
    elif os.path.exists(pretrained.removeprefix("local-dir:")) or pretrained.endswith(WEIGHT_SUFFIXES) \
            or os.sep in pretrained:
        model, checkpoint = _load_local(model_name, Path(pretrained.removeprefix("local-dir:")), kwargs)
        source = ClipSource(model_name, pretrained, checkpoint)
    else:
        model = _load_tag(model_name, pretrained, kwargs)
    model = model.to(device).eval().requires_grad_(False)
    model.taco_source = source
    return model


def tiny_clip(seed: int = 0, device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The frozen, random-init ``taco-tiny-clip`` of tests and the offline demo: its features mean nothing."""
    return load_clip(TINY_CLIP_NAME, pretrained=None, device=device, seed=seed)


def _folder_model_cfg(folder: Path) -> Optional[dict[str, Any]]:
    """``model_cfg`` of a folder's ``open_clip_config.json`` (a downloaded hub repo), if any."""
    config = folder / "open_clip_config.json"
    return json.loads(config.read_text(encoding="utf-8")).get("model_cfg") if config.is_file() else None


def _load_local(model_name: str, path: Path, kwargs: dict[str, Any]) -> tuple[nn.Module, str]:
    """A weights file, or a folder (with its own ``open_clip_config.json``, or only weights)."""
    if path.is_dir():
        if _folder_model_cfg(path) is not None:
            return open_clip.create_model(f"local-dir:{path}", require_pretrained=True, **kwargs), str(path)
        found = [path / n for n in HUB_WEIGHTS if (path / n).is_file()]
        found += sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        if not found:
            raise FileNotFoundError(f"no CLIP weights ({', '.join(WEIGHT_SUFFIXES)}) in folder {path}")
        path = found[0]
    elif not path.is_file():
        raise FileNotFoundError(f"CLIP weights: no such file or folder: {path}")
    if not path.name.endswith(WEIGHT_SUFFIXES):
        raise ValueError(f"CLIP weights file must end with one of {WEIGHT_SUFFIXES}: {path}")
    # QuickGELU from an open_clip_config.json beside the file, unless given.
    sibling = (_folder_model_cfg(path.parent) or {}).get("quick_gelu")
    if "quick_gelu" not in kwargs and sibling is not None:
        kwargs = {**kwargs, "quick_gelu": sibling}
    return open_clip.create_model(model_name, pretrained=str(path), require_pretrained=True, **kwargs), str(path)


def _load_tag(model_name: str, tag: str, kwargs: dict[str, Any]) -> nn.Module:
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        raise ValueError(f"pretrained={tag!r} is neither an existing file or folder nor an open_clip tag for "
                         f"{model_name!r}; tags: {open_clip.list_pretrained_tags_by_model(model_name)}")
    quick_gelu = kwargs.get("quick_gelu", cfg.get("quick_gelu", False))
    if quick_gelu and "quick_gelu" not in kwargs:  # the tag's activation (open_clip only warns)
        kwargs = {**kwargs, "force_quick_gelu": True}
    if cfg.get("hf_hub"):  # "org/repo/" or "org/repo/file"
        hint = _hub_hint(os.path.split(cfg["hf_hub"])[0], f"{model_name!r}, pretrained={tag!r}", quick_gelu)
        if (model_name, tag) == ("ViT-B-32", "openai"):
            hint += "\nWith network access, `taco-plus download clip` fills that cache."
    else:
        hint = (f"Download {cfg['url']} on a machine with internet access and pass its path as "
                f"pretrained='/path/to/{os.path.basename(cfg['url'])}'{' with quick_gelu=True' if quick_gelu else ''}.")
    return _create(model_name, tag, kwargs, hint)


def _create(model_name: str, tag: Optional[str], kwargs: dict[str, Any], hint: str) -> nn.Module:
    """open_clip's download-and-load, its failure turned into the message that says what to do."""
    try:
        return open_clip.create_model(model_name, pretrained=tag, require_pretrained=True, **kwargs)
    except RuntimeError as err:  # open_clip wraps hub/network failures in RuntimeError
        raise ClipWeightsUnavailableError(f"{err}\n{hint}") from err


def _hub_hint(repo: str, what: str, quick_gelu: bool = False) -> str:
    """Where to get a hub repo's weights, and how to point ``load_clip`` at them."""
    cache = "models--" + repo.replace("/", "--")
    return (f"CLIP weights for {what} are not on this machine and cannot be downloaded now "
            f"(HF_HUB_OFFLINE=1, or no network). On a machine with internet access run\n"
            f"    hf download {repo} {HUB_WEIGHTS[0]} open_clip_config.json --local-dir /path/to/clip\n"
            f"copy the folder here and pass pretrained='/path/to/clip' (model_name='local-dir:/path/to/clip' for an "
            f"hf-hub: id); a file alone: pretrained='/path/to/clip/{HUB_WEIGHTS[0]}'"
            f"{', quick_gelu=True' if quick_gelu else ''} (older repos hold {HUB_WEIGHTS[1]}). Or download without "
            f"--local-dir and copy ~/.cache/huggingface/hub/{cache} into this machine's Hugging Face cache.")
