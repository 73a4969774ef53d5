"""Training-step time and FLOPs of each ablation's configuration, for cost estimates.

Builds the components of a composed ``train`` config exactly as
:func:`taco_plus.train.run.build_components` does (official sizes: N=192, M=320,
CLIP ViT-B/32 text features, TACO's loss with LPIPS(alex) and the joint CLIP loss)
and times :meth:`taco_plus.train.trainer.Trainer._step` -- the real training step:
text features, token weights, codec forward under autocast, loss, backward, clipping,
both optimiser steps -- on a synthetic batch of 8 random 256x256 crops.

Pretrained weights are not needed for timing: CLIP ViT-B/32 and AlexNet are built
with random weights (same architectures, same compute), so the measurement runs
offline. Every profile gets ``--warmup`` untimed steps (at least one: the first runs
under ``torch.utils.flop_counter`` and gives the FLOPs of the whole step, forward and
backward, a multiply-add counting 2), then ``--repeat`` timed steps: the median wall
time and the median process CPU time (all threads; unlike wall time it does not grow
when other jobs share the cores).

Usage::

    python -m taco_plus.experiments.step_time                        # all profiles, CPU, bf16
    python -m taco_plus.experiments.step_time --profiles full_38 --repeat 2 \
        --out experiments/results/cost/step_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from taco_plus.experiments.paths import REGISTRY_DIR, SHARED_DIR, relative_to_repo

# Overrides that replace pretrained weights by random init of the same architecture.
RANDOM_WEIGHTS = (
    "text_encoder.pretrained=null",
    "loss.lpips.pretrained=false",
    "loss.joint.pretrained=null",
)
# A regenerated caption is prompted to be 100-250 words (captions/prompts/detailed_scene_v1.txt).
LONG_CAPTION_WORDS = 170
COCO_TRAIN2014_IMAGES = 82783  # images in COCO train2014 (annotations file of the 2014 release)


@dataclass(frozen=True)
class Profile:
    """One configuration to time.

    Args:
        name: profile key (referenced by ``experiments/ablations.yaml``).
        overrides: Hydra overrides on top of ``experiment=taco_baseline``.
        captions: ``"short"`` (the quickstart's hand-written captions, truncated to
            the encoder's length) or ``"long"`` (about ``LONG_CAPTION_WORDS`` words).
        description: what differs from the baseline.
    """

    name: str
    overrides: tuple[str, ...]
    captions: str
    description: str


PROFILES = {
    p.name: p
    for p in (
        Profile("full_38", (), "short", "TACO: full attention, 38-token CLIP features"),
        Profile("linformer_38", ("attention=linformer",), "short", "Linformer adapter attention"),
        Profile("tfidf_ner_38", ("weighting=tfidf_ner",), "short",
                "TF-IDF + NER token weights (spaCy on every caption, no cache)"),
        Profile("full_chunked_long", ("text_encoder.max_tokens=chunked",), "long",
                f"{LONG_CAPTION_WORDS}-word captions, chunked 77-token CLIP windows, full attention"),
        Profile("linformer_chunked_long", ("text_encoder.max_tokens=chunked", "attention=linformer"), "long",
                f"{LONG_CAPTION_WORDS}-word captions, chunked CLIP windows, Linformer attention"),
        Profile("adapter_only_38", ("trainer.trainable=adapter",), "short",
                "only the adapter trained (fine-tuning an official checkpoint)"),
    )
}


def _captions(kind: str, batch: int) -> list[str]:
    """Real English captions: the quickstart set's hand-written ones (29-56 words),
    or several of them joined to about ``LONG_CAPTION_WORDS`` words."""
    from taco_plus.captions.sources import CaptionSetSource
    from taco_plus.experiments.paths import REPO_ROOT

    source = CaptionSetSource(REPO_ROOT / "captions" / "skimage_quickstart.json")
    texts = [c for i in source.ids() for c in source.captions(i)]
    if kind == "short":
        return [texts[i % len(texts)] for i in range(batch)]
    out = []
    for i in range(batch):
        words: list[str] = []
        j = i
        while len(words) < LONG_CAPTION_WORDS:
            words += texts[j % len(texts)].split()
            j += 1
        out.append(" ".join(words[:LONG_CAPTION_WORDS]))
    return out


def _tfidf_artefact(folder: Path) -> Path:
    """A TF-IDF artefact fitted on the quickstart captions (timing only needs one)."""
    from taco_plus.experiments.paths import REPO_ROOT
    from taco_plus.weighting import TfidfStatistics, load_corpus

    path = folder / "tfidf.json"
    TfidfStatistics.fit(load_corpus(REPO_ROOT / "captions" / "skimage_quickstart.json")).save(path)
    return path


def build_step(profile: Profile, batch_size: int, crop: int, precision: str, workdir: Path,
               extra: Sequence[str] = ()) -> Callable[[], dict]:
    """Builds the profile's components and returns a function running one training step.

    ``extra`` overrides go last (tests use toy sizes: ``model=tiny text_encoder=tiny ...``).
    """
    import torch
    from hydra.utils import instantiate

    from taco_plus.config import compose, to_container
    from taco_plus.train.distributed import DistContext
    from taco_plus.train.run import build_loss, build_weighting
    from taco_plus.train.trainer import Components, _Progress

    overrides = ["experiment=taco_baseline", *RANDOM_WEIGHTS, "trainer.device=cpu",
                 f"trainer.precision={precision}", *profile.overrides]
    if "weighting=tfidf_ner" in profile.overrides:
        overrides.append(f"weighting.tfidf_artefact={_tfidf_artefact(workdir)}")
    cfg = compose([*overrides, *extra])
    torch.manual_seed(0)
    trainer = instantiate(cfg.trainer, _convert_="all")
    text_encoder = instantiate(cfg.text_encoder, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    parts = Components(
        model=model, text_encoder=text_encoder, weighting=build_weighting(cfg.weighting, None), data=None,
        loss=build_loss(cfg.loss), optimizer=instantiate(cfg.optim.optimizer, _convert_="all"),
        aux_optimizer=instantiate(cfg.optim.aux_optimizer, _convert_="all"),
        scheduler=instantiate(cfg.optim.scheduler, _convert_="all"), scheduler_unit=cfg.optim.scheduler_unit,
        clip_max_norm=float(cfg.optim.clip_max_norm), model_config=to_container(cfg.model),
        text_encoder_config=to_container(cfg.text_encoder), weighting_config=None,
    )
    main_params, aux_params = trainer.split_parameters(model)
    optimizer, aux_optimizer = parts.optimizer(main_params), parts.aux_optimizer(aux_params)
    device = torch.device("cpu")
    model.train()
    parts.loss.train()
    generator = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(batch_size, 3, crop, crop, generator=generator),
             "caption": _captions(profile.captions, batch_size)}
    layout_len = int(text_encoder(batch["caption"]).tokens.shape[1])

    def step() -> dict:
        trainer._step(batch, parts, model, model, optimizer, aux_optimizer, main_params, device,
                      DistContext(), _Progress(), None)
        return {"layout_tokens": layout_len}

    step.trainable_params = sum(p.numel() for p in main_params)  # type: ignore[attr-defined]
    step.layout_tokens = layout_len  # type: ignore[attr-defined]
    return step


def measure_profile(
    profile: Profile, batch_size: int = 8, crop: int = 256, precision: str = "bf16", repeat: int = 3,
    warmup: int = 1, log: Callable[[str], None] = print, extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Median step time (s) and FLOPs of one profile."""
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as tmp:
        step = build_step(profile, batch_size, crop, precision, Path(tmp), extra)
        # FLOPs are counted during the first (untimed) step: the counter slows it down.
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        for _ in range(warmup - 1):
            step()
        times, cpu_times = [], []
        for i in range(repeat):
            start, cpu_start = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            log(f"  {profile.name}: step {i + 1}/{repeat}: {times[-1]:.2f} s wall, {cpu_times[-1]:.2f} s CPU")
    return {
        "description": profile.description,
        "overrides": list(profile.overrides),
        "captions": profile.captions,
        "layout_tokens": step.layout_tokens,  # text tokens the adapter sees per caption
        "trainable_params": step.trainable_params,
        "step_s": [round(t, 4) for t in times],
        "median_step_s": round(statistics.median(times), 4),
        # Process CPU time (all threads): unaffected by other jobs time-slicing the cores.
        "cpu_s": [round(t, 4) for t in cpu_times],
        "median_cpu_s": round(statistics.median(cpu_times), 4),
        "flops_per_step": counter.get_total_flops(),
    }


def coco_min_side_fraction(annotation_files: Sequence[Path], min_side: int = 256) -> Optional[dict[str, Any]]:
    """Share of images with both sides >= ``min_side`` in COCO annotation files (a sample of
    COCO used to estimate how many train2014 images TACO's recipe keeps)."""
    sizes = []
    for path in annotation_files:
        if path.is_file():
            sizes += [(im["width"], im["height"]) for im in json.loads(path.read_text())["images"]]
    if not sizes:
        return None
    kept = sum(min(w, h) >= min_side for w, h in sizes)
    return {"sample": [relative_to_repo(p) for p in annotation_files if p.is_file()],
            "images": len(sizes), "kept": kept, "fraction": round(kept / len(sizes), 4)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(profiles: Sequence[str], out: Path, repeat: int = 2, warmup: int = 1, batch_size: int = 8,
        crop: int = 256, precision: str = "bf16", resume: bool = False) -> dict[str, Any]:
    """Measures ``profiles`` and writes the JSON record to ``out`` after each profile.

    With ``resume``, profiles already in ``out`` (measured with the same setup) are kept
    and not measured again: an interrupted measurement continues where it stopped.
    """
    import torch

    from taco_plus.results.provenance import environment

    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        raise ValueError(f"unknown profiles {unknown}; known: {', '.join(PROFILES)}")
    setup = {"config": "experiment=taco_baseline (N=192, M=320, CLIP ViT-B/32, TACO loss)",
             "batch_size": batch_size, "crop": crop, "precision": precision, "repeat": repeat,
             "warmup": warmup, "weights": "random init of CLIP ViT-B/32 and AlexNet (same compute as "
             "the pretrained ones); synthetic random crops", "long_caption_words": LONG_CAPTION_WORDS}
    previous = json.loads(out.read_text(encoding="utf-8")) if resume and out.is_file() else None
    if previous is not None and previous.get("setup") != setup:
        raise ValueError(f"{out} was measured with another setup {previous.get('setup')}; cannot resume it")
    record: dict[str, Any] = previous or {
        "format": "taco-plus/step-time", "format_version": 1,
        "command": "python -m taco_plus.experiments.step_time " + " ".join(sys.argv[1:]),
        "environment": environment("cpu"),
        "cpu": {"model": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "loadavg_before": [round(v, 2) for v in os.getloadavg()],
                "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}},
        "setup": setup,
        "dataset": {"coco_train2014_images": COCO_TRAIN2014_IMAGES,
                    "min_side_256": coco_min_side_fraction(
                        [SHARED_DIR / "data" / "coco_mini" / "annotations" / f"captions_{s}2017.json"
                         for s in ("train", "val")])},
        "profiles": {},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in profiles:
        if name in record["profiles"]:
            print(f"profile {name}: kept from {out}", flush=True)
            continue
        print(f"profile {name}: {PROFILES[name].description}", flush=True)
        r = measure_profile(PROFILES[name], batch_size, crop, precision, repeat, warmup)
        r["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        record["profiles"][name] = r
        record["cpu"]["loadavg_after"] = r["loadavg_after"]
        out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")  # after every profile
        print(f"  median {r['median_step_s']:.2f} s/step wall, {r['median_cpu_s']:.2f} s CPU, "
              f"{r['flops_per_step'] / 1e12:.3f} TFLOP/step, "
              f"{r['layout_tokens']} text tokens", flush=True)
    print(f"wrote {out}")
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.experiments.step_time", description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", default=",".join(PROFILES), help=f"comma list (default all: {', '.join(PROFILES)})")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--out", type=Path, default=REGISTRY_DIR / "cost" / "step_time.json")
    parser.add_argument("--resume", action="store_true", help="keep the profiles already measured in --out")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's); 1 on a machine shared with other jobs, "
                             "where sibling threads spin-wait for each other")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 1:
        parser.error("--repeat and --warmup must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    try:
        run([p for p in args.profiles.split(",") if p], args.out, args.repeat, args.warmup, args.batch_size,
            args.crop, args.precision, args.resume)
    except ValueError as err:
        print(f"step_time: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
