"""Structured schemas of the config groups (Hydra ConfigStore): each option of a group
lists its schema first in its defaults, so a misspelt key, a wrong type or an override of
a missing key fails when the config is composed. The schemas hold the paper's defaults;
option files set what differs. The ``weighting`` schemas are in ``taco_plus.weighting.schema``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING


@dataclass
class TacoModelConfig:
    """``taco_plus.models.TACO``."""

    _target_: str = "taco_plus.models.TACO"
    N: int = 192
    M: int = 320
    slice_ch: List[int] = field(default_factory=lambda: [16, 16, 32, 64, 192])
    # The text encoder's token width: any model option combines with any text_encoder option.
    text_dim: int = "${clip_text_width:${text_encoder.model_name}}"  # type: ignore[assignment]
    num_heads: int = 8
    injector_attention: Any = "${attention.injector}"
    extractor_attention: Any = "${attention.extractor}"
    caption_summary: Any = "${attention.caption_summary}"
    mask_padding: bool = True
    scale_table_levels: int = 512  # entropy coder's Gaussian scale table (TACO: 64)


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
class ClipTextEncoderConfig:
    """``taco_plus.text.ClipTextEncoder`` (no ``cache_dir``: a checkpoint must not choose it)."""

    _target_: str = "taco_plus.text.ClipTextEncoder"
    model_name: str = "ViT-B-32"
    pretrained: Optional[str] = "openai"
    max_tokens: Any = 38  # int (38 = TACO, 77 = CLIP's limit) or "chunked"
    pad: str = "eot"


@dataclass
class CaptionSetConfig:
    """``CaptionSetSource``: a caption-set JSON (versioned, or ``{"file.png": caption(s)}``)."""

    _target_: str = "taco_plus.captions.sources.CaptionSetSource"
    path: str = MISSING


@dataclass
class CocoCaptionsConfig:
    """``CocoCaptionsSource``: the official COCO captions JSON, keyed by file name."""

    _target_: str = "taco_plus.captions.sources.CocoCaptionsSource"
    annotations_json: str = MISSING


@dataclass
class DataConfig:
    """``taco_plus.data.CaptionedImageData`` (policies: docs/training.md#data)."""

    _target_: str = "taco_plus.data.CaptionedImageData"
    image_dir: str = MISSING
    captions: Any = "${captions}"
    crop_size: int = 256
    small_images: str = "upscale"  # "upscale" | "reflect"
    min_side: int = 0  # drop images whose shorter side is below this (TACO: 256)
    batch_size: int = 8
    num_workers: int = 4
    train_caption: str = "random"  # "random" (seeded, per step) | "first"
    missing_caption: str = "skip"  # image without caption: "error" | "skip" | "empty"
    bad_caption: str = "skip"  # empty/garbage caption: "error" | "skip" | "empty" | "keep"
    missing_image: str = "warn"  # caption without image: "error" | "warn"
    bad_image: str = "skip"  # unreadable image file: "skip" (report, count, go on) | "strict"
    image_list: Optional[str] = None  # JSON list of image names (MS-COCO 30k); null: every file
    fid_patch_size: Optional[int] = 256  # evaluation FID: 256 px patches, or null = whole images
    limit: Optional[int] = None  # keep the first N images (sorted by id), for smoke runs
    # TACO's published training lists (both or neither), replacing `captions` (docs/training.md#data)
    name_list: Optional[str] = None
    caption_list: Optional[str] = None


@dataclass
class SkimagePhotosConfig(DataConfig):
    """``SkimagePhotosData``: scikit-image's bundled photos, exported on first use."""

    _target_: str = "taco_plus.data.SkimagePhotosData"


@dataclass
class LpipsConfig:
    """``taco_plus.losses.build_lpips``."""

    _target_: str = "taco_plus.losses.build_lpips"
    net: str = "alex"
    convention: str = "correct"  # "correct" ([0,1] -> [-1,1]) | "reference" (TACO's)
    pretrained: bool = True  # False: random backbone stand-in (tests, offline demo)


@dataclass
class ClipJointConfig:
    """``taco_plus.losses.ClipJointLoss``."""

    _target_: str = "taco_plus.losses.ClipJointLoss"
    model_name: str = "ViT-B-32"
    pretrained: Optional[str] = "openai"
    beta: float = 40.0
    logit_scale: float = 2.6592  # log of the constant temperature, exp() applied
    context_length: Optional[int] = 38


@dataclass
class TacoLossConfig:
    """``taco_plus.losses.TacoLoss``."""

    _target_: str = "taco_plus.losses.TacoLoss"
    lmbda: float = 0.0016
    k_p: float = 3.5
    k_j: float = 0.0025
    lpips: Optional[LpipsConfig] = field(default_factory=LpipsConfig)
    joint: Optional[ClipJointConfig] = field(default_factory=ClipJointConfig)


@dataclass
class AdamConfig:
    """A ``torch.optim`` optimiser, called later with the parameters."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class MultiStepLRConfig:
    """``torch.optim.lr_scheduler.MultiStepLR``, called later with the optimiser."""

    _target_: str = "torch.optim.lr_scheduler.MultiStepLR"
    _partial_: bool = True
    milestones: List[int] = field(default_factory=lambda: [45, 48])
    gamma: float = 0.1


@dataclass
class OptimConfig:
    """Adam for the codec, a second Adam for the entropy-bottleneck quantiles."""

    optimizer: AdamConfig = field(default_factory=AdamConfig)
    aux_optimizer: AdamConfig = field(default_factory=lambda: AdamConfig(lr=1e-3))
    scheduler: MultiStepLRConfig = field(default_factory=MultiStepLRConfig)
    scheduler_unit: str = "epoch"  # the milestones count "epoch"s (TACO) or "step"s
    clip_max_norm: float = 1.0  # 0 disables clipping


@dataclass
class TestSetSelectionConfig:
    """Opt-in TEST-SET SELECTION as the official script (``taco_plus.train.selection``): keep the
    epoch that scores best on these test images (optimistic results); off while ``image_dir`` is null."""

    image_dir: Optional[str] = None  # the test images coded after every epoch (TACO: Kodak)
    captions: Optional[str] = None  # their caption file (TACO: kodak_ofa.json; first caption each)
    metric: str = "psnr"  # "psnr" | "ms_ssim" (highest) | "bpp" | "lpips" (lowest; the loss's LPIPS)


@dataclass
class TrainerConfig:
    """``taco_plus.train.Trainer``."""

    _target_: str = "taco_plus.train.Trainer"
    epochs: int = 50
    max_steps: Optional[int] = None  # stop after this many steps (wins over epochs)
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    precision: str = "fp32"  # "fp32" | "bf16" (autocast)
    seed: int = 0
    trainable: str = "all"  # "all" | "adapter" (model.adapter_parameters())
    init_from: Optional[str] = None  # official TACO or taco-plus checkpoint
    resume: Optional[str] = None  # a taco-plus training checkpoint, or "auto"
    log_every: int = 50
    checkpoint_every: int = 1000  # steps
    checkpoint_each_epoch: bool = True  # also at every epoch end
    tensorboard: bool = True
    progress_bar: bool = True
    # Stop at the next step boundary with a checkpoint (Ctrl-C, SLURM pre-emption/scancel,
    # sbatch --signal, submitit's SIGUSR2); [] keeps the signals' default action.
    stop_signals: List[str] = field(default_factory=lambda: ["SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2"])
    allow_resume_changes: bool = False  # resume even if the loss or the data changed (recorded)
    test_set_selection: TestSetSelectionConfig = field(default_factory=TestSetSelectionConfig)


@dataclass
class RunMeta:
    """What a registered run is (``experiment/<name>.yaml``; docs/experiments.md): ``changes``
    lists the groups and dotted keys in which it differs from its base experiment."""

    title: str = ""
    changes: List[str] = field(default_factory=list)
    eval: List[str] = field(default_factory=lambda: ["caption_sensitivity=true"])  # evaluate overrides
    prepare: List[str] = field(default_factory=list)  # one-off commands; skipped when their --out exists


@dataclass
class ComponentGroups:
    """The config groups that training and evaluation share."""

    model: Any = MISSING
    text_encoder: Any = MISSING
    attention: Any = MISSING
    weighting: Any = MISSING
    captions: Any = MISSING
    data: Any = MISSING


@dataclass
class TrainConfig(ComponentGroups):
    """``train.yaml``."""

    loss: Any = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    name: str = "train"
    run_dir: Optional[str] = None  # default: Hydra's output directory
    meta: RunMeta = field(default_factory=RunMeta)
