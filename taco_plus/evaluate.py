"""Evaluation of a TACO codec on a captioned image set with real bitstreams: ``per_image.csv`` (written
as images finish: a stopped run resumes) and ``results.json`` (CompressAI format); docs/evaluation.md::

    python -m taco_plus.evaluate checkpoint=ckpt.pt data=kodak captions=kodak_ofa [caption_sensitivity=true]
    python -m taco_plus.evaluate checkpoint=ckpt.pt data=coco30k out_dir=runs/coco30k   # rerun to resume
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import hydra
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from taco_plus.bitstream import MAX_SIDE
from taco_plus.checkpoint import LoadedCodec, build_model, load_codec
from taco_plus.codec import TacoCodec
from taco_plus.schemas import CONFIG_PATH, to_container
from taco_plus.evaluation import EvaluationJournal, EvaluationMismatchError, check_policy, encode_image, finish_image, \
    policy_label, progress_bar
from taco_plus.evaluation.coding import coding_pool, default_workers, submit
from taco_plus.evaluation.journal import UNREADABLE_FILE
from taco_plus.images import ImageReadError
from taco_plus.losses.lpips import LpipsBackboneUnavailableError, build_lpips
from taco_plus.metrics import MS_SSIM_MIN_SIDE, ClipScore, FidAccumulator, FidUnavailable
from taco_plus.results.format import make_results, save_results
from taco_plus.results.per_image import read_per_image_csv, summarize, write_per_image_csv
from taco_plus.results.provenance import environment, file_sha256
from taco_plus.results.sensitivity import CAPTION_MODES, derangement, sensitivity_table, write_sensitivity
from taco_plus.text.clip_loading import ClipWeightsUnavailableError
from taco_plus.train.trainer import resolve_device

logger = logging.getLogger(__name__)


def _index(dataset: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """(id, real captions) of every item in dataset order, with clear errors; a dataset with ``entries``
    (:class:`~taco_plus.data.CaptionedImageDataset`) reads no image for it."""
    entries = getattr(dataset, "entries", None)
    for item in dataset if entries is None else ():
        if not {"image", "caption", "id"} <= set(item):
            raise ValueError(f"dataset items must be dicts with image, caption and id; missing "
                             f"{sorted({'image', 'caption', 'id'} - set(item))}")
    entries = entries or [(item["id"], item.get("captions") or [item["caption"]]) for item in dataset]
    index = [(str(i), list(caps)) for i, caps in entries]
    for image_id, _ in index:
        if Path(image_id).is_absolute() or ".." in Path(image_id).parts:
            raise ValueError(f"image id {image_id!r} must be a relative path inside the dataset")
    twice = [i for i, n in Counter(i for i, _ in index).items() if n > 1]
    if twice or not index:
        raise ValueError(f"image id {twice[0]!r} appears twice in the dataset" if twice else "no images were evaluated: "
                         "the dataset is empty")
    return index


def _digest(value: Any, what: str) -> str:
    return f"sha256 {hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]} of {len(value)} {what}"


def _journaled(shards: list[Path]) -> int:  # images the ranks' journals hold: the global progress
    files = [s / f for s in shards for f in ("per_image.csv", UNREADABLE_FILE) if (s / f).is_file()]
    return sum(f.read_bytes().count(b"\n") for f in files) - len(shards)  # - the CSV headers


def evaluate_dataset(codec: TacoCodec, dataset: Iterable[Mapping[str, Any]], out_dir: str | Path, *, name: str,
                     lpips: Optional[nn.Module] = None, clip: Optional[ClipScore] = None,
                     fid: Optional[FidAccumulator] = None, ms_ssim_enabled: bool = True, save_bitstreams: bool = True,
                     caption_mode: str = "real", caption_policy: str = "first", resume: bool = True,
                     coding_workers: int | ProcessPoolExecutor = 0, description: str = "",
                     meta: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Evaluates ``codec`` on ``dataset``; writes ``per_image.csv`` and ``results.json`` in ``out_dir``
    and returns the results (one rate point). Options and outputs: docs/evaluation.md.

    Args:
        codec: a :class:`~taco_plus.codec.TacoCodec`.
        dataset: items ``{"image": (3, H, W) in [0, 1], "caption": str, "id": str}``, optionally with
            ``"captions"`` (all of the image's); an item with ``"error"``, or an image out of the codec's range,
            is unreadable (reported, counted in ``meta.unreadable_images``, skipped).
        out_dir: output folder, a journal: with ``resume`` an evaluation there (same settings) continues.
        name: curve name in the results file (an oracle's gets ``-oracle_lpips``).
        lpips / clip / fid: ``taco_plus.losses.build_lpips(...)``, :class:`~taco_plus.metrics.ClipScore`,
            a fresh :class:`~taco_plus.metrics.FidAccumulator`, or None.
        caption_mode: the encoder's caption, ``"real"``, ``"empty"`` or ``"other"`` (the next image's
            in sorted id order); the CLIP score always uses the real one.
        caption_policy: which real captions are coded, ``"first"``, ``"all"`` or ``"oracle_lpips"``.
        coding_workers: CPU processes entropy-coding beside the network (0: inline; same results), or a
            :func:`~taco_plus.evaluation.coding.coding_pool`. Under ``torch.distributed`` each rank evaluates
            every ``world_size``-th image into ``out_dir/shards/<rank>-of-<world_size>/``; rank 0 writes the files.
    """
    if caption_mode not in CAPTION_MODES:
        raise ValueError(f"caption_mode must be one of {CAPTION_MODES}, got {caption_mode!r}")
    check_policy(caption_policy, caption_mode, lpips)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    out_dir = Path(out_dir)
    index = _index(dataset)
    ids, captions_of = [image_id for image_id, _ in index], dict(index)
    others = {i: captions_of[j][0] for i, j in derangement(ids).items()} if caption_mode == "other" else {}
    settings = {  # what changes the numbers: an evaluation resumes only with the same settings
        "model_fingerprint": codec.fingerprint.hex(), "text_encoder": codec.loaded.text_encoder_config,
        "weighting": codec.loaded.weighting_config, "images": _digest(ids, "images"),
        "caption_set": _digest(index, "caption lists"), "shard": f"{rank} of {world}",
        "lpips": None if lpips is None else (lpips.describe() if hasattr(lpips, "describe") else repr(lpips)),
        "clip_score": None if clip is None else clip.name, "fid": None if fid is None else fid.describe(),
        "caption_mode": caption_mode, "caption_policy": caption_policy, "ms_ssim": ms_ssim_enabled,
        "save_bitstreams": save_bitstreams,
    }
    shards = [out_dir / "shards" / f"{r}-of-{world}" for r in range(world)] if world > 1 else [out_dir]
    (shards[rank] / "done").unlink(missing_ok=True)
    journal = EvaluationJournal(shards[rank], settings, fid, resume)
    if world > 1:
        dist.barrier()  # every journal open (stale "done" markers gone) before any rank can finish
    done = {row["id"] for row in journal.rows} | set(journal.unreadable)
    progress = progress_bar(len(ids), _journaled(shards) if world > 1 else len(done), name, enabled=rank == 0)
    bitstreams = out_dir / "bitstreams" if save_bitstreams else None
    times, mismatch, start, counted = Counter(), 0.0, time.perf_counter(), time.monotonic()
    pending: deque = deque()  # images whose coding jobs are in flight, in dataset order

    def finish() -> None:  # the oldest pending image: decode, measure, journal
        nonlocal mismatch, counted
        x, image_id, captions, encoded, futures = pending.popleft()
        row, fid_images, diff = finish_image(codec, x, image_id, captions, caption_policy, encoded,
                                             [f.result() for f in futures], times, lpips=lpips, clip=clip,
                                             ms_ssim_enabled=ms_ssim_enabled)
        mismatch = max(mismatch, diff)
        for x_hat in fid_images if fid is not None else ():
            fid.update(x[None], x_hat)
        journal.add(row)
        progress.update()
        if world > 1 and time.monotonic() - counted > 30:  # the global count, from every rank's journal
            progress.n, counted = _journaled(shards), time.monotonic()

    mine = {k for k in range(len(ids)) if k % world == rank and ids[k] not in done}
    items = (dataset[k] for k in sorted(mine)) if hasattr(dataset, "__getitem__") else \
        (item for k, item in enumerate(dataset) if k in mine)
    pool = coding_pool(codec, coding_workers) if isinstance(coding_workers, int) else coding_workers
    window = 2 * getattr(pool, "_max_workers", 0)  # images in flight: keep every worker busy
    try:
        for item in items:
            image_id, x = str(item["id"]), item.get("image")
            error = item.get("error")  # an unreadable image under bad_image=skip
            if error is None and (not isinstance(x, Tensor) or x.dim() != 3 or x.size(0) != 3):
                raise ValueError(f"{image_id}: image must be a (3, H, W) tensor, got {getattr(x, 'shape', type(x))}")
            if error is None and (max(x.shape[1:]) > MAX_SIDE or x.shape[1] * x.shape[2] > codec.max_pixels):
                error = (f"{Path(getattr(dataset, 'image_dir', '')) / image_id}: {x.shape[1]}x{x.shape[2]} is out of the "
                         f"codec's range (sides up to {MAX_SIDE}, {codec.max_pixels:,} pixels)")
            if error is not None:
                logger.warning("%s: skipped (bad_image=skip)", error)
                journal.skip(image_id, error)
                progress.set_postfix_str(f"unreadable={len(journal.unreadable)}", refresh=False)
                progress.update()
                continue
            coded = {"real": None, "empty": "", "other": others.get(image_id, "")}[caption_mode]
            encoded = encode_image(codec, x, image_id, captions_of[image_id], caption_policy, bitstreams, coded)
            pending.append((x, image_id, captions_of[image_id], encoded, [submit(pool, j, codec) for j, _, _ in encoded]))
            while len(pending) > window:
                finish()
        while pending:
            finish()
    finally:
        if pool is not None and pool is not coding_workers:
            pool.shutdown(cancel_futures=True)
        journal.close()
    rows, unreadable, resumed = journal.rows, journal.unreadable, journal.resumed
    if world > 1:
        (shards[rank] / "done").touch()  # polled, not a collective: ranks may end further apart than its timeout
        while not all((shard / "done").is_file() for shard in shards):
            time.sleep(1.0)
        progress.n = _journaled(shards)
        parts: list = [None] * world
        dist.all_gather_object(parts, (rows, unreadable, resumed, dict(times), mismatch))
        rows, unreadable = [r for p in parts for r in p[0]], {k: v for p in parts for k, v in p[1].items()}
        resumed, mismatch = sum(p[2] for p in parts), max(p[4] for p in parts)
        times = sum((Counter(p[3]) for p in parts), Counter())
    progress.close()
    by_id = {row["id"]: row for row in rows}
    rows = [by_id[i] for i in ids if i in by_id]  # dataset order
    unreadable = [unreadable[i] for i in ids if i in unreadable]
    if not rows and unreadable:
        raise ImageReadError(f"no image was evaluated: all {len(unreadable)} images of "
                             f"{getattr(dataset, 'image_dir', 'the dataset')} are unreadable (first: {unreadable[0]})")
    results, counts = summarize(rows)
    notes, skipped = [], dict((meta or {}).get("skipped", {}))
    if ms_ssim_enabled and counts.get("ms-ssim-rgb", 0) < len(rows):
        notes.append(f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE} px on the short side (5 scales): "
                     f"{len(rows) - counts.get('ms-ssim-rgb', 0)} of {len(rows)} images are smaller and left out (nan)")
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable images were skipped (meta.unreadable_images)")
    if clip is not None and clip.truncated:
        notes.append(f"CLIP score: {clip.truncated} captions were cut to the CLIP model's context length")
    if fid is not None:
        try:
            results["fid"] = [fid.compute()]  # every rank: torchmetrics reduces the sums across them
        except FidUnavailable as err:
            skipped["fid"] = str(err)
    if mismatch > 1.0 / 255:
        logger.warning("decoded latents differ from the encoder's by up to %.4f", mismatch)
    oracle = caption_policy == "oracle_lpips"
    run_meta = {
        "caption_mode": caption_mode, "caption_policy": caption_policy, "oracle": oracle, "images": len(rows),
        "resumed_images": resumed, "unreadable_images": unreadable, "metric_images": counts,
        "bpp_from": "file sizes" if save_bitstreams else "bitstream lengths (files not kept)",
        "bitstreams": str(bitstreams) if save_bitstreams else None, "decode_vs_encoder_max_abs_diff": mismatch,
        "lpips": settings["lpips"], "lpips_convention": getattr(lpips, "convention", None),
        "clip_score": settings["clip_score"], "fid": settings["fid"], "notes": notes, "skipped": skipped,
        "time_split": {**{k: round(v, 3) for k, v in times.items()}, "wall_s": round(time.perf_counter() - start, 3),
                       "coding_workers": getattr(pool, "_max_workers", 0), "processes": world},
        "environment": environment(codec.device), **{k: v for k, v in (meta or {}).items() if k != "skipped"},
    }
    description = description or f"caption_mode={caption_mode}, caption_policy={caption_policy}, bpp from real bitstreams"
    if oracle:
        description += " [ORACLE: each image's caption chosen by LPIPS against the original]"
    data = make_results(policy_label(name, caption_policy), results, description, run_meta)
    if rank == 0:
        write_per_image_csv(rows, out_dir / "per_image.csv")
        save_results(data, out_dir / "results.json")
    return data


def caption_sensitivity(codec: TacoCodec, dataset: Iterable[Mapping[str, Any]], out_dir: str | Path, *,
                        name: str = "sensitivity", lpips: Optional[nn.Module] = None, clip: Optional[ClipScore] = None,
                        save_bitstreams: bool = False, resume: bool = True, coding_workers: int = 0,
                        real: Optional[str | Path] = None, meta: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """Evaluates with the real, empty and another image's caption, each into ``out_dir/<mode>/``
    (resumable); writes ``out_dir/sensitivity.{md,csv}`` and returns its rows (real first). ``real``: the
    folder of an evaluation of the same images with their real (first) captions, whose rows are used."""
    out_dir = Path(out_dir)
    folders = {mode: out_dir / mode for mode in CAPTION_MODES} | ({"real": Path(real)} if real else {})
    for mode in CAPTION_MODES[1 if real else 0:]:
        logger.info("caption sensitivity: %s captions", mode)
        evaluate_dataset(codec, dataset, folders[mode], name=f"{name}-{mode}", lpips=lpips, clip=clip,
                         save_bitstreams=save_bitstreams, caption_mode=mode, resume=resume,
                         coding_workers=coding_workers, meta=meta)
    table = sensitivity_table({m: read_per_image_csv(folder / "per_image.csv") for m, folder in folders.items()})
    if not dist.is_initialized() or dist.get_rank() == 0:
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
    from taco_plus.train.run import init_distributed

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


if __name__ == "__main__":
    main()
