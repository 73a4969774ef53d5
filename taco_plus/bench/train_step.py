"""Training-step benchmark: steps/s and peak memory of the whole TACO training step.
``Trainer.step`` on the components of ``experiment=taco_baseline`` for every ``attention`` option and the ELIC
baseline, fp32/bf16, eager/compiled, beside the loader's images/s; docs/training.md, "GPU step time"::

    python -m taco_plus.bench.train_step --data DIR --split train2017 [Hydra overrides]
    make bench-gpu                                                      # the prepared GPU run
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pandas as pd
import torch
from torch.utils.data import ConcatDataset

from taco_plus.bench import measure
from taco_plus.bench.attention import attention_options, parse_list, positive_int
from taco_plus.schemas import compose
from taco_plus.distributed import resolve_device

BASELINE = "elic"
PRECISIONS = ("fp32", "bf16")
# Random init of the real architectures (timing needs no trained weights).
RANDOM_WEIGHTS = ("text_encoder.pretrained=null", "loss.lpips.pretrained=false", "loss.joint.pretrained=null")
# The baseline's loss: zero-weight terms are not built (build_loss). Its text tower is the
# tiny one: the trainer's step encodes captions, ELIC ignores them.
BASELINE_OVERRIDES = ("loss.k_p=0", "loss.k_j=0", "text_encoder.model_name=taco-tiny-clip")


def compose_variant(variant: str, data_dir: Path, split: str, overrides: Sequence[str] = ()):
    """The ``train`` config of one variant (user ``overrides`` before the variant's own)."""
    options = attention_options()
    if variant != BASELINE and variant not in options:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join([BASELINE, *options])}")
    images, annotations = Path(data_dir) / split, Path(data_dir) / "annotations" / f"captions_{split}.json"
    for path in (images, annotations):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: --data takes a COCO-style folder with SPLIT/ images and "
                                    f"annotations/captions_SPLIT.json (--split {split})")
    data = [f"data.image_dir={images}", f"captions.annotations_json={annotations}"]
    own = BASELINE_OVERRIDES if variant == BASELINE else (f"attention={variant}",)
    return compose(["experiment=taco_baseline", *RANDOM_WEIGHTS, *data, *overrides, *own])


def _loader(data: Any, dataset: Any, workers: int, seed: int = 0):
    """An iterator over ``data``'s training loader with ``workers`` worker processes."""
    data = copy.copy(data)
    data.num_workers = workers
    loader, sampler = data.train_loader(dataset, seed)
    sampler.set_epoch(0)
    return iter(loader)


def loader_images_per_s(data: Any, dataset: Any, workers: int, batches: int) -> float:
    """Steady images/s of the training loader: ``batches`` batches timed after the first one and the
    ``2 * workers`` prefetched meanwhile (the dataset repeated: no epoch ends inside the measurement)."""
    skip = 1 + 2 * workers  # DataLoader's prefetch_factor is 2 per worker
    repeats = math.ceil((skip + batches) * data.batch_size / len(dataset))
    batches_it = _loader(data, ConcatDataset([dataset] * repeats), workers)
    for _ in range(skip):
        next(batches_it)
    start = time.perf_counter()
    for _ in range(batches):
        next(batches_it)
    return batches * data.batch_size / (time.perf_counter() - start)


def step_runner(cfg, variant: str, device: torch.device) -> tuple[Callable[..., Callable[[], Any]], int]:
    """Builds a variant as training does; returns ``make(batch, precision, compiled)`` -> one
    training step, and the number of trained parameters."""
    from compressai.models import Elic2022Official
    from hydra.utils import instantiate

    from taco_plus.train.run import build_components, seed_everything

    seed_everything(int(cfg.trainer.seed))
    parts = build_components(cfg)
    if variant == BASELINE:
        parts.model = Elic2022Official(N=cfg.model.N, M=cfg.model.M, groups=list(cfg.model.slice_ch))
    # As Trainer.fit: components on the device, codec / quantile parameters, optimisers.
    model = parts.model.to(device).train()
    parts.text_encoder.to(device)
    parts.loss.to(device).train()
    main_params, aux_params = instantiate(cfg.trainer).split_parameters(model)
    optimizer, aux_optimizer = parts.optimizer(main_params), parts.aux_optimizer(aux_params)

    def make(batch: dict, precision: str, compiled: bool) -> Callable[[], Any]:
        trainer = instantiate(cfg.trainer, precision=precision)
        codec = torch.compile(model) if compiled else model
        net = (lambda x, *text: codec(x)) if variant == BASELINE else codec  # ELIC takes no text
        return lambda: trainer.step(batch, parts, model, (optimizer, aux_optimizer), net)

    return make, sum(p.numel() for p in main_params)


def time_step(step: Callable[[], Any], warmup: int, steps: int, device: torch.device, clock: str) -> dict[str, float]:
    """First-step seconds, median step time, steps/s and peak memory of one configuration."""
    first_s = measure.time_ms(step, device) / 1e3
    for _ in range(warmup - 1):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # The step reads its loss terms back (float()), so timing each step adds no synchronisation.
    step_ms = measure.median([measure.time_ms(step, device, clock) for _ in range(steps)])
    # On a GPU absolute: weights, optimiser states, frozen towers, activations.
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else measure.peak_memory_mb(step, device)
    return dict(steps_per_s=1e3 / step_ms, step_ms=step_ms, first_step_s=first_s, peak_mb=peak_mb)


def parse_compile(spec: str, variants: Sequence[str], precisions: Sequence[str]) -> set[tuple[str, str]]:
    """``all``, ``none`` or ``VARIANT[:PRECISION],...`` -> the (variant, precision) pairs compiled."""
    if spec in ("all", "none"):
        return {(v, p) for v in variants for p in precisions} if spec == "all" else set()
    pairs = set()
    for item in filter(None, spec.split(",")):
        variant, _, precision = item.partition(":")
        if variant not in variants or (precision and precision not in precisions):
            raise ValueError(f"--compile {item!r}: not among the variants {list(variants)} x precisions "
                             f"{list(precisions)} of this run")
        pairs |= {(variant, p) for p in ([precision] if precision else precisions)}
    return pairs


def run_benchmark(variants: Sequence[str], precisions: Sequence[str], compiled: set[tuple[str, str]], data_dir: Path,
                  split: str, workers: Sequence[int], steps: int = 20, warmup: int = 3, load_batches: int = 50,
                  device: Optional[torch.device] = None, clock: str = "wall", overrides: Sequence[str] = (),
                  csv: Optional[Path] = None, log: Callable[[str], None] = print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Steps table (one row per variant x precision x compile) and loader table (one row per worker count).
    With ``csv``, the steps table is rewritten after every row."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    device = device or resolve_device("auto")
    configs = {v: compose_variant(v, data_dir, split, overrides) for v in variants}  # fail early
    cfg = configs[variants[0]]
    data = instantiate(cfg.data, _convert_="all")
    dataset = data.train_dataset(seed=int(cfg.trainer.seed))
    batch = next(_loader(data, dataset, 0))
    B, _, H, W = batch["image"].shape
    log(f"# data: {len(dataset)} images of {Path(data_dir) / split}, batch {B}, {H}x{W} crops, real captions")
    pick = functools.partial(OmegaConf.select, cfg)  # None when the loss has no such term
    log(f"# weights: text tower {pick('text_encoder.model_name')} pretrained={pick('text_encoder.pretrained')}, "
        f"joint-loss CLIP {pick('loss.joint.model_name')} pretrained={pick('loss.joint.pretrained')}, LPIPS "
        f"{pick('loss.lpips.net')} pretrained={pick('loss.lpips.pretrained')}; None/False = RANDOM init of the real "
        "architecture (open_clip pretrained=None, lpips pnet_rand=True): timing needs no trained weights")
    if BASELINE in variants:
        log(f"# baseline {BASELINE}: CompressAI Elic2022Official, same N/M/groups, rate-distortion loss only, no text")
    loader = {w: loader_images_per_s(data, dataset, w, load_batches) for w in workers}
    loader_df = pd.DataFrame({"workers": list(loader), "images_per_s": list(loader.values())})
    log(loader_df.to_string(index=False, float_format="%.1f"))

    rows: list[dict[str, Any]] = []
    # Every eager row first, then the compiled ones (rebuilt): a slow compilation cannot
    # cost the eager table (with ``csv``, each row is on disk as soon as it is measured).
    for use_compile in (False, True):
        for variant in variants:
            todo = [p for p in precisions if not use_compile or (variant, p) in compiled]
            if not todo:
                continue
            make, params = step_runner(configs[variant], variant, device)
            for precision in todo:
                r = time_step(make(batch, precision, use_compile), warmup, steps, device, clock)
                images_per_s = r["steps_per_s"] * B
                min_workers = min((w for w in loader if loader[w] >= images_per_s), default=math.nan)
                rows.append(dict(variant=variant, precision=precision, compile=use_compile, **r,
                                 images_per_s=images_per_s, min_workers=min_workers, params_m=params / 1e6,
                                 batch=B, crop=H, device=str(device), clock=clock))
                log(f"  {variant} {precision} compile={use_compile}: {r['steps_per_s']:.3g} steps/s, "
                    f"{r['peak_mb']:.0f} MiB")
                if csv is not None:
                    write_csv(pd.DataFrame(rows), csv)
            del make
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            torch.compiler.reset()
    return pd.DataFrame(rows), loader_df


def write_csv(df: pd.DataFrame, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format="%.4f")


def loader_csv_path(csv: Path) -> Path:
    return csv.with_name(csv.stem + "_loader.csv")


def record(steps_df: pd.DataFrame, loader_df: pd.DataFrame, out_dir: Path, notes: Sequence[str]) -> Path:
    """Writes a GPU run into the results registry: ``train_step.csv``, ``train_step_loader.csv`` and
    ``train_step.provenance.json`` (command, GPU, versions)."""
    from taco_plus.atomic import file_sha256
    from taco_plus.results.provenance import environment

    csv = Path(out_dir) / "train_step.csv"
    write_csv(steps_df, csv)
    write_csv(loader_df, loader_csv_path(csv))
    provenance = {
        "format": "taco-plus/bench-provenance", "format_version": 1,
        "command": "python -m taco_plus.bench.train_step " + " ".join(sys.argv[1:]),
        "environment": environment(steps_df["device"].iloc[0]), "notes": list(notes),
        "files": {p.name: file_sha256(p) for p in (csv, loader_csv_path(csv))},
    }
    path = csv.with_name("train_step.provenance.json")
    path.write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m taco_plus.bench.train_step", description=__doc__.split("\n")[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the train config (e.g. data.batch_size=16)")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("TACO_DATA", "data")) / "coco",
                   help="COCO-style folder: SPLIT/ images and annotations/captions_SPLIT.json")
    p.add_argument("--split", default="train2014")
    variants = [BASELINE, *attention_options()]
    p.add_argument("--variants", type=parse_list(str), default=variants, help=f"default: {','.join(variants)}")
    p.add_argument("--precisions", type=parse_list(str), default=list(PRECISIONS))
    p.add_argument("--compile", default="all", help="pairs also timed under torch.compile: all, none, or "
                   "VARIANT[:PRECISION],... (default all)")
    p.add_argument("--steps", type=positive_int, default=20, help="timed steps (median)")
    p.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first (compilation included)")
    p.add_argument("--workers", type=parse_list(int), default=[0, 4, 8], help="loader worker counts")
    p.add_argument("--load-batches", type=positive_int, default=50)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--clock", choices=measure.CLOCKS, default="wall", help="CPU only: wall or process CPU time")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--csv", type=Path, default=Path("outputs/bench/train_step.csv"),
                   help="steps table; the loader table goes beside it (*_loader.csv)")
    p.add_argument("--record", action="store_true", help="also write the tables into the results registry (GPU runs only)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = build_parser().parse_args(argv)
    device = resolve_device(args.device or "auto")
    try:
        if args.record and device.type != "cuda":
            raise ValueError(f"--record keeps GPU measurements only; this run is on {device}")
        if bad := sorted(set(args.precisions) - set(PRECISIONS)):
            raise ValueError(f"unknown precisions {bad}; choose among {PRECISIONS}")
        if any(w < 0 for w in args.workers):
            raise ValueError("--workers must be >= 0")
        compiled = parse_compile(args.compile, args.variants, args.precisions)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()
    notes = [f"# device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
             f"time: {'wall time + CUDA synchronisation' if cuda else args.clock + ' time'}, median of "
             f"{args.steps} steps after {args.warmup} warm-up steps; memory: "
             + ("torch.cuda.max_memory_allocated (absolute)" if cuda else "torch CPU allocations during one step")]
    print(notes[0])

    def log(line: str) -> None:
        print(line, flush=True)
        if line.startswith("#"):
            notes.append(line)  # the setup lines go into the registry's provenance

    try:
        steps_df, loader_df = run_benchmark(args.variants, args.precisions, compiled, args.data, args.split, args.workers,
                                            args.steps, args.warmup, args.load_batches, device, args.clock,
                                            args.overrides, args.csv, log)
    except (FileNotFoundError, ValueError, HydraException, OmegaConfBaseException) as err:
        print(f"error: {err}", file=sys.stderr)  # bad data folder, variant or override
        return 2
    write_csv(steps_df, args.csv)
    write_csv(loader_df, loader_csv_path(args.csv))
    print("\n" + steps_df.drop(columns=["device", "clock"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    behind = [f"{r.variant}/{r.precision}/compile={r.compile}" for r in steps_df[steps_df.min_workers.isna()].itertuples()]
    kept = f"not with: {', '.join(behind)}" if behind else f"all of them at {int(steps_df.min_workers.max())}"
    print(f"\nloading keeps up with {len(steps_df) - len(behind)} of {len(steps_df)} steps at some measured "
          f"worker count (min_workers); {kept}")
    print(f"wrote {args.csv} and {loader_csv_path(args.csv)}")
    if args.record:
        from taco_plus.experiments.record import RESULTS_DIR as REGISTRY_DIR

        print(f"recorded {record(steps_df, loader_df, REGISTRY_DIR / 'bench', notes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
