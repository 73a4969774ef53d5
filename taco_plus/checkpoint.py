"""Codec checkpoints: taco-plus's own format and official TACO checkpoints (docs/training.md).

A taco-plus checkpoint is a ``torch.save``'d dict of plain containers and tensors: ``format``,
``format_version``, the resolved nodes ``model_config``, ``text_encoder_config`` and
``weighting_config``, ``state_dict`` and the trainer's state; anything else with TACO's keys is an
official checkpoint. A checkpoint is data: :func:`check_stored_config` refuses, before anything is
built, a stored config that ``instantiate`` would turn into foreign code or that does not fit its
constructor's schema; :func:`check_weights` compares the weights with the model built on the meta device.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import torch

from taco_plus.atomic import atomic_write, remove_stale_temporaries

FORMAT = "taco-plus"
FORMAT_VERSION = 1
OFFICIAL_TEXT_ENCODER = {"_target_": "taco_plus.text.ClipTextEncoder", "model_name": "ViT-B-32",
                         "pretrained": "openai", "max_tokens": 38, "pad": "eot"}
# Groups whose nodes checkpoints store (the model config embeds the attention node).
CHECKPOINT_GROUPS = ("model", "attention", "text_encoder", "weighting")
# Hydra's instantiation keys: not constructor arguments, so not in a schema.
HYDRA_KEYS = ("_partial_", "_args_", "_recursive_", "_convert_")


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint (the message says why)."""


class UntrustedConfigError(ValueError):
    """A stored config names something that is not a taco-plus component."""


@dataclass
class LoadedCodec:
    """A model ready for coding, with the configs needed to encode its text."""

    model: torch.nn.Module
    text_encoder_config: dict[str, Any]
    weighting_config: Optional[dict[str, Any]] = None
    source: str = FORMAT


# ------------------------------------------------------------------ stored configs
def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, value) of a nested dict/list, the root included (iterative: a hostile
    depth hits no recursion limit)."""
    stack = [(path, node)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if isinstance(node, Mapping):
            stack.extend((f"{path}.{k}", v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))


@lru_cache(maxsize=None)
def allowed_targets(groups: tuple[str, ...] = CHECKPOINT_GROUPS) -> frozenset[str]:
    """Every ``_target_`` that the option files of ``groups``, or the schemas they name, hold."""
    from omegaconf import OmegaConf

    from taco_plus.schemas import CONFIG_DIR, schema

    files = [OmegaConf.load(p) for group in groups for p in sorted((CONFIG_DIR / group).rglob("*.yaml"))]
    named = [OmegaConf.structured(schema(entry.split("@")[0][len("/schema/"):])) for file in files
             for entry in file.get("defaults", []) if isinstance(entry, str) and entry.startswith("/schema/")]
    nodes = (n for root in (*files, *named) for _, n in _walk(OmegaConf.to_container(root, resolve=False), ""))
    return frozenset(n["_target_"] for n in nodes if isinstance(n, Mapping) and isinstance(n.get("_target_"), str))


def check_stored_config(config: Any, what: str, source: str = "checkpoint", optional: bool = False) -> None:
    """Raises :class:`UntrustedConfigError` unless ``config`` (a plain dict; None when
    ``optional``) only builds taco-plus components. ``what`` and ``source`` name it in messages."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from taco_plus.schemas import schema

    if config is None and optional:
        return
    refuse = f"{source}: refusing to load it (nothing was instantiated):"
    if not isinstance(config, Mapping):
        raise UntrustedConfigError(f"{refuse} {what} is a {type(config).__name__}, not a config mapping")
    group = what.removesuffix("_config")
    if group in CHECKPOINT_GROUPS and config.get("_target_") not in (None, *allowed_targets((group,))):
        raise UntrustedConfigError(f"{refuse} {what}._target_ = {config['_target_']!r:.100} is not a {group} "
                                   f"component ({', '.join(sorted(allowed_targets((group,))))})")
    for path, node in _walk(config, what):
        # Sizes: the model is built (on the meta device) before its weights are compared with it.
        high = 4096 if path.endswith(".scale_table_levels") else 1 << 16
        if group == "model" and type(node) is int and not 1 <= node <= high:
            raise UntrustedConfigError(f"{refuse} {path} = {node} is out of range [1, {high}]")
        if group == "model" and isinstance(node, list) and len(node) > 64:
            raise UntrustedConfigError(f"{refuse} {path} has {len(node)} entries (at most 64)")
        if isinstance(node, str) and "${" in node:
            raise UntrustedConfigError(f"{refuse} {path} holds an interpolation ({node[:80]!r})")
        if not isinstance(node, Mapping):
            continue
        if any(isinstance(key, str) and "${" in key for key in node):
            raise UntrustedConfigError(f"{refuse} a key of {path} holds an interpolation")
        if "_target_" not in node:
            continue
        target = node["_target_"]
        if not isinstance(target, str) or target not in allowed_targets():
            raise UntrustedConfigError(
                f"{refuse} {path}._target_ = {target!r:.100} is not a taco-plus component; a checkpoint may "
                f"name only the classes of the {', '.join(CHECKPOINT_GROUPS)} config groups: "
                f"{', '.join(sorted(allowed_targets()))}"
            )
        given = {k: v for k, v in node.items() if k not in HYDRA_KEYS}
        try:  # the schema of its constructor: every key known, of its type
            typed = OmegaConf.to_container(OmegaConf.merge(schema(target), given))
        except (OmegaConfBaseException, ValueError, TypeError) as err:
            reason = str(err).splitlines()[0]
            raise UntrustedConfigError(f"{refuse} {path} does not fit the schema of {target}: {reason}") from err
        for key, value in given.items():  # what the merge converted ("32" -> 32) is refused, not converted
            if not isinstance(value, Mapping) and (type(typed[key]) is not type(value) or typed[key] != value):
                raise UntrustedConfigError(f"{refuse} {path}.{key} = {value!r:.80} is a {type(value).__name__}, "
                                           f"not the {type(typed[key]).__name__} the schema of {target} holds")


def _load_error(err: BaseException, path: Any) -> CheckpointError:
    """A failed ``torch.load(weights_only=True)`` of ``path`` as one line."""
    unsafe, detail = re.search(r"GLOBAL (\S+)", str(err)), re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    if unsafe:
        return CheckpointError(f"{path} is refused: loading it would run code ({unsafe.group(1)}); checkpoints are "
                               "read with weights_only=True (tensors and plain containers only)")
    return CheckpointError(f"{path} is not a checkpoint, or is damaged: {detail.group(1) if detail else _reason(err)}")


def instantiate_stored(config: Optional[Mapping[str, Any]], what: str = "stored config") -> Any:
    """Checks a stored component config, then instantiates it (None, or no ``_target_``: None)."""
    if config is None:
        return None
    check_stored_config(config, what)
    if config.get("_target_") is None:
        return None
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(dict(config), _convert_="all")
    except InstantiationException as err:  # the component's own error (e.g. CLIP weights missing offline)
        if isinstance(err.__cause__, pickle.UnpicklingError):  # a weights file that is a code-running pickle
            raise _load_error(err.__cause__, f"{what}.pretrained = {config.get('pretrained')!r:.100}") from err
        raise (err.__cause__ or err) from err


# --------------------------------------------------------------------- files
def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically, after removing a killed writer's temporary. Serialised in
    memory first: torch's C++ writer swallows the ``OSError`` of a full disk (ENOSPC, EFBIG)."""
    remove_stale_temporaries(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getbuffer())


def save_codec(path: str | os.PathLike, model: torch.nn.Module, model_config: Mapping[str, Any],
               text_encoder_config: Mapping[str, Any], weighting_config: Optional[Mapping[str, Any]] = None,
               **extra: Any) -> None:
    """Writes a taco-plus checkpoint atomically. Configs must be plain containers."""
    atomic_save({"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": dict(model_config),
                 "text_encoder_config": dict(text_encoder_config),
                 "weighting_config": None if weighting_config is None else dict(weighting_config),
                 "state_dict": model.state_dict(), **extra}, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unsafe globals, truncated zip, not a torch file ...
        raise _load_error(err, path) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(checkpoint).__name__}, not a dict")
    return checkpoint


def _reason(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


# Entropy-coder tables, sized by update(): loading resizes them.
CODER_TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def check_weights(build: Callable[[], tuple[torch.nn.Module, Any]], source: str) -> None:
    """``build() -> (model, state_dict)`` on the meta device (nothing is allocated); the state
    dict must hold the model's keys, each a real or integer tensor as the model's, of its shape
    (the coder tables excepted): then the real model takes no more memory than the file."""
    try:
        with torch.device("meta"), warnings.catch_warnings():  # loading into meta tensors is a no-op, said per tensor
            warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
            model, state = build()
            expected = model.state_dict()
    except Exception as err:  # stored sizes that build no model (zero heads, groups not summing to M ...)
        raise CheckpointError(f"{source}: its stored model does not build: {_reason(err)}") from err
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: its state_dict is a {type(state).__name__}, not a mapping of tensors")
    wrong = [k for k, v in state.items() if k in expected and not (
        isinstance(v, torch.Tensor) and not v.is_complex() and v.is_floating_point() == expected[k].is_floating_point()
        and (v.shape == expected[k].shape or k.endswith(CODER_TABLES)))]
    problems = {"missing": sorted(expected.keys() - state.keys()), "unexpected": sorted(state.keys() - expected.keys()),
                "not a tensor of the model's kind and shape": wrong}
    if any(problems.values()):
        raise CheckpointError(f"{source}: its weights do not fit its model: " + "; ".join(
            f"{kind}: {', '.join(map(str, keys[:3]))}{' ...' * (len(keys) > 3)}" for kind, keys in problems.items() if keys))


def build_model(model_config: Mapping[str, Any]) -> torch.nn.Module:
    """Instantiates a model from its (checked) Hydra node."""
    model = instantiate_stored(model_config, "model_config")
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError(f"model_config builds {type(model).__name__}, not a model")
    return model


def load_codec(path: str | os.PathLike) -> LoadedCodec:
    """Loads a taco-plus or official TACO checkpoint in eval mode, entropy-coder CDFs updated."""
    from taco_plus.models import TACO

    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") == FORMAT:
        if checkpoint.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: unsupported taco-plus checkpoint version {checkpoint.get('format_version')}")
        # Every stored config is checked before any of them is instantiated.
        for key in ("model_config", "text_encoder_config", "weighting_config"):
            check_stored_config(checkpoint.get(key), key, str(path), optional=key == "weighting_config")
        check_weights(lambda: (build_model(checkpoint["model_config"]), checkpoint.get("state_dict")), str(path))
        model = build_model(checkpoint["model_config"])
        model.load_state_dict(checkpoint["state_dict"])
        loaded = LoadedCodec(model, dict(checkpoint["text_encoder_config"]), checkpoint.get("weighting_config"))
    else:
        from taco_plus.models.official import normalise_state_dict

        check_weights(lambda: (TACO.from_official(checkpoint), normalise_state_dict(checkpoint)),
                      f"{path} (read as an official TACO checkpoint)")
        loaded = LoadedCodec(TACO.from_official(checkpoint), dict(OFFICIAL_TEXT_ENCODER), None, "official")
    loaded.model.eval().update(force=True)
    return loaded
