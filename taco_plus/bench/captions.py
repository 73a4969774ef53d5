"""Online caption-regeneration throughput against a loopback fake server.

    python -m taco_plus.bench.captions [--latency 0.2] [--concurrency 1 8 32]

Each chat completion takes a fixed ``--latency`` on the fake OpenAI-compatible server
(``taco_plus.captions.regenerate.fake_server``, run in a separate process), so the measured captions/second show
what the client side adds -- image encoding, the SDK, journaling with fsync, retries
bookkeeping -- against the ideal ``concurrency / latency``. The full
``regenerate()`` path runs, journal and caption-set writing included; the openai SDK
and the CLIP tokenizer used by the set's statistics are imported before timing starts. Nothing leaves
127.0.0.1.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from taco_plus.captions.regenerate import RegenerateConfig, regenerate
from taco_plus.captions.regenerate.fake_server import FakeOpenAIServer
from taco_plus.captions.stats import clip_token_count

BENCH_KEY = "bench-local-key"


def make_images(directory: Path, n: int, size: tuple[int, int] = (96, 64)) -> None:
    """``n`` random RGB PNGs of ``size`` (width, height)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / f"img{i:04d}.png")


def _serve(latency: float, conn) -> None:
    with FakeOpenAIServer(latency=latency, api_key=BENCH_KEY) as server:
        conn.send(server.base_url)
        conn.recv()  # until told to stop


@contextmanager
def server_process(latency: float) -> Iterator[str]:
    """A fake server in its own process (so it does not share the client's GIL); yields its URL."""
    parent, child = mp.Pipe()
    process = mp.get_context("spawn").Process(target=_serve, args=(latency, child), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(10)


def measure(concurrency: int, n_images: int, latency: float, workdir: Path) -> dict:
    """Caption ``n_images`` at ``concurrency``; returns seconds and captions/second."""
    out = workdir / f"c{concurrency}" / "set.json"
    with server_process(latency) as base_url:
        cfg = RegenerateConfig(
            out=out,
            image_root=workdir / "images",
            base_url=base_url,
            concurrency=concurrency,
            limit=n_images,
            progress=False,
            timeout=30.0,
        )
        start = time.perf_counter()
        report = regenerate(cfg)
        seconds = time.perf_counter() - start
    if report.captioned != n_images:
        raise RuntimeError(f"only {report.captioned}/{n_images} captioned: {report.missing}")
    return {
        "concurrency": concurrency,
        "images": n_images,
        "seconds": seconds,
        "captions_per_s": n_images / seconds,
        "ideal_per_s": concurrency / latency,
    }


def format_table(rows: Sequence[dict], latency: float) -> str:
    lines = [
        f"online throughput, fake server latency {latency * 1000:.0f} ms per request",
        f"{'concurrency':>11} {'images':>6} {'seconds':>8} {'captions/s':>10} {'ideal/s':>8} {'efficiency':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r['concurrency']:>11} {r['images']:>6} {r['seconds']:>8.2f} {r['captions_per_s']:>10.1f} "
            f"{r['ideal_per_s']:>8.1f} {r['captions_per_s'] / r['ideal_per_s']:>10.0%}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=6, help="images per worker (at least 20 images)")
    args = parser.parse_args(argv)
    os.environ["OPENAI_API_KEY"] = BENCH_KEY  # the fake server's key, set for this process only
    import openai  # noqa: F401 - imported (~1-3 s) outside the timed region, like the tokenizer

    clip_token_count("warm up")
    counts = {c: max(20, args.rounds * c) for c in args.concurrency}
    with tempfile.TemporaryDirectory(prefix="taco-bench-captions-") as tmp:
        workdir = Path(tmp)
        make_images(workdir / "images", max(counts.values()))
        rows = [measure(c, counts[c], args.latency, workdir) for c in args.concurrency]
    print(format_table(rows, args.latency))


if __name__ == "__main__":
    main()
