"""Evaluation throughput with 0, 1, 2... coding workers, and our rANS decoder against CompressAI's.
A random-init TACO through ``evaluate_dataset`` per worker count, then both decoders on one y stream
(docs/evaluation.md, "Coding workers")::

    python -m taco_plus.bench.evaluate --images 8 --workers 0,1,2 [--device cuda --model taco]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from compressai.ans import RansDecoder

from taco_plus.checkpoint import LoadedCodec
from taco_plus.codec import TacoCodec
from taco_plus.coding.bitstream import unpack
from taco_plus.coding.rans import RansStream
from taco_plus.evaluate import evaluate_dataset
from taco_plus.evaluate.workers import code_job, coding_pool, encode_network
from taco_plus.images import load_image
from taco_plus.models import TACO

DEFAULT_COCO = Path(os.environ.get("TACO_DATA", "data")) / "coco_mini" / "val2017"
MODELS = {"tiny": (32, 64, (4, 4, 8, 16, 32)), "small": (64, 128, (8, 8, 16, 32, 64)), "taco": (192, 320, (16, 16, 32, 64, 192))}


def rans_ns_per_symbol(codec, x, repeat: int = 7) -> tuple[int, float, float]:
    """(symbols, ours, CompressAI's) ns per symbol decoding one y stream: medians after an untimed call each."""
    tables, job = codec.model.gaussian_conditional.tables(), encode_network(codec, x, "")[0]
    string, indexes, lists = unpack(code_job(job, tables).data).y_string, torch.from_numpy(job.indexes), tables.encoder_lists()
    times: tuple[list, list] = ([], [])
    for _ in range(repeat + 1):
        for clock, decode in zip(times, (lambda: RansStream(string, tables, indexes.numel()).decode(indexes),
                                         lambda: RansDecoder().decode_with_indexes(string, job.indexes.tolist(), *lists))):
            start = time.perf_counter()
            decode()
            clock.append(time.perf_counter() - start)
    return indexes.numel(), *(1e9 * statistics.median(t[1:]) / indexes.numel() for t in times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m taco_plus.bench.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=8, help="first N images of the folder (sorted)")
    p.add_argument("--folder", type=Path, default=DEFAULT_COCO, help="JPEG/PNG images (default: $TACO_DATA/coco_mini/val2017)")
    p.add_argument("--workers", default="0,1,2", help="comma-separated coding worker counts")
    p.add_argument("--model", choices=MODELS, default="small")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    paths = sorted(q for q in args.folder.glob("*") if q.suffix.lower() in (".jpg", ".png"))[: args.images]
    if not paths:
        p.error(f"no images in {args.folder}")
    torch.manual_seed(0)
    model = TACO(*MODELS[args.model], text_dim=512).eval().to(args.device)
    model.update(force=True)
    codec = TacoCodec(LoadedCodec(model, {"_target_": "taco_plus.text.ClipTextEncoder", "model_name": "ViT-B-32",
                                          "pretrained": None, "max_tokens": 38}))
    codec.text_encoder.to(args.device)
    items = [{"image": load_image(path), "caption": "a photo", "id": path.name} for path in paths]
    print(f"# {len(items)} images of {args.folder} (mean {sum(i['image'][0].numel() for i in items) / len(items) / 1e6:.2f} "
          f"MP), TACO {args.model} random init, {args.device}, {platform.machine()}, {torch.get_num_threads()} torch "
          f"threads, torch {torch.__version__}\n{'workers':>7} {'images/s':>9} {'wall s':>8} {'network s':>10} "
          f"{'coding s':>9} {'metrics s':>10} {'wall/max(network,coding)':>25}")
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            pool = coding_pool(codec, workers)
            evaluate_dataset(codec, items[:1], Path(tmp, f"warm{workers}"), name="warm-up", coding_workers=pool or 0)
            start = time.perf_counter()
            split = evaluate_dataset(codec, items, Path(tmp, str(workers)), name="bench",
                                     coding_workers=pool or 0)["meta"]["time_split"]
            wall = time.perf_counter() - start
            pool and pool.shutdown()
            rows = [r.split(",")[:9] for r in Path(tmp, str(workers), "per_image.csv").read_text().splitlines()]
            reference = reference or rows  # every count must give the same numbers (timing columns left out)
            print(f"{workers:>7} {len(items) / wall:>9.2f} {wall:>8.2f} {split['network_s']:>10.2f} {split['coding_s']:>9.2f} "
                  f"{split['metrics_s']:>10.2f} {wall / max(split['network_s'], split['coding_s']):>25.2f}"
                  + ("" if rows == reference else "  RESULTS DIFFER FROM THE FIRST COUNT"))
    symbols, ours, theirs = rans_ns_per_symbol(codec, items[0]["image"])
    print(f"\nrANS decoding of one y stream ({symbols:,} symbols, {paths[0].name}): taco_plus RansStream {ours:.1f} "
          f"ns/symbol, compressai RansDecoder {theirs:.1f} ns/symbol (lists prepared beforehand): ratio {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
