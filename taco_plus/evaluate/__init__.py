"""Evaluation of a TACO codec on a captioned image set with real bitstreams (docs/evaluation.md)::

    python -m taco_plus.evaluate checkpoint=ckpt.pt data=kodak captions=kodak_ofa [caption_sensitivity=true]
    python -m taco_plus.evaluate checkpoint=ckpt.pt data=coco30k out_dir=runs/coco30k   # rerun to resume

:func:`run` is the plain function behind it; the loop is :mod:`.loop`, the caption policy
:mod:`.caption_policy`, the entropy-coding processes :mod:`.workers`, the resumable folder :mod:`.journal`.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from taco_plus.atomic import file_sha256
from taco_plus.checkpoint import LoadedCodec, build_model, load_codec
from taco_plus.codec import TacoCodec
from taco_plus.schemas import CONFIG_PATH, to_container
from taco_plus.distributed import init_distributed, resolve_device
from taco_plus.evaluate.journal import EvaluationJournal, EvaluationMismatchError
from taco_plus.evaluate.loop import caption_sensitivity, evaluate_dataset
from taco_plus.evaluate.workers import coding_pool, default_workers
from taco_plus.losses.lpips import LpipsBackboneUnavailableError, build_lpips
from taco_plus.metrics import ClipScore, FidAccumulator, FidUnavailable
from taco_plus.text.clip_loading import ClipWeightsUnavailableError

__all__ = ["EvaluationJournal", "EvaluationMismatchError", "build_codec", "build_metrics", "caption_sensitivity",
           "evaluate_dataset", "main", "run"]
logger = logging.getLogger(__name__)


def build_codec(cfg: DictConfig, device: torch.device) -> tuple[TacoCodec, dict[str, Any]]:
    """The codec of ``cfg.checkpoint`` (or a random-init one from the groups) and its provenance."""
    if cfg.checkpoint:
        loaded = load_codec(cfg.checkpoint)
        meta = {"checkpoint": str(Path(cfg.checkpoint).resolve()), "checkpoint_sha256": file_sha256(cfg.checkpoint),
                "checkpoint_format": loaded.source}
    else:
        logger.warning("no checkpoint given: evaluating a RANDOM-INIT model (smoke run; numbers are meaningless)")
        model = build_model(to_container(cfg.model)).eval()
        loaded = LoadedCodec(model, to_container(cfg.text_encoder), to_container(cfg.weighting), "random-init")
        model.update(force=True)
        meta = {"checkpoint": None, "random_init": True}
    if cfg.text_weights:
        loaded.text_encoder_config = {**loaded.text_encoder_config, "pretrained": cfg.text_weights}
    loaded.model.to(device)
    codec = TacoCodec(loaded)
    codec.text_encoder.to(device)  # built now: fails fast when its weights are missing
    meta.update(model_fingerprint=codec.fingerprint.hex(), text_encoder=loaded.text_encoder_config,
                weighting=loaded.weighting_config)
    return codec, meta


def build_metrics(cfg: DictConfig, device: torch.device) -> tuple[Any, Optional[ClipScore], Optional[FidAccumulator], dict]:
    """LPIPS, CLIP score and FID from ``cfg.metrics``; each fails at once, saying what to
    download, when its weights are not on the machine."""
    lpips = clip = fid = None
    skipped = {} if cfg.fid.enabled else {"fid": "disabled (metrics.fid.enabled=false)"}
    if cfg.fid.enabled:
        fid = FidAccumulator.inception(cfg.fid.weights, cfg.fid.patch_size, device, cfg.fid.shifted_patches)
    if cfg.lpips is not None:
        try:
            lpips = build_lpips(cfg.lpips.net, cfg.lpips.convention, cfg.lpips.pretrained).to(device)
        except LpipsBackboneUnavailableError as err:
            raise LpipsBackboneUnavailableError(f"{err}\n(or evaluate without LPIPS: metrics.lpips=null)") from err
    if cfg.clip_score is not None:
        try:
            clip = ClipScore.load(cfg.clip_score.model_name, cfg.clip_score.pretrained, device)
        except ClipWeightsUnavailableError as err:
            raise ClipWeightsUnavailableError(f"{err}\n(or evaluate without it: metrics.clip_score=null)") from err
    return lpips, clip, fid, skipped


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluates as configured; returns the results dict (also in ``out_dir/results.json``). Under torchrun
    each process evaluates its share of the images (:func:`evaluate_dataset`)."""
    ctx = init_distributed()
    device = resolve_device(cfg.device, ctx)
    if not cfg.out_dir and (ctx.distributed or not HydraConfig.initialized()):
        raise ValueError("out_dir is required " + ("for a sharded evaluation" if ctx.distributed else "outside a Hydra run"))
    out_dir = Path(cfg.out_dir or HydraConfig.get().runtime.output_dir)
    lpips, clip, fid, skipped = build_metrics(cfg.metrics, device)  # first: missing weights fail at once
    codec, codec_meta = build_codec(cfg, device)
    data = instantiate(cfg.data, _convert_="all")
    dataset = data.eval_dataset() if hasattr(data, "eval_dataset") else data
    captions = getattr(data, "captions", None)
    meta = {**codec_meta, "dataset": repr(data),
            "dataset_report": dataset.report.lines() if hasattr(dataset, "report") else None,
            "caption_set": {"source": repr(captions), "fingerprint": getattr(captions, "fingerprint", None)},
            "config": to_container(cfg), "skipped": skipped}
    workers = default_workers(codec.device) if cfg.coding_workers is None else cfg.coding_workers
    with coding_pool(codec, workers) or nullcontext() as pool:
        results = evaluate_dataset(codec, dataset, out_dir, name=cfg.name, lpips=lpips, clip=clip, fid=fid,
                                   ms_ssim_enabled=cfg.metrics.ms_ssim, save_bitstreams=cfg.save_bitstreams,
                                   caption_mode=cfg.caption_mode, caption_policy=cfg.caption_policy, resume=cfg.resume,
                                   coding_workers=pool or 0, meta=meta)
        if ctx.is_main:
            logger.info("%s: %s -> %s", cfg.name, {k: v[0] for k, v in results["results"].items()}, out_dir / "results.json")
        if cfg.caption_sensitivity:  # the real captions were just coded (policy first): their rows serve
            real = out_dir if (cfg.caption_mode, cfg.caption_policy) == ("real", "first") else None
            caption_sensitivity(codec, dataset, out_dir / "sensitivity", name=cfg.name, lpips=lpips, clip=clip,
                                resume=cfg.resume, coding_workers=pool or 0, real=real, meta=meta)
    return results


@hydra.main(config_path=CONFIG_PATH, config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from taco_plus.data import BadImageError, DatasetPairingError

    try:
        run(cfg)
    except (FileNotFoundError, ValueError, LpipsBackboneUnavailableError, ClipWeightsUnavailableError, FidUnavailable,
            DatasetPairingError, BadImageError, EvaluationMismatchError) as err:
        logger.error("%s", err)  # what is missing and where to put it; no traceback needed
        raise SystemExit(2) from err
