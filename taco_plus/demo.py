"""The offline quickstart (``make demo``): a small TACO trained on CPU, every photo coded and compared with JPEG.
``python -m taco_plus.demo [--steps N] [--out DIR] [overrides]`` (docs/training.md, "The offline quickstart")."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

# OpenMP threads that sleep instead of spinning at barriers: on shared cores, spinning threads slowed a
# training step down up to 8x (2 busy cores). Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

JPEG_QUALITIES = (5, 10, 20, 35, 50, 75)
CAVEATS = ("The text tower is the UNTRAINED random-init tiny CLIP (`taco-tiny-clip`): its caption features carry "
           "no meaning, so this run cannot show any text guidance.",
           "The LPIPS loss term uses a RANDOM AlexNet backbone (stand-in; the real one must be downloaded) and the "
           "joint CLIP loss uses the same untrained tiny CLIP.",
           "A small model (N=64, M=128) trained for a few hundred CPU steps on 8 photos: the numbers show the "
           "pipeline working, not TACO's rate-distortion performance.")


def jpeg_baseline(images: Sequence[Tensor], qualities: Sequence[int] = JPEG_QUALITIES) -> dict[str, Any]:
    """JPEG (Pillow, 4:2:0) on ``images`` ((3, H, W) in [0, 1]): mean bpp and PSNR per quality."""
    from PIL import Image

    from taco_plus.images import to_uint8
    from taco_plus.metrics import psnr
    from taco_plus.results.format import make_results

    points = []  # (bpp, PSNR) per quality
    for q in qualities:
        rates, psnrs = [], []
        for x in images:
            buffer = io.BytesIO()
            Image.fromarray(to_uint8(x).permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=q)
            with Image.open(io.BytesIO(buffer.getvalue())) as img:
                decoded = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1) / 255.0
            rates.append(8 * len(buffer.getvalue()) / (x.shape[-2] * x.shape[-1]))
            psnrs.append(psnr(x, decoded))
        points.append((float(np.mean(rates)), float(np.mean(psnrs))))
    return make_results("JPEG (Pillow)", {"bpp": [b for b, _ in points], "psnr-rgb": [p for _, p in points]},
                        f"JPEG qualities {list(qualities)} on the same images", {"qualities": list(qualities)})


def write_summary(run_dir: Path, history, results, jpeg, minutes: float) -> Path:
    """``summary.md``: the caveats, first vs last training row, coding results against JPEG."""
    import pandas as pd

    point = {k: v[0] for k, v in results["results"].items()}
    train = pd.DataFrame([history[0], history[-1]], index=["first logged", "last logged"])
    train = train.reindex(columns=["step", "loss", "bpp", "mse", "lpips", "joint"]).rename(
        columns={"bpp": "bpp (estimate)", "lpips": "LPIPS (random backbone)"})
    jpeg_bpp, jpeg_psnr = jpeg["results"]["bpp"], jpeg["results"]["psnr-rgb"]
    coding = pd.DataFrame([("quickstart TACO", point["bpp"], point["psnr-rgb"])] + [
        (f"JPEG quality {q}", b, p) for q, b, p in zip(jpeg["meta"]["qualities"], jpeg_bpp, jpeg_psnr)],
        columns=["codec", "bpp", "PSNR (dB)"])
    nearest = int(np.argmin(np.abs(np.array(jpeg_bpp) - point["bpp"])))
    verdict = "below" if point["psnr-rgb"] < jpeg_psnr[nearest] else "above"
    text = "\n".join([
        "# taco-plus quickstart", "", f"Finished {datetime.now():%Y-%m-%d %H:%M}, {minutes:.1f} min in all.", "",
        "## Read this first", "", *[f"- {c}" for c in CAVEATS], "",
        "## Training (`train_log.csv`)", "", train.to_markdown(floatfmt=".5g", missingval="n/a"), "",
        "## Coding the full photos (`results.json`, `per_image.csv`)", "",
        "Real `.tacoz` files (`bitstreams/`), bpp from file sizes, decoded without the caption.", "",
        coding.to_markdown(index=False, floatfmt=".4f"), "",
        f"At {point['bpp']:.3f} bpp this model is {verdict} JPEG ({jpeg_psnr[nearest]:.2f} dB at "
        f"{jpeg_bpp[nearest]:.3f} bpp): expected after a few hundred CPU steps from scratch; TACO needs its 50 "
        "COCO epochs on a GPU to reach its published rate-distortion curves.", "",
        "Rate-distortion plot: `rd_psnr.png`. Checkpoint: `checkpoints/final.pt` "
        "(`taco-plus compress --checkpoint ...`).", ""])
    (run_dir / "summary.md").write_text(text, encoding="utf-8")
    return run_dir / "summary.md"


def run_demo(run_dir: Path, overrides: Sequence[str] = (), steps: Optional[int] = None) -> dict[str, Any]:
    """Trains, evaluates and reports into ``run_dir``; returns the paths and numbers."""
    from hydra.utils import instantiate

    from taco_plus.checkpoint import load_codec
    from taco_plus.codec import TacoCodec
    from taco_plus.schemas import compose
    from taco_plus.evaluate import evaluate_dataset
    from taco_plus.results.format import save_results
    from taco_plus.results.plot import plot_rd
    from taco_plus.train import train

    start = time.perf_counter()
    extra = [f"trainer.max_steps={steps}"] if steps is not None else []
    cfg = compose(["experiment=quickstart", f"data.image_dir={run_dir / 'photos'}", *extra, *overrides])
    print(*(f"NOTE: {caveat}" for caveat in CAVEATS), sep="\n")
    print(f"[1/3] training {cfg.trainer.max_steps} steps on CPU -> {run_dir}")
    result = train(cfg, run_dir)
    first, last = result.history[0], result.history[-1]
    print(f"      loss {first['loss']:.4f} (step {first['step']}) -> {last['loss']:.4f} (step {last['step']}); "
          f"bpp estimate {first['bpp']:.4f} -> {last['bpp']:.4f}")

    print("[2/3] coding every full photo to a real .tacoz file and decoding it (no caption)")
    dataset = instantiate(cfg.data, _convert_="all").eval_dataset()
    results = evaluate_dataset(TacoCodec(load_codec(result.final_checkpoint)), dataset, run_dir, name="quickstart TACO",
                               description=f"experiment=quickstart, {result.steps} steps; UNTRAINED tiny text tower",
                               meta={"caveats": list(CAVEATS), "train_steps": result.steps})
    point = {k: v[0] for k, v in results["results"].items()}
    print(f"      {len(dataset)} photos: {point['bpp']:.4f} bpp (file sizes), PSNR {point['psnr-rgb']:.2f} dB")

    print("[3/3] JPEG on the same photos, RD plot, summary")
    jpeg = jpeg_baseline([item["image"] for item in dataset])
    save_results(jpeg, run_dir / "jpeg.json")
    plot_rd([results, jpeg], run_dir / "rd_psnr.png", "psnr-rgb", title="quickstart (8 scikit-image photos): PSNR vs bpp")
    minutes = (time.perf_counter() - start) / 60
    summary = write_summary(run_dir, result.history, results, jpeg, minutes)
    print(f"done in {minutes:.1f} min: {summary}")
    return {"run_dir": run_dir, "history": result.history, "results": results, "summary": summary}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/quickstart-<timestamp>)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the experiment's)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. loss.lmbda=0.01")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_demo(args.out or Path("runs") / f"quickstart-{datetime.now():%Y%m%d-%H%M%S}", args.overrides, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
