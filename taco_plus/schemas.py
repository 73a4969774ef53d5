"""Hydra configuration: schemas from constructors, the resolvers and ``compose``.

Option files (``configs/``, shipped as ``taco_plus.configs``) start their defaults list with
``/schema/<dotted path>@_here_``, built on first use by :func:`schema` (docs/training.md, "Schemas")."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigNode, ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "configs"  # in the wheel (setup.py's package_dir)
if not (CONFIG_DIR / "train.yaml").is_file():  # a checkout: configs/ beside the package
    CONFIG_DIR = PACKAGE_DIR.parent / "configs"
CONFIG_MODULE = "taco_plus.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"  # for @hydra.main
if CONFIG_DIR.parent != PACKAGE_DIR and CONFIG_MODULE not in sys.modules:  # a checkout: the same module name
    _spec = importlib.util.spec_from_file_location(CONFIG_MODULE, CONFIG_DIR / "__init__.py",
                                                   submodule_search_locations=[str(CONFIG_DIR)])
    sys.modules[CONFIG_MODULE] = importlib.util.module_from_spec(_spec)


# ------------------------------------------------------------ schemas from signatures
def _type(hint: Any) -> Any:
    """The OmegaConf type of an annotation: int/float/bool/str (paths: str), Optional, List and
    Dict of those; anything else is Any (a union of two kinds, a module, a callable ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (int, float, bool, str):
        return hint
    if origin is os.PathLike or (isinstance(hint, type) and issubclass(hint, os.PathLike)):
        return str
    if origin is typing.Literal:
        return _type(type(args[0])) if len({type(a) for a in args}) == 1 else Any
    if origin in (typing.Union, types.UnionType):
        kinds = {_type(a) for a in args if a is not type(None)}
        if len(kinds) != 1 or Any in kinds:
            return Any
        return Optional[kinds.pop()] if type(None) in args else kinds.pop()
    if origin in (list, tuple, Sequence):
        items = {_type(a) for a in args if a is not ...}
        return List[items.pop() if len(items) == 1 else Any]
    if origin in (dict, Mapping):
        return Dict[str, _type(args[1]) if args else Any]
    return Any


def _fields(obj: Any) -> list[tuple[str, Any, Any]]:
    """(name, type, field) of the arguments a config can set: keyword-only arguments are for code
    (a preloaded model, a cache directory), not configs; ``**kwargs`` of a class are its base's."""
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except (NameError, TypeError):  # an annotation that does not resolve: its keys are Any
        hints = {}
    fields = []
    for p in inspect.signature(obj).parameters.values():
        if p.kind is p.VAR_KEYWORD and inspect.isclass(obj):
            fields += [f for f in _fields(obj.__mro__[1]) if f[0] not in {g[0] for g in fields}]
        elif p.kind is p.POSITIONAL_OR_KEYWORD:
            default = MISSING if p.default is p.empty else p.default
            value = field(default_factory=lambda d=default: list(d) if isinstance(d, tuple) else d.copy()) \
                if isinstance(default, (list, tuple, dict)) else field(default=default)
            fields.append((p.name, _type(hints.get(p.name, Any)), value))
    return fields


@lru_cache(maxsize=None)
def schema(path: str) -> type:
    """The structured config of the object at ``path``: a dataclass as it is; a class or function
    as ``_target_`` and the arguments of its signature, typed and with their defaults."""
    from hydra.utils import get_object

    obj = get_object(path)
    if dataclasses.is_dataclass(obj):
        return obj
    return dataclasses.make_dataclass(path.rpartition(".")[2], [("_target_", str, path), *_fields(obj)])


class SchemaGroup(dict):
    """Hydra's ConfigStore group ``schema``: ``schema/<dotted path>`` is stored on its first lookup,
    so a new option's module is picked up without a registration list."""

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name.endswith(".yaml") and not super().__contains__(name):
            try:
                node = ConfigNode(name, OmegaConf.structured(schema(name[:-5])), "schema", None, "taco_plus")
            except ImportError:  # not an importable path: Hydra says it could not load schema/<path>
                return False
            for group in (self, ConfigStore.instance().repo["schema"]):  # Hydra composes from a deep copy
                group.setdefault(name, node)
        return super().__contains__(name)


# ------------------------------------------------- nodes that are not one constructor
def full_attention() -> dict[str, Any]:
    return {"_target_": "taco_plus.models.attention.FullCrossAttention", "_partial_": True}


@dataclass
class AttentionConfig:
    """The adapter's attention (docs/attention.md): ``(dim, num_heads) -> CrossAttention``
    factories, and a ``text_dim -> CaptionSummary`` factory or None (every caption token)."""

    injector: Any = field(default_factory=full_attention)
    extractor: Any = field(default_factory=full_attention)
    caption_summary: Any = None
    k: Optional[int] = None  # caption summaries (text side): below the longest caption
    image_k: Optional[int] = None  # pooled summaries of the image tokens (image side)
    max_len: int = 2464  # longest chunked caption a caption summary covers (32 CLIP windows)
    allow_k_not_below_caption: bool = False  # accept a k that compresses nothing
    caption_tokens: Optional[Any] = None  # set by training: real-token lengths of its captions vs k


def caption_max_len(max_tokens: Any, chunked_max_len: int, k: int, allow: bool) -> int:
    """``${caption_max_len:...}``: the longest caption a caption summary sees
    (``text_encoder.max_tokens``, or ``chunked_max_len`` when chunked). A ``k`` not below it
    fails at resolution, before anything is built, unless ``allow``."""
    longest = int(chunked_max_len) if str(max_tokens) == "chunked" else int(max_tokens)
    if int(k) >= longest and not allow:
        raise ValueError(
            f"attention.k={k} is not below the longest caption the model will see ({longest} "
            f"tokens, text_encoder.max_tokens={max_tokens}): the length projection would "
            "compress nothing. Lower attention.k, or set attention.allow_k_not_below_caption=true"
        )
    return longest


@dataclass
class AdamConfig:  # a torch.optim optimiser, called later with the parameters
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class MultiStepLRConfig:  # called later with the optimiser
    _target_: str = "torch.optim.lr_scheduler.MultiStepLR"
    _partial_: bool = True
    milestones: List[int] = field(default_factory=lambda: [45, 48])
    gamma: float = 0.1


@dataclass
class OptimConfig:  # Adam for the codec, a second Adam for the entropy-bottleneck quantiles
    optimizer: AdamConfig = field(default_factory=AdamConfig)
    aux_optimizer: AdamConfig = field(default_factory=lambda: AdamConfig(lr=1e-3))
    scheduler: MultiStepLRConfig = field(default_factory=MultiStepLRConfig)
    scheduler_unit: str = "epoch"  # the milestones count "epoch"s (TACO) or "step"s
    clip_max_norm: float = 1.0  # 0 disables clipping


@dataclass
class RunMeta:  # what a registered run is (experiment/<name>.yaml; docs/experiments.md)
    title: str = ""
    changes: List[str] = field(default_factory=list)  # the groups and keys that differ from its base experiment
    eval: List[str] = field(default_factory=lambda: ["caption_sensitivity=true"])  # evaluate overrides
    prepare: List[str] = field(default_factory=list)  # one-off commands; skipped when their --out exists


@dataclass
class ComponentGroups:  # the config groups that training and evaluation share
    model: Any = MISSING
    text_encoder: Any = MISSING
    attention: Any = MISSING
    weighting: Any = MISSING
    captions: Any = MISSING
    data: Any = MISSING


@dataclass
class TrainConfig(ComponentGroups):  # train.yaml
    loss: Any = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: Any = MISSING
    name: str = "train"
    run_dir: Optional[str] = None  # default: Hydra's output directory
    meta: RunMeta = field(default_factory=RunMeta)


@dataclass
class ClipScoreConfig:  # taco_plus.text.load_clip arguments
    model_name: str = "ViT-B-32"
    pretrained: Optional[str] = "openai"  # tag, local file/folder, or null = UNTRAINED stand-in


@dataclass
class FidConfig:
    enabled: bool = True  # missing weights stop the run at start-up, saying what to download
    patch_size: Optional[int] = 256  # null: whole images
    shifted_patches: bool = True  # also the grid shifted by patch_size/2 (MS-ILLM's FID/256)
    weights: Optional[str] = None  # default $TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth


@dataclass
class MetricsConfig:
    ms_ssim: bool = True
    lpips: Any = None  # taco_plus.losses.build_lpips's arguments (eval.yaml); null disables
    clip_score: Optional[ClipScoreConfig] = field(default_factory=ClipScoreConfig)  # null disables
    fid: FidConfig = field(default_factory=FidConfig)


@dataclass
class EvalConfig(ComponentGroups):  # eval.yaml (docs/evaluation.md)
    name: str = "eval"
    checkpoint: Optional[str] = None  # null: random-init model from the groups (smoke runs only)
    text_weights: Optional[str] = None  # local CLIP weights for the checkpoint's text encoder
    out_dir: Optional[str] = None  # default: Hydra's run directory
    device: str = "auto"
    save_bitstreams: bool = True
    caption_mode: str = "real"  # real | empty | other
    caption_policy: str = "first"  # first | all | oracle_lpips
    resume: bool = True  # continue the evaluation found in out_dir
    caption_sensitivity: bool = False
    coding_workers: Optional[int] = None  # entropy-coding processes; null: GPU: the CPUs (per torchrun process) - 1, CPU: 0
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


# ------------------------------------------------------------------ resolvers
def clip_text_width(model_name: str) -> int:
    """``${clip_text_width:NAME}``: an open_clip text tower's width, from its architecture config."""
    import open_clip

    from taco_plus.text import register_model_configs

    register_model_configs()
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f"unknown open_clip model {model_name!r}: cannot infer the text width; set model.text_dim")
    return int(config.get("text_cfg", {}).get("width", 512))


def tiny_clip_name(max_tokens) -> str:
    """``${tiny_clip:MAX_TOKENS}``: the UNTRAINED tiny tower with enough positions for the captions:
    ``taco-tiny-clip`` (77), or ``taco-tiny-longclip`` (Long-CLIP's 248) above 77 tokens."""
    return "taco-tiny-longclip" if str(max_tokens) != "chunked" and int(max_tokens) > 77 else "taco-tiny-clip"


def options(group: str) -> list[str]:
    """The options of a config group: its YAML files."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def config_groups(config_name: str) -> str:
    """``${config_groups:train}`` in ``--help``: each group of ``<config_name>.yaml``'s defaults list and its options."""
    defaults = OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml").defaults
    groups = [next(iter(d)).removeprefix("optional ") for d in defaults if isinstance(d, DictConfig)]
    return "\n".join(f"{g}: {', '.join(options(g))}" for g in groups)


def register_configs() -> None:
    """Installs the ``schema`` group in Hydra's ConfigStore and registers the resolvers (idempotent)."""
    repo = ConfigStore.instance().repo
    if not isinstance(repo.get("schema"), SchemaGroup):
        repo["schema"] = SchemaGroup(repo.get("schema", {}))
    resolvers = {"clip_text_width": clip_text_width, "taco_package": lambda: str(PACKAGE_DIR),
                 "caption_max_len": caption_max_len, "tiny_clip": tiny_clip_name, "config_groups": config_groups,
                 "first_set": lambda *values: next((v for v in values if v not in (None, "")), None)}
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=name == "clip_text_width")


register_configs()


def compose(overrides: Sequence[str] = (), config_name: Optional[str] = "train",
            return_hydra_config: bool = False) -> DictConfig:
    """``<config_name>.yaml`` (``train``, ``eval``; None: only the overrides' groups) composed with
    command-line overrides, as ``python -m taco_plus.train`` does; inside a Hydra app, through its search path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with contextlib.nullcontext() if GlobalHydra.instance().is_initialized() else \
            initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


def to_container(node: DictConfig) -> dict:
    """A resolved plain-dict copy of a config node (for checkpoints and logs)."""
    return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
