"""Evaluation throughput with 0, 1, 2... coding workers, and our rANS decoder against CompressAI's.

Evaluates the same images (the shared COCO subset by default) with a random-init TACO (``--model``:
tiny, small or the paper's size; CLIP-sized random text features) through
:func:`taco_plus.evaluate.evaluate_dataset` with real files, PSNR and MS-SSIM, once per worker count
(docs/evaluation.md, "Coding workers"). Per count: images/s, the network / coding / metrics split
(seconds summed over images) and wall / max(network, coding). Then the per-symbol time of
:class:`~taco_plus.models.rans.RansStream` and ``compressai.ans.RansDecoder`` on one image's y stream::

    python -m taco_plus.bench.evaluate --images 8 --workers 0,1,2 [--device cuda] [--model taco]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_COCO = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco_mini" / "val2017"
MODELS = {"tiny": (32, 64, (4, 4, 8, 16, 32)), "small": (64, 128, (8, 8, 16, 32, 64)), "taco": (192, 320, (16, 16, 32, 64, 192))}


def rans_ns_per_symbol(codec, x, repeat: int = 7) -> tuple[int, float, float]:
    """(symbols, ours, CompressAI's) ns per symbol decoding one image's y stream, median of ``repeat`` after one
    untimed call of each."""
    from compressai.ans import RansDecoder

    from taco_plus.bitstream import unpack
    from taco_plus.evaluation.coding import code_job, encode_network
    from taco_plus.models.rans import RansStream

    tables = codec.model.gaussian_conditional.tables()
    job = encode_network(codec, x, "")[0]
    string, indexes = unpack(code_job(job, tables).data).y_string, torch.from_numpy(job.indexes)
    cdfs, lengths, offsets = tables.encoder_lists()
    ours, theirs, index_list = [], [], job.indexes.tolist()
    for _ in range(repeat + 1):
        start = time.perf_counter()
        RansStream(string, tables, indexes.numel()).decode(indexes)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        RansDecoder().decode_with_indexes(string, index_list, cdfs, lengths, offsets)
        theirs.append(time.perf_counter() - start)
    return indexes.numel(), *(1e9 * statistics.median(t[1:]) / indexes.numel() for t in (ours, theirs))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m taco_plus.bench.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=8, help="first N images of the folder (sorted)")
    p.add_argument("--folder", type=Path, default=DEFAULT_COCO, help="images (default: the shared COCO subset)")
    p.add_argument("--workers", default="0,1,2", help="comma-separated coding worker counts")
    p.add_argument("--model", choices=MODELS, default="small")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from taco_plus.checkpoint import LoadedCodec
    from taco_plus.codec import TacoCodec
    from taco_plus.evaluate import evaluate_dataset
    from taco_plus.evaluation.coding import coding_pool
    from taco_plus.images import load_image
    from taco_plus.models import TACO

    paths = sorted(args.folder.glob("*.jpg"))[: args.images] or sorted(args.folder.glob("*.png"))[: args.images]
    if not paths:
        p.error(f"no images in {args.folder}")
    torch.manual_seed(0)
    N, M, groups = MODELS[args.model]
    model = TACO(N, M, groups, text_dim=512).eval().to(args.device)
    model.update(force=True)
    text = {"_target_": "taco_plus.text.ClipTextEncoder", "model_name": "ViT-B-32", "pretrained": None, "max_tokens": 38}
    codec = TacoCodec(LoadedCodec(model, text))
    codec.text_encoder.to(args.device)
    items = [{"image": load_image(path), "caption": "a photo", "id": path.name} for path in paths]
    pixels = sum(i["image"][0].numel() for i in items) / len(items)
    print(f"# {len(items)} images of {args.folder} (mean {pixels / 1e6:.2f} MP), TACO {args.model} (N={N}, M={M}, "
          f"random init), device {args.device}, {platform.machine()} with {torch.get_num_threads()} torch threads, "
          f"{platform.python_implementation()} {platform.python_version()}, torch {torch.__version__}")
    print(f"{'workers':>7} {'images/s':>9} {'wall s':>8} {'network s':>10} {'coding s':>9} {'metrics s':>10} "
          f"{'wall/max(net,coding)':>21}")
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            pool = coding_pool(codec, workers)
            evaluate_dataset(codec, items[:1], Path(tmp, f"warm{workers}"), name="warm-up", coding_workers=pool or 0)
            start = time.perf_counter()
            out = evaluate_dataset(codec, items, Path(tmp, str(workers)), name="bench", coding_workers=pool or 0)
            wall, split = time.perf_counter() - start, out["meta"]["time_split"]
            if pool is not None:
                pool.shutdown()
            rows = Path(tmp, str(workers), "per_image.csv").read_text().splitlines()
            same = [r.split(",")[:9] for r in rows]  # timing columns left out
            reference = reference or same
            print(f"{workers:>7} {len(items) / wall:>9.2f} {wall:>8.2f} {split['network_s']:>10.2f} "
                  f"{split['coding_s']:>9.2f} {split['metrics_s']:>10.2f} "
                  f"{wall / max(split['network_s'], split['coding_s']):>21.2f}"
                  + ("" if same == reference else "  RESULTS DIFFER FROM THE FIRST COUNT"))
    symbols, ours, theirs = rans_ns_per_symbol(codec, items[0]["image"])
    print(f"\nrANS decoding of one y stream ({symbols:,} symbols, {paths[0].name}): taco_plus RansStream "
          f"{ours:.1f} ns/symbol, compressai RansDecoder {theirs:.1f} ns/symbol (its Python lists prepared "
          f"beforehand): ours/theirs {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
