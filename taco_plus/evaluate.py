"""Evaluation of a TACO codec on a captioned image set, with real bitstreams.

For every image: encode with its caption through :class:`~taco_plus.codec.TacoCodec`
to a ``.tacoz`` file on disk, ``bpp = 8·file bytes / (H·W)`` of the original,
decode the file back (no text), then PSNR and MS-SSIM (8-bit, CompressAI's
convention), LPIPS, the CLIP score of the reconstruction against the real caption,
and patch FID over the whole set when its weights are available. Writes
``per_image.csv`` and ``results.json`` (CompressAI format + provenance) into the
output folder. :func:`caption_sensitivity` repeats this with an empty caption and
with another image's caption and tabulates the differences.

Usage::

    python -m taco_plus.evaluate checkpoint=ckpt.pt data=kodak captions=kodak_ofa
    python -m taco_plus.evaluate checkpoint=ckpt.pt caption_sensitivity=true metrics.fid.enabled=false
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig
from torch import Tensor, nn

from taco_plus.checkpoint import LoadedCodec, build_model, load_codec
from taco_plus.codec import TacoCodec
from taco_plus.config import CONFIG_DIR, to_container
from taco_plus.config.schema import LpipsConfig
from taco_plus.losses.lpips import LpipsBackboneUnavailableError, build_lpips
from taco_plus.metrics import ClipScore, FidAccumulator, FidUnavailable, InceptionFeatures, image_metrics
from taco_plus.metrics.distortion import MS_SSIM_MIN_SIDE
from taco_plus.results.format import make_results, save_results
from taco_plus.results.per_image import read_per_image_csv, summarize, write_per_image_csv
from taco_plus.results.provenance import environment, file_sha256
from taco_plus.results.sensitivity import CAPTION_MODES, derangement, sensitivity_table, write_sensitivity
from taco_plus.text.clip_loading import ClipWeightsUnavailableError

logger = logging.getLogger(__name__)


def _check_item(item: Mapping[str, Any]) -> tuple[Tensor, str, str]:
    """A dataset item -> (image (3, H, W), caption, id), with clear errors."""
    missing = [k for k in ("image", "caption", "id") if k not in item]
    if missing:
        raise ValueError(f"dataset items must be dicts with image, caption and id; missing {missing}")
    x, caption, image_id = item["image"], item["caption"], str(item["id"])
    if not isinstance(x, Tensor) or x.dim() != 3 or x.size(0) != 3:
        raise ValueError(f"{image_id}: image must be a (3, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    if not isinstance(caption, str):
        raise ValueError(f"{image_id}: caption must be a string, got {type(caption).__name__}")
    if Path(image_id).is_absolute() or ".." in Path(image_id).parts:
        raise ValueError(f"image id {image_id!r} must be a relative path inside the dataset")
    return x, caption, image_id


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # time the kernels, not their launch


def evaluate_dataset(
    codec: TacoCodec,
    dataset: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    name: str,
    lpips: Optional[nn.Module] = None,
    clip: Optional[ClipScore] = None,
    fid: Optional[FidAccumulator] = None,
    ms_ssim_enabled: bool = True,
    save_bitstreams: bool = True,
    caption_mode: str = "real",
    description: str = "",
    meta: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """Evaluates ``codec`` on ``dataset``; writes ``per_image.csv`` and ``results.json``.

    Args:
        codec: a :class:`~taco_plus.codec.TacoCodec`.
        dataset: items ``{"image": (3, H, W) in [0, 1], "caption": str, "id": str}``
            (any size; the codec pads). Iterated once (twice for ``"other"``).
        out_dir: output folder; bitstreams go to ``out_dir/bitstreams/<id>.tacoz``.
        name: curve name in the results file.
        lpips: LPIPS module ``(x_hat, x) -> (B,)`` (``taco_plus.losses.build_lpips``), or None.
        clip: :class:`~taco_plus.metrics.ClipScore`, or None.
        fid: a fresh :class:`~taco_plus.metrics.FidAccumulator`, or None.
        ms_ssim_enabled: compute MS-SSIM (NaN for images under 161 px).
        save_bitstreams: keep the files (otherwise bpp comes from the same bytes in memory).
        caption_mode: caption given to the encoder: ``"real"``, ``"empty"`` or
            ``"other"`` (the next image's caption in sorted id order). The CLIP
            score always uses the real caption.
        description: results-file description.
        meta: extra provenance merged into the results file's ``meta``.

    Returns:
        The results dict written to ``results.json`` (one rate point).
    """
    if caption_mode not in CAPTION_MODES:
        raise ValueError(f"caption_mode must be one of {CAPTION_MODES}, got {caption_mode!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    others: dict[str, str] = {}  # id -> the caption coded with it in "other" mode
    if caption_mode == "other":
        captions = {}
        for item in dataset:
            _, caption, image_id = _check_item(item)
            captions[image_id] = caption
        others = {i: captions[j] for i, j in derangement(list(captions)).items()}

    device = codec.device
    rows, mismatch, seen = [], 0.0, set()
    for item in dataset:
        x, caption, image_id = _check_item(item)
        if image_id in seen:
            raise ValueError(f"image id {image_id!r} appears twice in the dataset")
        seen.add(image_id)
        coded = {"real": caption, "empty": "", "other": others.get(image_id, "")}[caption_mode]
        encoded = codec.encode(x, coded)
        data = encoded.data
        if save_bitstreams:
            path = out_dir / "bitstreams" / f"{image_id}.tacoz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            data = path.read_bytes()  # decode what is on disk, and count its size
        n_bytes = len(data)
        _sync(device)
        start = time.perf_counter()
        x_hat = codec.decode(data)  # (1, 3, H, W), no text
        _sync(device)
        dec_ms = 1000 * (time.perf_counter() - start)
        mismatch = max(mismatch, float((x_hat - encoded.x_hat).abs().max()))

        row = image_metrics(x, x_hat, caption, lpips=lpips, clip=clip, fid=fid, ms_ssim_enabled=ms_ssim_enabled)
        h, w = x.shape[-2:]
        row.update(id=image_id, height=h, width=w, bytes=n_bytes, bpp=8 * n_bytes / (h * w),
                   enc_ms=encoded.encode_ms, dec_ms=dec_ms)
        rows.append(row)
        logger.info("%s: %d bytes, %.4f bpp, %.2f dB", image_id, n_bytes, row["bpp"], row["psnr"])

    write_per_image_csv(rows, out_dir / "per_image.csv")
    results, counts = summarize(rows)
    notes, skipped = [], dict((meta or {}).get("skipped", {}))
    if ms_ssim_enabled and counts.get("ms-ssim-rgb", 0) < len(rows):
        notes.append(
            f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE} px on the short side (5 scales): "
            f"{len(rows) - counts.get('ms-ssim-rgb', 0)} of {len(rows)} images are smaller and left out (nan)"
        )
    if fid is not None:
        try:
            results["fid"] = [fid.compute()]
        except FidUnavailable as err:
            skipped["fid"] = str(err)
    if mismatch > 1.0 / 255:
        logger.warning("decoded images differ from the encoder's prediction by up to %.4f", mismatch)
    run_meta = {
        "caption_mode": caption_mode,
        "images": len(rows),
        "metric_images": counts,
        "bpp_from": "file sizes" if save_bitstreams else "bitstream lengths (files not kept)",
        "bitstreams": str(out_dir / "bitstreams") if save_bitstreams else None,
        "decode_vs_encoder_max_abs_diff": mismatch,
        "lpips": None if lpips is None else {
            "describe": lpips.describe() if hasattr(lpips, "describe") else repr(lpips),
            "convention": getattr(lpips, "convention", None),
        },
        "lpips_convention": getattr(lpips, "convention", None),
        "clip_score": None if clip is None else clip.name,
        "notes": notes,
        "skipped": skipped,
        "environment": environment(device),
        **{k: v for k, v in (meta or {}).items() if k != "skipped"},
    }
    data = make_results(name, results, description or f"caption_mode={caption_mode}, bpp from real bitstreams", run_meta)
    save_results(data, out_dir / "results.json")
    return data


def caption_sensitivity(
    codec: TacoCodec,
    dataset: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    name: str = "sensitivity",
    lpips: Optional[nn.Module] = None,
    clip: Optional[ClipScore] = None,
    save_bitstreams: bool = False,
    meta: Optional[Mapping[str, Any]] = None,
) -> list[dict[str, Any]]:
    """Evaluates the real, empty and another image's caption; writes the table.

    Each mode goes to ``out_dir/<mode>/`` (``per_image.csv``, ``results.json``);
    the table to ``out_dir/sensitivity.{md,csv}``. Returns the table rows
    (real first; deltas are means of per-image differences from the real caption).
    """
    out_dir = Path(out_dir)
    rows_by_mode = {}
    for mode in CAPTION_MODES:
        logger.info("caption sensitivity: %s captions", mode)
        evaluate_dataset(
            codec, dataset, out_dir / mode, name=f"{name}-{mode}", lpips=lpips, clip=clip,
            save_bitstreams=save_bitstreams, caption_mode=mode, meta=meta,
        )
        rows_by_mode[mode] = read_per_image_csv(out_dir / mode / "per_image.csv")
    table = sensitivity_table(rows_by_mode)
    md, _ = write_sensitivity(table, out_dir)
    logger.info("caption sensitivity table:\n%s", md.read_text(encoding="utf-8"))
    return table


# ------------------------------------------------------------------ Hydra entry


@dataclass
class ClipScoreConfig:
    """The CLIP model of the CLIP score (``taco_plus.text.load_clip`` arguments)."""

    model_name: str = "ViT-B-32"
    pretrained: Optional[str] = "openai"  # tag, local file/folder, or null = UNTRAINED stand-in


@dataclass
class FidConfig:
    enabled: bool = True  # skipped (and recorded as such) when the weights are absent
    patch_size: Optional[int] = 256  # null: whole images
    weights: Optional[str] = None  # default $TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth


@dataclass
class MetricsConfig:
    ms_ssim: bool = True
    lpips: Optional[LpipsConfig] = field(default_factory=LpipsConfig)  # null disables
    clip_score: Optional[ClipScoreConfig] = field(default_factory=ClipScoreConfig)  # null disables
    fid: FidConfig = field(default_factory=FidConfig)


@dataclass
class EvalConfig:
    """``configs/eval.yaml``."""

    model: Any = MISSING
    text_encoder: Any = MISSING
    attention: Any = MISSING
    weighting: Any = MISSING
    captions: Any = MISSING
    data: Any = MISSING
    name: str = "eval"
    checkpoint: Optional[str] = None  # null: random-init model from the groups (smoke runs only)
    text_weights: Optional[str] = None  # local CLIP weights for the checkpoint's text encoder
    out_dir: Optional[str] = None  # default: Hydra's run directory
    device: str = "auto"
    save_bitstreams: bool = True
    caption_mode: str = "real"  # real | empty | other
    caption_sensitivity: bool = False
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    meta["model_fingerprint"] = codec.fingerprint.hex()
    meta["text_encoder"] = loaded.text_encoder_config
    meta["weighting"] = loaded.weighting_config
    return codec, meta


def build_metrics(cfg: DictConfig, device: torch.device) -> tuple[Any, Optional[ClipScore], Optional[FidAccumulator], dict]:
    """LPIPS, CLIP score and FID from ``cfg.metrics``; FID is skipped (with the reason) without weights."""
    lpips = clip = fid = None
    skipped = {}
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
    if cfg.fid.enabled:
        try:
            fid = FidAccumulator(InceptionFeatures(cfg.fid.weights).to(device), cfg.fid.patch_size)
        except FidUnavailable as err:
            logger.warning("FID skipped: %s", err)
            skipped["fid"] = str(err)
    else:
        skipped["fid"] = "disabled (metrics.fid.enabled=false)"
    return lpips, clip, fid, skipped


def _out_dir(cfg: DictConfig) -> Path:
    if cfg.out_dir:
        return Path(cfg.out_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    raise ValueError("out_dir is required outside a Hydra run")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluates as configured; returns the results dict (also in ``out_dir/results.json``)."""
    device = _device(cfg.device)
    out_dir = _out_dir(cfg)
    codec, codec_meta = build_codec(cfg, device)
    data = instantiate(cfg.data, _convert_="all")
    dataset = data.eval_dataset() if hasattr(data, "eval_dataset") else data
    captions = getattr(data, "captions", None)
    lpips, clip, fid, skipped = build_metrics(cfg.metrics, device)
    meta = {
        **codec_meta,
        "dataset": repr(data),
        "caption_set": {"source": repr(captions), "fingerprint": getattr(captions, "fingerprint", None)},
        "config": to_container(cfg),
        "skipped": skipped,
    }
    results = evaluate_dataset(
        codec, dataset, out_dir, name=cfg.name, lpips=lpips, clip=clip, fid=fid, ms_ssim_enabled=cfg.metrics.ms_ssim,
        save_bitstreams=cfg.save_bitstreams, caption_mode=cfg.caption_mode, meta=meta,
    )
    point = {k: v[0] for k, v in results["results"].items()}
    logger.info("%s: %s -> %s", cfg.name, point, out_dir / "results.json")
    if cfg.caption_sensitivity:
        caption_sensitivity(codec, dataset, out_dir / "sensitivity", name=cfg.name, lpips=lpips, clip=clip, meta=meta)
    return results


@hydra.main(config_path=str(CONFIG_DIR), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from taco_plus.data import DatasetPairingError

    try:
        run(cfg)
    except (FileNotFoundError, LpipsBackboneUnavailableError, ClipWeightsUnavailableError, DatasetPairingError) as err:
        logger.error("%s", err)  # what is missing and where to put it; no traceback needed
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
