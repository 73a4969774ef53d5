"""Evaluation of a TACO codec on a captioned image set with real bitstreams: ``per_image.csv`` (written
as images finish: a stopped run resumes) and ``results.json`` (CompressAI format); docs/evaluation.md::

    python -m taco_plus.evaluate checkpoint=ckpt.pt data=kodak captions=kodak_ofa [caption_sensitivity=true]
    python -m taco_plus.evaluate checkpoint=ckpt.pt data=coco30k out_dir=runs/coco30k   # rerun to resume
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from taco_plus.checkpoint import LoadedCodec, build_model, load_codec
from taco_plus.codec import TacoCodec
from taco_plus.config import CONFIG_PATH, to_container
from taco_plus.evaluation import EvaluationJournal, EvaluationMismatchError, check_policy, code_image, policy_label, \
    progress_bar
from taco_plus.evaluation.schema import EvalConfig  # noqa: F401  (registers eval_schema)
from taco_plus.losses.lpips import LpipsBackboneUnavailableError, build_lpips
from taco_plus.metrics import MS_SSIM_MIN_SIDE, ClipScore, FidAccumulator, FidUnavailable
from taco_plus.results.format import make_results, save_results
from taco_plus.results.per_image import read_per_image_csv, summarize, write_per_image_csv
from taco_plus.results.provenance import environment, file_sha256
from taco_plus.results.sensitivity import CAPTION_MODES, derangement, sensitivity_table, write_sensitivity
from taco_plus.text.clip_loading import ClipWeightsUnavailableError
from taco_plus.train.trainer import resolve_device

logger = logging.getLogger(__name__)


def _check_item(item: Mapping[str, Any]) -> tuple[Tensor, list[str], str]:
    """A dataset item -> (image (3, H, W), real captions, id), with clear errors."""
    missing = [k for k in ("image", "caption", "id") if k not in item]
    if missing:
        raise ValueError(f"dataset items must be dicts with image, caption and id; missing {missing}")
    x, caption, image_id = item["image"], item["caption"], str(item["id"])
    if not isinstance(x, Tensor) or x.dim() != 3 or x.size(0) != 3:
        raise ValueError(f"{image_id}: image must be a (3, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    return x, list(item.get("captions") or [caption]), image_id


def _check_id(image_id: str) -> str:
    if Path(image_id).is_absolute() or ".." in Path(image_id).parts:
        raise ValueError(f"image id {image_id!r} must be a relative path inside the dataset")
    return image_id


def _items(dataset: Iterable[Mapping[str, Any]], done: set[str]) -> Iterator[tuple[str, Optional[Mapping]]]:
    """(id, item) in dataset order; the item is None for an id already done, which a
    dataset with ``ids`` (:class:`~taco_plus.data.CaptionedImageDataset`) does not read."""
    ids = getattr(dataset, "ids", None)
    if ids is not None and hasattr(dataset, "__getitem__"):
        for index, image_id in enumerate(ids):
            yield _check_id(str(image_id)), None if image_id in done else dataset[index]
        return
    for item in dataset:
        if "id" not in item:
            _check_item(item)  # says what is missing
        image_id = _check_id(str(item["id"]))
        yield image_id, None if image_id in done else item


def evaluate_dataset(codec: TacoCodec, dataset: Iterable[Mapping[str, Any]], out_dir: str | Path, *, name: str,
                     lpips: Optional[nn.Module] = None, clip: Optional[ClipScore] = None,
                     fid: Optional[FidAccumulator] = None, ms_ssim_enabled: bool = True, save_bitstreams: bool = True,
                     caption_mode: str = "real", caption_policy: str = "first", resume: bool = True,
                     description: str = "", meta: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Evaluates ``codec`` on ``dataset``; writes ``per_image.csv`` and ``results.json`` in ``out_dir``
    and returns the results (one rate point). Options and outputs: docs/evaluation.md.

    Args:
        codec: a :class:`~taco_plus.codec.TacoCodec`.
        dataset: items ``{"image": (3, H, W) in [0, 1], "caption": str, "id": str}``, optionally with
            ``"captions"`` (all of the image's); an item with ``"error"`` is an unreadable image
            (reported, counted in ``meta.unreadable_images``, skipped).
        out_dir: output folder; rows are written as images finish, and with ``resume`` an evaluation
            found there (same settings) continues where it stopped.
        name: curve name in the results file (an oracle's gets ``-oracle_lpips``).
        lpips / clip / fid: ``taco_plus.losses.build_lpips(...)``, :class:`~taco_plus.metrics.ClipScore`,
            a fresh :class:`~taco_plus.metrics.FidAccumulator`, or None.
        caption_mode: the encoder's caption, ``"real"``, ``"empty"`` or ``"other"`` (the next image's
            in sorted id order); the CLIP score always uses the real one.
        caption_policy: which real captions are coded, ``"first"``, ``"all"`` or ``"oracle_lpips"``.
    """
    if caption_mode not in CAPTION_MODES:
        raise ValueError(f"caption_mode must be one of {CAPTION_MODES}, got {caption_mode!r}")
    check_policy(caption_policy, caption_mode, lpips)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    others: dict[str, str] = {}  # id -> the caption coded with it in "other" mode
    if caption_mode == "other":
        captions = {}
        for item in dataset:
            _, caps, image_id = _check_item(item) if "error" not in item else (None, [item["caption"]], item["id"])
            captions[image_id] = caps[0]
        others = {i: captions[j] for i, j in derangement(list(captions)).items()}

    settings = {  # what changes the numbers: an evaluation resumes only with the same settings
        "model_fingerprint": codec.fingerprint.hex(), "text_encoder": codec.loaded.text_encoder_config,
        "weighting": codec.loaded.weighting_config,
        "lpips": None if lpips is None else (lpips.describe() if hasattr(lpips, "describe") else repr(lpips)),
        "clip_score": None if clip is None else clip.name, "fid": None if fid is None else fid.describe(),
        "caption_mode": caption_mode, "caption_policy": caption_policy, "ms_ssim": ms_ssim_enabled,
        "save_bitstreams": save_bitstreams,
    }
    journal = EvaluationJournal(out_dir, settings, fid, resume)
    total = len(dataset) if hasattr(dataset, "__len__") else None
    progress = progress_bar(total, journal.resumed, name)
    bitstreams = out_dir / "bitstreams" if save_bitstreams else None
    order, unreadable, mismatch = {}, [], 0.0  # order: the dataset's ids (a dict keeps their order)
    try:
        for image_id, item in _items(dataset, {row["id"] for row in journal.rows}):
            if image_id in order:
                raise ValueError(f"image id {image_id!r} appears twice in the dataset")
            order[image_id] = None
            if item is None:
                continue  # done by an earlier run
            if "error" in item:  # an unreadable image under bad_image=skip
                logger.warning("%s: skipped (bad_image=skip)", item["error"])
                unreadable.append(item["error"])
                progress.set_postfix_str(f"unreadable={len(unreadable)}", refresh=False)
                progress.update()
                continue
            x, captions, image_id = _check_item(item)
            coded = {"real": None, "empty": "", "other": others.get(image_id, "")}[caption_mode]
            row, fid_images, diff = code_image(codec, x, image_id, captions, caption_policy, bitstreams,
                                               encoder_caption=coded, lpips=lpips, clip=clip,
                                               ms_ssim_enabled=ms_ssim_enabled)
            mismatch = max(mismatch, diff)
            if fid is not None:
                for x_hat in fid_images:
                    fid.update(x[None], x_hat.cpu())
            journal.add(row)
            progress.update()
    finally:
        journal.close()
        progress.close()

    by_id = {row["id"]: row for row in journal.rows}
    stale = sorted(set(by_id) - set(order))
    if stale:
        logger.warning("%d rows in %s are not in this dataset and are left out: %s", len(stale), out_dir, stale[:5])
    rows = [by_id[i] for i in order if i in by_id]
    write_per_image_csv(rows, out_dir / "per_image.csv")  # dataset order
    results, counts = summarize(rows)
    notes, skipped = [], dict((meta or {}).get("skipped", {}))
    if ms_ssim_enabled and counts.get("ms-ssim-rgb", 0) < len(rows):
        notes.append(f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE} px on the short side (5 scales): "
                     f"{len(rows) - counts.get('ms-ssim-rgb', 0)} of {len(rows)} images are smaller and left out (nan)")
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable images were skipped (meta.unreadable_images)")
    if fid is not None:
        try:
            results["fid"] = [fid.compute()]
        except FidUnavailable as err:
            skipped["fid"] = str(err)
    if mismatch > 1.0 / 255:
        logger.warning("decoded images differ from the encoder's prediction by up to %.4f", mismatch)
    oracle = caption_policy == "oracle_lpips"
    run_meta = {
        "caption_mode": caption_mode, "caption_policy": caption_policy, "oracle": oracle, "images": len(rows),
        "resumed_images": journal.resumed, "unreadable_images": unreadable, "metric_images": counts,
        "bpp_from": "file sizes" if save_bitstreams else "bitstream lengths (files not kept)",
        "bitstreams": str(bitstreams) if save_bitstreams else None, "decode_vs_encoder_max_abs_diff": mismatch,
        "lpips": settings["lpips"], "lpips_convention": getattr(lpips, "convention", None),
        "clip_score": settings["clip_score"], "fid": settings["fid"], "notes": notes, "skipped": skipped,
        "environment": environment(codec.device), **{k: v for k, v in (meta or {}).items() if k != "skipped"},
    }
    description = description or f"caption_mode={caption_mode}, caption_policy={caption_policy}, bpp from real bitstreams"
    if oracle:
        description += " [ORACLE: each image's caption chosen by LPIPS against the original]"
    data = make_results(policy_label(name, caption_policy), results, description, run_meta)
    save_results(data, out_dir / "results.json")
    return data


def caption_sensitivity(codec: TacoCodec, dataset: Iterable[Mapping[str, Any]], out_dir: str | Path, *,
                        name: str = "sensitivity", lpips: Optional[nn.Module] = None, clip: Optional[ClipScore] = None,
                        save_bitstreams: bool = False, resume: bool = True,
                        meta: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """Evaluates with the real, empty and another image's caption, each into ``out_dir/<mode>/``
    (resumable); writes ``out_dir/sensitivity.{md,csv}`` and returns its rows (real first)."""
    out_dir = Path(out_dir)
    for mode in CAPTION_MODES:
        logger.info("caption sensitivity: %s captions", mode)
        evaluate_dataset(codec, dataset, out_dir / mode, name=f"{name}-{mode}", lpips=lpips, clip=clip,
                         save_bitstreams=save_bitstreams, caption_mode=mode, resume=resume, meta=meta)
    table = sensitivity_table({m: read_per_image_csv(out_dir / m / "per_image.csv") for m in CAPTION_MODES})
    md, _ = write_sensitivity(table, out_dir)
    logger.info("caption sensitivity table:\n%s", md.read_text(encoding="utf-8"))
    return table


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
    skipped = {}
    if cfg.fid.enabled:
        fid = FidAccumulator.inception(cfg.fid.weights, cfg.fid.patch_size, device)
    else:
        skipped["fid"] = "disabled (metrics.fid.enabled=false)"
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
    """Evaluates as configured; returns the results dict (also in ``out_dir/results.json``)."""
    device = resolve_device(cfg.device)
    if not cfg.out_dir and not HydraConfig.initialized():
        raise ValueError("out_dir is required outside a Hydra run")
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
    results = evaluate_dataset(codec, dataset, out_dir, name=cfg.name, lpips=lpips, clip=clip, fid=fid,
                               ms_ssim_enabled=cfg.metrics.ms_ssim, save_bitstreams=cfg.save_bitstreams,
                               caption_mode=cfg.caption_mode, caption_policy=cfg.caption_policy, resume=cfg.resume,
                               meta=meta)
    point = {k: v[0] for k, v in results["results"].items()}
    logger.info("%s: %s -> %s", cfg.name, point, out_dir / "results.json")
    if cfg.caption_sensitivity:
        caption_sensitivity(codec, dataset, out_dir / "sensitivity", name=cfg.name, lpips=lpips, clip=clip,
                            resume=cfg.resume, meta=meta)
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


if __name__ == "__main__":
    main()
