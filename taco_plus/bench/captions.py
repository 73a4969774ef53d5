"""Online caption-regeneration throughput against a loopback server with a fixed latency: marginal captions/s
and CPU ms per caption of client and server (docs/captions.md): ``python -m taco_plus.bench.captions``."""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

from PIL import Image

from taco_plus.captions.regenerate import RegenerateConfig, regenerate

DEFAULT_IMAGES = Path(os.environ.get("TACO_DATA", "data")) / "coco_mini"
CAPTION = ("A test photograph of {}x{} pixels with soft daylight from the left, a textured wooden surface, "
           "muted green and brown tones, fine grain, sharp edges in the foreground and a gently blurred "
           "background behind the subject, seen at eye level.")


class _Handler(BaseHTTPRequestHandler):
    """Answers each chat completion after ``latency`` s with a caption naming the size read from
    the header of the image sent; ``cpu`` holds the server process's CPU seconds."""

    protocol_version = "HTTP/1.1"
    latency, cpu = 0.0, None

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        url = body["messages"][0]["content"][1]["image_url"]["url"]
        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:  # the header only
            caption = CAPTION.format(*img.size)
        time.sleep(self.latency)
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": caption}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        with self.cpu.get_lock():  # threads may finish out of order
            self.cpu.value = max(self.cpu.value, time.process_time())


def _serve(latency: float, cpu, url) -> None:
    handler = type("Handler", (_Handler,), {"latency": latency, "cpu": cpu})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        httpd.daemon_threads = True
        url.put(f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        httpd.serve_forever()


def measure(concurrency: int, rounds: int, latency: float, workdir: Path, repeat: int = 1) -> dict:
    """Marginal captions/s and CPU ms per caption at ``concurrency`` (median of ``repeat``)."""
    small, large = max(10, 2 * concurrency), max(10, 2 * concurrency) + rounds * concurrency
    spawn = mp.get_context("spawn")  # the server in its own process: it does not share the client's GIL
    server_cpu, url = spawn.Value("d", 0.0), spawn.Queue()
    server = spawn.Process(target=_serve, args=(latency, server_cpu, url), daemon=True)
    server.start()

    def run(n_images: int, tag: str) -> list[float]:
        """Seconds, client and server CPU seconds of captioning ``n_images``."""
        cfg = RegenerateConfig(out=workdir / f"c{concurrency}-{tag}" / "set.json", image_root=workdir / "images",
                               base_url=base_url, concurrency=concurrency, limit=n_images, progress=False, timeout=30.0)
        before = time.perf_counter(), time.process_time(), server_cpu.value
        report = regenerate(cfg)
        if report.captioned != n_images:
            raise RuntimeError(f"only {report.captioned}/{n_images} captioned: {report.missing}")
        return [b - a for a, b in zip(before, (time.perf_counter(), time.process_time(), server_cpu.value))]

    try:
        base_url = url.get(timeout=60)
        run(concurrency, "warm-up")  # imports, caches
        pairs = [(run(small, f"{r}-s"), run(large, f"{r}-l")) for r in range(repeat)]
    finally:
        server.terminate()
    n = large - small
    seconds, client, server = (statistics.median(big[i] - s[i] for s, big in pairs) for i in range(3))
    return {"concurrency": concurrency, "images": n, "seconds": seconds, "captions/s": n / seconds,
            "ideal/s": concurrency / latency, "efficiency": n / seconds * latency / concurrency,
            "client ms": 1e3 * client / n, "server ms": 1e3 * server / n}


def main(argv: Sequence[str] | None = None) -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=6, help="extra images per worker in the large run")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of JPEGs (searched recursively)")
    parser.add_argument("--repeat", type=int, default=1, help="small/large pairs per concurrency (median)")
    args = parser.parse_args(argv)
    os.environ["OPENAI_API_KEY"] = "bench-local-key"  # for this process only; the server ignores it
    files = sorted(args.images.rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEG images under {args.images} (pass --images)")
    with tempfile.TemporaryDirectory(prefix="taco-bench-captions-") as tmp:
        (Path(tmp) / "images").mkdir()
        for i in range(max(max(10, 2 * c) + args.rounds * c for c in args.concurrency)):
            shutil.copyfile(files[i % len(files)], Path(tmp) / "images" / f"img{i:05d}.jpg")
        rows = pd.DataFrame([measure(c, args.rounds, args.latency, Path(tmp), args.repeat) for c in args.concurrency])
    print(f"online throughput (marginal), server latency {args.latency * 1000:.0f} ms per request\n" + rows.to_string(
        index=False, float_format="{:.1f}".format, formatters={"seconds": "{:.2f}".format, "efficiency": "{:.0%}".format}))


if __name__ == "__main__":
    main()
