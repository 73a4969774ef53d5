"""The text adapter's codec overhead: TACO vs CompressAI's ELIC, encode and decode time.
TACO (official sizes, random weights, random 38-token caption features) against ``Elic2022Official`` (He et
al., CVPR 2022; same widths and channel groups) on the same Kodak images; method and caveats:
docs/attention.md, "Benchmark: python -m taco_plus.bench.codec"::

    python -m taco_plus.bench.codec --images 3 --repeat 3
    python -m taco_plus.bench.codec --image kodim23.png --clock cpu --threads 1 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import torch
from compressai.models import Elic2022Official
from torch import Tensor, nn

from taco_plus.bench import measure
from taco_plus.bench.attention import parse_size, positive_int
from taco_plus.distributed import resolve_device
from taco_plus.images import load_image, pad_to_multiple
from taco_plus.models import TACO

COLUMNS = ["image", "model", "height", "width", "encode_ms", "decode_ms", "g_a_ms", "bytes", "bpp", "device", "clock"]


def kodak_images(folder: Path, count: int, names: Sequence[str] = ()) -> list[Path]:
    """The first ``count`` PNGs of ``folder`` (sorted), or the named ones."""
    if not (paths := sorted(Path(folder).glob("*.png"))):
        raise FileNotFoundError(f"no PNG images in {folder}: download Kodak (`taco-plus download kodak`) "
                                "or pass --kodak DIR")
    if missing := [n for n in names if not (Path(folder) / n).is_file()]:
        raise FileNotFoundError(f"not in {folder}: {', '.join(missing)}")
    return [Path(folder) / n for n in names] if names else paths[:count]


def build_models(device: torch.device, tokens: int, N: int = 192, M: int = 320) -> tuple[dict[str, nn.Module], Tensor]:
    """TACO and ELIC (same N, M and channel groups), random init, CDFs built; caption features."""
    if M <= 128 or N % 8:
        raise ValueError(f"need M > 128 (ELIC's groups 16,16,32,64,M-128) and N divisible by 8, got N={N}, M={M}")
    torch.manual_seed(0)
    groups = [16, 16, 32, 64, M - 128]
    models = {"taco": TACO(N, M, groups), "elic": Elic2022Official(N=N, M=M, groups=groups)}
    for m in models.values():
        m.to(device).eval().update(force=True)
    text = torch.randn(1, tokens, models["taco"].text_dim, device=device)
    return models, text


def bench_image(models: dict[str, nn.Module], text: Tensor, x: Tensor, repeat: int, device: torch.device,
                clock: str = "wall") -> dict[str, dict[str, float]]:
    """Median encode / decode / g_a times (ms) and bitstream size per model for one image."""
    times = {n: {"encode": [], "decode": [], "g_a": []} for n in models}
    sizes: dict[str, int] = {}
    for _ in range(repeat):
        for name, m in models.items():
            args, out = (x, text) if name == "taco" else (x,), {}
            # compressai's ELIC compress() is not no_grad-decorated (its in-place latent writes fail under autograd).
            with torch.no_grad():
                times[name]["encode"].append(measure.time_ms(lambda: out.update(m.compress(*args)), device, clock))
                sizes[name] = sum(len(s) for strings in out["strings"] for s in strings)
                times[name]["decode"].append(measure.time_ms(lambda: m.decompress(out["strings"], out["shape"]),
                                                             device, clock))
                times[name]["g_a"].append(measure.time_ms(lambda: m.g_a(*args), device, clock))
    return {n: {f"{k}_ms": measure.median(v) for k, v in t.items()} | {"bytes": sizes[n]} for n, t in times.items()}


def run_benchmark(image_paths: Sequence[Path], repeat: int = 3, tokens: int = 38, crop: Optional[tuple[int, int]] = None,
                  device: Optional[torch.device] = None, widths: tuple[int, int] = (192, 320), clock: str = "wall",
                  log=print) -> list[dict[str, Any]]:
    """One row per (image, model); see :data:`COLUMNS`."""
    device = device or resolve_device("auto")
    models, text = build_models(device, tokens, *widths)
    rows = []
    for path in image_paths:
        x = load_image(path)  # (3, H, W) in [0, 1]
        x = x if crop is None else x[:, : crop[1], : crop[0]]
        height, width = x.shape[-2:]
        x = pad_to_multiple(x[None], 64).to(device)
        bench_image(models, text, x, 1, device, clock)  # warm-up: first calls allocate buffers and pick kernels
        for name, r in bench_image(models, text, x, repeat, device, clock).items():
            rows.append(dict(image=path.name, model=name, height=height, width=width, device=str(device), clock=clock,
                             **r, bpp=8 * r["bytes"] / (height * width)))
            log(f"{path.name:<12} {name:<5} {width}x{height}  encode {r['encode_ms']:9.1f} ms  decode "
                f"{r['decode_ms']:9.1f} ms  g_a {r['g_a_ms']:9.1f} ms  {r['bytes']:>8} B")
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> list[str]:
    """TACO / ELIC ratios of the per-image medians, and the adapter's overhead."""
    med = pd.DataFrame(rows).groupby("model")[["encode_ms", "decode_ms", "g_a_ms", "bytes"]].median()
    taco, elic = med.loc["taco"], med.loc["elic"]
    lines = ["", f"{'median over images':<20} {'TACO ms':>10} {'ELIC ms':>10} {'TACO/ELIC':>10}"]
    lines += [f"{label:<20} {taco[k]:>10.1f} {elic[k]:>10.1f} {taco[k] / elic[k]:>10.3f}"
              for k, label in (("encode_ms", "encode"), ("decode_ms", "decode"), ("g_a_ms", "g_a only"))]
    enc, g_a = (taco[k] / elic[k] - 1 for k in ("encode_ms", "g_a_ms"))
    return lines + [f"TACO vs ELIC: encode {100 * enc:+.1f}%, analysis transform {100 * g_a:+.1f}% (adapter included; "
                    "TACO's paper: the adapter costs about +10%)",
                    f"median bitstream: TACO {taco['bytes']:.0f} B, ELIC {elic['bytes']:.0f} B (random weights: "
                    "entropy-coding time follows the bitstream size)"]


def parse_widths(text: str) -> tuple[int, int]:
    try:
        n, m = (int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be N,M, got {text!r}") from None
    return n, m


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m taco_plus.bench.codec", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", type=Path, default=Path(os.environ.get("TACO_DATA", "data")) / "kodak",
                   help="folder of Kodak PNGs (default: $TACO_DATA/kodak, TACO_DATA defaulting to data)")
    p.add_argument("--images", type=positive_int, default=3, help="first N images (sorted)")
    p.add_argument("--image", action="append", default=[], metavar="NAME",
                   help="a Kodak file to run instead (repeatable), e.g. kodim23.png")
    p.add_argument("--repeat", type=positive_int, default=3)
    p.add_argument("--tokens", type=positive_int, default=38, help="caption length fed to TACO")
    p.add_argument("--crop", type=parse_size, default=None, help="WxH top-left crop, for quick runs")
    p.add_argument("--widths", type=parse_widths, default=(192, 320), help="N,M (default: official 192,320)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--clock", choices=measure.CLOCKS, default="wall",
                   help="wall time, or process CPU time (CPU only; for machines shared with other jobs)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's; 1 with --clock cpu)")
    p.add_argument("--csv", type=Path, default=Path("outputs/bench/codec.csv"))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device or "auto")
    # Process CPU time of several threads counts OpenMP's spin-waiting too, which grows
    # with contention: with --clock cpu measure one thread unless told otherwise.
    threads = args.threads or (1 if args.clock == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    print(f"# device={device} ({platform.machine()}, {torch.get_num_threads()} threads), clock={args.clock}, "
          f"repeat={args.repeat}, N,M={args.widths}")
    try:
        paths = kodak_images(args.kodak, args.images, args.image)
        rows = run_benchmark(paths, args.repeat, args.tokens, args.crop, device, args.widths, args.clock)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(args.csv, index=False)
    print("\n".join(summary(rows)))
    print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
