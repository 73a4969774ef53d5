"""Online caption-regeneration throughput against a loopback server with a fixed latency.

    python -m taco_plus.bench.captions [--latency 0.2] [--concurrency 1 8 32] [--rounds 6]
                                       [--images DIR] [--repeat 1]

Each chat completion takes ``--latency`` seconds on a minimal OpenAI-compatible server
(stdlib ``http.server`` in its own process, on 127.0.0.1) that parses the request JSON
and the header of the image it was sent. The full ``regenerate()`` path runs
-- image preparation, the openai SDK, the journal, the caption set -- on real COCO
JPEGs (``../shared/data/coco_mini``, cycled). Throughput is *marginal*: for each
concurrency c a small run (2c images) and a large one (2c + rounds·c) are timed, and
captions/s = Δimages / Δseconds, so start-up (client, connections, tokenizer) and the
last wave do not count; the ideal is c / latency. CPU milliseconds per caption of the
client and of the server (process CPU time, marginal the same way) are printed beside
it: unlike wall time they barely move when other jobs share the CPU.
"""

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
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Optional, Sequence

from taco_plus.captions.regenerate import RegenerateConfig, regenerate

DEFAULT_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco_mini"
BENCH_KEY = "bench-local-key"
CAPTION = ("A test photograph of {w}x{h} pixels with soft daylight from the left, a textured wooden surface, "
           "muted green and brown tones, fine grain, sharp edges in the foreground and a gently blurred "
           "background behind the subject, seen at eye level.")


def inspect_request(body: dict) -> tuple[str, Optional[tuple[int, int]], str]:
    """Prompt text, decoded image size and ``detail`` of a chat-completions request body."""
    from PIL import Image

    prompt, size, detail = "", None, "auto"
    for message in body.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else [{"type": "text", "text": content or ""}]:
            if part.get("type") == "text":
                prompt += part.get("text", "")
            elif part.get("type") == "image_url":
                detail = part["image_url"].get("detail", "auto")
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                with Image.open(io.BytesIO(data)) as img:  # reads the header only
                    size = img.size
    return prompt, size, detail


def chat_completion(body: dict, text: Optional[str], refusal: Optional[str] = None, n: int = 0) -> dict:
    """A chat-completion response to ``body`` with usage counted like gpt-4o's."""
    from taco_plus.captions.regenerate.cost import image_tokens

    prompt, size, detail = inspect_request(body)
    prompt_tokens = len(prompt) // 4 + (image_tokens(*size, detail) if size else 0)
    completion_tokens = round(len((text or refusal or "").split()) / 0.75)
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "local"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": refusal},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def caption_for(body: dict) -> str:
    """The caption the servers answer: it names the image size, so tests can match it to its image."""
    size = inspect_request(body)[1] or (0, 0)
    return CAPTION.format(w=size[0], h=size[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    latency = 0.0

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(self.latency)
        data = json.dumps(chat_completion(body, caption_for(body))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serve(latency: float, conn) -> None:
    handler = type("Handler", (_Handler,), {"latency": latency})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        httpd.daemon_threads = True
        import threading

        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        conn.send(f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        while conn.recv() != "stop":
            conn.send(time.process_time())  # asked for its CPU time
        httpd.shutdown()


@contextmanager
def server_process(latency: float) -> Iterator[tuple[str, object]]:
    """The server in its own process (not sharing the client's GIL); yields its URL and pipe."""
    parent, child = mp.Pipe()
    process = mp.get_context("spawn").Process(target=_serve, args=(latency, child), daemon=True)
    process.start()
    try:
        yield parent.recv(), parent
    finally:
        parent.send("stop")
        process.join(10)


def make_images(source: Path, directory: Path, n: int) -> None:
    """``n`` JPEGs in ``directory``, copies of those under ``source`` (cycled)."""
    files = sorted(source.rglob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no JPEG images under {source} (pass --images)")
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copyfile(files[i % len(files)], directory / f"img{i:05d}.jpg")


def timed_run(n_images: int, concurrency: int, base_url: str, server, workdir: Path, tag: str) -> tuple:
    """Seconds, client CPU seconds and server CPU seconds of captioning ``n_images``."""
    cfg = RegenerateConfig(out=workdir / tag / "set.json", image_root=workdir / "images", base_url=base_url,
                           concurrency=concurrency, limit=n_images, progress=False, timeout=30.0)
    server.send("cpu")
    server_cpu, cpu, start = server.recv(), time.process_time(), time.perf_counter()
    report = regenerate(cfg)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    server.send("cpu")
    if report.captioned != n_images:
        raise RuntimeError(f"only {report.captioned}/{n_images} captioned: {report.missing}")
    return seconds, cpu, server.recv() - server_cpu


def measure(concurrency: int, rounds: int, latency: float, workdir: Path, repeat: int = 1) -> dict:
    """Marginal captions/s and CPU ms per caption at ``concurrency`` (median of ``repeat``)."""
    small = max(10, 2 * concurrency)
    large = small + rounds * concurrency
    rates, client_ms, server_ms = [], [], []
    with server_process(latency) as (base_url, server):
        timed_run(concurrency, concurrency, base_url, server, workdir, f"c{concurrency}-warm-up")  # imports, caches
        for r in range(repeat):
            s = timed_run(small, concurrency, base_url, server, workdir, f"c{concurrency}-{r}-s")
            big = timed_run(large, concurrency, base_url, server, workdir, f"c{concurrency}-{r}-l")
            rates.append((large - small) / (big[0] - s[0]))
            client_ms.append(1e3 * (big[1] - s[1]) / (large - small))
            server_ms.append(1e3 * (big[2] - s[2]) / (large - small))
    return {"concurrency": concurrency, "images": large - small, "seconds": (large - small) / statistics.median(rates),
            "captions_per_s": statistics.median(rates), "ideal_per_s": concurrency / latency,
            "client_ms": statistics.median(client_ms), "server_ms": statistics.median(server_ms)}


def format_table(rows: Sequence[dict], latency: float) -> str:
    lines = [
        f"online throughput (marginal), server latency {latency * 1000:.0f} ms per request",
        f"{'concurrency':>11} {'images':>6} {'seconds':>8} {'captions/s':>10} {'ideal/s':>8} {'efficiency':>10} "
        f"{'client ms':>9} {'server ms':>9}",
    ]
    for r in rows:
        lines.append(
            f"{r['concurrency']:>11} {r['images']:>6} {r['seconds']:>8.2f} {r['captions_per_s']:>10.1f} "
            f"{r['ideal_per_s']:>8.1f} {r['captions_per_s'] / r['ideal_per_s']:>10.0%} "
            f"{r['client_ms']:>9.1f} {r['server_ms']:>9.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=6, help="extra images per worker in the large run")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of JPEGs (searched recursively)")
    parser.add_argument("--repeat", type=int, default=1, help="small/large pairs per concurrency (median)")
    args = parser.parse_args(argv)
    os.environ["OPENAI_API_KEY"] = BENCH_KEY  # for this process only; the server ignores it
    with tempfile.TemporaryDirectory(prefix="taco-bench-captions-") as tmp:
        workdir = Path(tmp)
        make_images(args.images, workdir / "images", max(max(10, 2 * c) + args.rounds * c for c in args.concurrency))
        rows = [measure(c, args.rounds, args.latency, workdir, args.repeat) for c in args.concurrency]
    print(format_table(rows, args.latency))


if __name__ == "__main__":
    main()
