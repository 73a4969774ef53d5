"""Structured schema of ``taco_plus/configs/eval.yaml`` (``eval_schema`` in Hydra's ConfigStore):
a misspelt evaluation key fails when the config is composed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from taco_plus.config.schema import ComponentGroups, LpipsConfig


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
    lpips: Optional[LpipsConfig] = field(default_factory=LpipsConfig)  # null disables
    clip_score: Optional[ClipScoreConfig] = field(default_factory=ClipScoreConfig)  # null disables
    fid: FidConfig = field(default_factory=FidConfig)


@dataclass
class EvalConfig(ComponentGroups):  # taco_plus/configs/eval.yaml
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


ConfigStore.instance().store(name="eval_schema", node=EvalConfig)
