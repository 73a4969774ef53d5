"""``train(cfg)``, the function behind ``python -m taco_plus.train``: builds each component from its group's
``_target_`` and trains; with ``WORLD_SIZE > 1`` (torchrun, submitit tasks) it joins the process group first."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from taco_plus.schemas import to_container
from taco_plus.distributed import init_distributed
from taco_plus.text.tokenizer import real_lengths
from taco_plus.train.resume import write_run_config
from taco_plus.train.trainer import Components, Trainer, TrainResult

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:  # Python's random, numpy and torch (CPU and every CUDA device)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_loss(loss_cfg: DictConfig):
    """The loss, without building the LPIPS or CLIP modules of a zero-weight term."""
    node = loss_cfg.copy()
    with open_dict(node):
        if node.get("k_p", 0) == 0:
            node.lpips = None
        if node.get("k_j", 0) == 0:
            node.joint = None
    return instantiate(node, _convert_="all")


def build_weighting(weighting_cfg: Optional[DictConfig], captions):
    """The token weighting (None without ``_target_``), checked against the caption set in use."""
    if weighting_cfg is None or weighting_cfg.get("_target_") is None:
        return None
    weighting = instantiate(weighting_cfg, _convert_="all")
    if hasattr(weighting, "check_caption_set") and hasattr(captions, "fingerprint"):
        weighting.check_caption_set(captions.fingerprint)
    return weighting


def check_caption_lengths(cfg: DictConfig, captions, sample: int = 50_000) -> None:
    """Real-token lengths of (a sample of) the training captions against the caption summary's k, logged and kept
    as ``attention.caption_tokens``; a k not below the longest caption fails (docs/attention.md)."""
    if cfg.attention.get("caption_summary") is None or not hasattr(captions, "ids"):
        return
    texts = [c for i in captions.ids() for c in captions.captions(i)]
    lengths = np.array(real_lengths(texts[:: max(1, -(-len(texts) // sample))], cfg.text_encoder.max_tokens) or [0])
    k = int(cfg.attention.k)
    share = float(np.mean(lengths <= k))
    stats = {"captions": len(lengths), "median": float(np.median(lengths)),
             "p90": round(float(np.percentile(lengths, 90)), 1), "max": int(lengths.max()), "at_most_k": round(share, 4)}
    logger.info("caption lengths of %s in real tokens: %s", captions.name, stats)
    if k >= stats["max"] and not cfg.attention.allow_k_not_below_caption:
        raise ValueError(f"attention.k={k} is not below the longest caption of {captions.name} ({stats['max']} real "
                         "tokens): the caption summary would compress nothing. Lower attention.k, or set "
                         "attention.allow_k_not_below_caption=true")
    if share > 0.5:
        stats["note"] = (f"{share:.0%} of the captions have at most attention.k={k} real tokens: the caption "
                         "summary compresses few of them (docs/attention.md)")
        logger.warning("%s", stats["note"])
    cfg.attention.caption_tokens = stats


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """The codec of a composed config, initialised from ``trainer.seed`` alone (whatever was
    built before it; the adapter draws from its own stream, ``models/transforms.py``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.trainer.seed)
        return instantiate(cfg.model, _convert_="all")


def build_components(cfg: DictConfig) -> Components:
    """Instantiates model, text encoder, weighting, data, loss and optimiser factories."""
    text_encoder = instantiate(cfg.text_encoder, _convert_="all")
    data = instantiate(cfg.data, _convert_="all")
    weighting = build_weighting(cfg.get("weighting"), data.captions)
    check_caption_lengths(cfg, data.captions)
    model = build_model(cfg)
    if getattr(model, "text_dim", text_encoder.width) != text_encoder.width:
        raise ValueError(f"model.text_dim={model.text_dim} but the text encoder gives width {text_encoder.width}")
    loss = build_loss(cfg.loss)
    for part in (text_encoder, getattr(loss, "lpips", None), getattr(loss, "joint", None)):
        if part is not None:
            logger.info("%s", part.describe() if hasattr(part, "describe") else part.extra_repr())
    optim = {k: instantiate(cfg.optim[k], _convert_="all") for k in ("optimizer", "aux_optimizer", "scheduler")}
    return Components(
        model=model, text_encoder=text_encoder, weighting=weighting, data=data, loss=loss, **optim,
        scheduler_unit=cfg.optim.scheduler_unit, clip_max_norm=float(cfg.optim.clip_max_norm),
        model_config=to_container(cfg.model), text_encoder_config=to_container(cfg.text_encoder),
        weighting_config=to_container(cfg.weighting) if weighting is not None else None, config=to_container(cfg))


def train(cfg: DictConfig, run_dir: Optional[str | os.PathLike] = None) -> TrainResult:
    """Trains the codec of a composed ``train`` config into ``run_dir`` (default ``cfg.run_dir``)."""
    to_container(cfg)  # resolves every interpolation: an invalid combination fails before anything is built
    run_dir = run_dir or cfg.get("run_dir")
    if not run_dir:
        raise ValueError("no run folder: pass run_dir or set run_dir=... in the config")
    if cfg.optim.scheduler_unit not in ("epoch", "step"):
        raise ValueError(f"optim.scheduler_unit must be 'epoch' or 'step', got {cfg.optim.scheduler_unit!r}")
    ctx = init_distributed()
    try:
        # One run folder for every rank, rank 0's: under torchrun each rank's Hydra names
        # its own from its clock, and `trainer.resume=auto` must find the same checkpoint.
        box = [str(run_dir)]
        if ctx.distributed:
            dist.broadcast_object_list(box, src=0)
        run_dir = Path(box[0])
        trainer: Trainer = instantiate(cfg.trainer, _convert_="all")
        seed_everything(trainer.seed)  # same initial weights (and loss stand-ins) on every rank
        parts = build_components(cfg)
        seed_everything(trainer.seed + ctx.rank)  # then one noise stream per rank
        parts.config["training_data"] = parts.data.describe()  # what TACO's lists, or their stand-in, gave
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(run_dir, parts.config)
        return trainer.fit(parts, run_dir, ctx)
    finally:
        if ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()
