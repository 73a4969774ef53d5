"""Adapter attention efficiency: every ``attention`` option over caption length and image size.
TACO's text adapter (``part=adapter``) and the whole g_a (``part=encoder``) at official sizes with random
weights; columns, methods and conclusions: docs/attention.md, "Benchmark"::

    python -m taco_plus.bench.attention --quick
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from taco_plus.bench import measure
from taco_plus.schemas import CONFIG_DIR
from taco_plus.distributed import resolve_device
from taco_plus.models.adapter import Extractor, Injector
from taco_plus.models.transforms import AnalysisTransform
from taco_plus.results import attention_bench as report

TOKENS = (38, 77, 154, 248, 308, 616, 1232, 2464)  # 248: Long-CLIP's whole context (text_encoder=longclip_b)
SIZES = ((256, 256), (768, 512), (2048, 1365))
QUICK = dict(tokens=(38, 77, 248, 308, 1232, 2464), sizes=((256, 256), (768, 512)), repeat=3)
OFFICIAL_DIMS = dict(N=192, M=320, text_dim=512, num_heads=8)
COLUMNS = ["variant", "tokens", "height", "width", "image_tokens", "part", "fwd_ms", "fwd_bwd_ms", "peak_mb",
           "fwd_bwd_peak_mb", "gflops", "device", "clock"]
# One printed line per measurement, as it comes: (column, alignment and width, number format).
PRINTED = (("variant", "<16", ""), ("tokens", ">6", ""), ("size", ">10", ""), ("part", "<8", ""), ("fwd_ms", ">10", ".1f"),
           ("fwd_bwd_ms", ">11", ".1f"), ("peak_mb", ">9", ".1f"), ("fwd_bwd_peak_mb", ">15", ".1f"), ("gflops", ">9", ".2f"))
LINE, HEADER = (" ".join(f"{{{n}:{w}{f}}}" for n, w, f in PRINTED), " ".join(f"{n:{w}}" for n, w, _ in PRINTED))


def attention_options(config_dir: Path = CONFIG_DIR) -> list[str]:
    """The options of the ``attention`` config group."""
    return sorted(p.stem for p in (Path(config_dir) / "attention").glob("*.yaml"))


def attention_factories(variant: str, config_dir: Path = CONFIG_DIR) -> tuple[Callable, Callable, Optional[Callable]]:
    """(injector, extractor, caption_summary) factories of the option ``attention=<variant>``, composed as
    training composes it with chunked captions (a caption summary covers 2,464 tokens, keeps its k)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    if variant not in attention_options(config_dir):
        raise FileNotFoundError(f"unknown attention variant {variant!r}: not in {config_dir}/attention")
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        node = compose("train", [f"attention={variant}", "text_encoder.max_tokens=chunked"]).attention
    summary = node.caption_summary
    return instantiate(node.injector), instantiate(node.extractor), summary and instantiate(summary)


def padded(size: int) -> int:
    return -(-size // 64) * 64


class AdapterPath(nn.Module):
    """The adapter blocks of a g_a, run on features of the shapes they see in g_a."""

    def __init__(self, g_a: AnalysisTransform) -> None:
        super().__init__()
        blocks = [m for m in g_a.analysis_transform if isinstance(m, (Injector, Extractor))]
        self.injector_h4, self.extractor, self.injector_h8 = blocks
        self.caption_summary = g_a.caption_summary

    def forward(self, image_h4: Tensor, image_h8: Tensor, text: Tensor) -> Tensor:
        if self.caption_summary is not None:
            text = self.caption_summary(text)  # (1, k, text_dim)
        out_h4 = self.injector_h4(image_h4, text)  # (1, N, H/4, W/4)
        text = self.extractor(text, image_h8)  # (1, L, text_dim)
        out_h8 = self.injector_h8(image_h8, text)  # (1, N, H/8, W/8)
        return out_h4.sum() + out_h8.sum()


def case_inputs(part: str, tokens: int, height: int, width: int, dims: dict[str, int], device) -> list[Tensor]:
    """Random inputs of ``part``: an image for g_a, image features at H/4 and H/8 for the adapter."""
    h, w, n = padded(height), padded(width), dims["N"]
    text = torch.randn(1, tokens, dims["text_dim"], device=device)
    if part == "encoder":
        return [torch.rand(1, 3, h, w, device=device), text]
    return [torch.randn(1, n, h // s, w // s, device=device) for s in (4, 8)] + [text]


def run_case(modules: dict[str, nn.Module], inputs: list[Tensor], repeat: int, warmup: int, train: bool,
             device: torch.device, clock: str = "wall") -> dict[str, dict[str, float]]:
    """Medians for every variant on the same inputs, variants interleaved inside each repeat."""

    def fwd(m: nn.Module) -> None:
        with torch.no_grad():
            m(*inputs)

    def fwd_bwd(m: nn.Module) -> None:
        m.zero_grad(set_to_none=True)
        m(*inputs).sum().backward()

    passes = [("fwd", fwd, "peak_mb")] + ([("fwd_bwd", fwd_bwd, "fwd_bwd_peak_mb")] if train else [])
    results = {v: {"gflops": measure.forward_gflops(m, *inputs)} for v, m in modules.items()}
    for name, call, peak in passes:
        for _ in range(warmup):
            for m in modules.values():
                call(m)
        times: dict[str, list[float]] = {v: [] for v in modules}
        for _ in range(repeat):
            for v, m in modules.items():
                times[v].append(measure.time_ms(lambda: call(m), device, clock))
        for v, m in modules.items():
            results[v][f"{name}_ms"] = measure.median(times[v])
            results[v][peak] = measure.peak_memory_mb(lambda: call(m), device)
    return results


def run_benchmark(variants: Sequence[str], tokens: Sequence[int], sizes: Sequence[tuple[int, int]],
                  train_sizes: Sequence[tuple[int, int]] = ((256, 256),), repeat: int = 3, warmup: int = 1,
                  dims: dict[str, int] = OFFICIAL_DIMS, device: Optional[torch.device] = None,
                  config_dir: Path = CONFIG_DIR, clock: str = "wall", log: Callable[[str], None] = print) -> pd.DataFrame:
    """Runs the grid; one row (:data:`COLUMNS`) per variant, caption length, image size and part."""
    device = device or resolve_device("auto")
    encoders: dict[str, AnalysisTransform] = {}
    for v in variants:
        torch.manual_seed(0)
        encoders[v] = AnalysisTransform(dims["N"], dims["M"], dims["text_dim"], dims["num_heads"],
                                        *attention_factories(v, config_dir)).to(device)
    rows, train_sizes = [], set(map(tuple, train_sizes))
    for width, height in sizes:
        for n_tokens in tokens:
            for part in report.PARTS:
                modules = {v: g if part == "encoder" else AdapterPath(g) for v, g in encoders.items()}
                inputs = case_inputs(part, n_tokens, height, width, dims, device)
                results = run_case(modules, inputs, repeat, warmup, (width, height) in train_sizes, device, clock)
                for v in variants:
                    rows.append(dict(variant=v, tokens=n_tokens, height=height, width=width, part=part,
                                     image_tokens=(padded(height) // 8) * (padded(width) // 8), fwd_bwd_ms=float("nan"),
                                     fwd_bwd_peak_mb=float("nan"), device=str(device), clock=clock) | results[v])
                    log(LINE.format(**rows[-1], size=f"{width}x{height}"))
    return pd.DataFrame(rows, columns=COLUMNS)


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(t) for t in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 768x512, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def parse_list(item: Callable[[str], Any]) -> Callable[[str], list]:
    return lambda text: [item(t) for t in text.split(",") if t]


def parse_dims(text: str) -> dict[str, int]:
    try:
        n, m, text_dim, heads = (int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"dims must be N,M,TEXT_DIM,HEADS, got {text!r}") from None
    return dict(N=n, M=m, text_dim=text_dim, num_heads=heads)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m taco_plus.bench.attention", description=__doc__.split("\n")[0])
    p.add_argument("--variants", type=parse_list(str), default=None,
                   help="attention options (default: every configs/attention/*.yaml)")
    p.add_argument("--tokens", type=parse_list(positive_int), default=None, help=f"default {TOKENS}")
    p.add_argument("--sizes", type=parse_list(parse_size), default=None, help=f"WxH list, default {SIZES}")
    p.add_argument("--train-sizes", type=parse_list(parse_size), default=[(256, 256)],
                   help="sizes at which forward+backward is timed (training crops)")
    p.add_argument("--repeat", type=positive_int, default=None, help="timed runs per figure (median), default 5")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--quick", action="store_true", help=f"smaller grid: {QUICK}")
    p.add_argument("--dims", type=parse_dims, default=OFFICIAL_DIMS, help="N,M,TEXT_DIM,HEADS (default: official 192,320,512,8)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--clock", choices=measure.CLOCKS, default="wall",
                   help="wall time, or process CPU time (CPU only; for machines shared with other jobs)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's; 1 with --clock cpu)")
    p.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    p.add_argument("--csv", type=Path, default=Path("outputs/bench/attention.csv"))
    p.add_argument("--plot", type=Path, default=Path("outputs/bench/attention.png"))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    grid = QUICK if args.quick else dict(tokens=TOKENS, sizes=SIZES, repeat=5)
    tokens, sizes, repeat = args.tokens or grid["tokens"], args.sizes or grid["sizes"], args.repeat or grid["repeat"]
    device = resolve_device(args.device or "auto")
    # Process CPU time of several threads counts OpenMP's spin-waiting too, which grows
    # with contention: with --clock cpu measure one thread unless told otherwise.
    threads = args.threads or (1 if args.clock == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    memory = ("torch.cuda.max_memory_allocated growth" if device.type == "cuda"
              else "peak of torch.profiler CPU allocation events (running sum of allocs - frees)")
    conditions = f"{datetime.date.today()}, device={device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)), " \
                 f"clock={args.clock}"
    print(f"# {conditions}, repeat={repeat}, dims={args.dims}, memory: {memory}, FLOPs: FlopCounterMode (forward)")
    print(HEADER)
    try:
        variants = args.variants or attention_options(args.config_dir)
        rows = run_benchmark(variants, tokens, sizes, args.train_sizes, repeat, args.warmup, args.dims, device,
                             args.config_dir, args.clock)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.csv, index=False, float_format="%.4f", na_rep="nan")
    report.plot(rows, args.plot, conditions)
    print(f"\nwrote {args.csv} and {args.plot}\n")
    print("\n".join(report.conclusions(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
