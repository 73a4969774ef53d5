"""Entropy coding off the network's critical path (docs/evaluation.md, "Coding workers"): ``TacoCodec.encode``
and ``decode`` split at the rANS coding of y; the network passes stay on the device (:func:`encode_network`,
:func:`decode_network`) while :func:`code_job` (rANS encoding, the file written and read back, rANS decoding)
runs in CPU processes. The decoder checks the worker's table indexes, so its image is ``TacoCodec.decode``'s."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from taco_plus.codec import TacoCodec, deterministic
from taco_plus.coding.bitstream import Payload, pack, unpack
from taco_plus.coding.checkerboard import DecodingCoder, EncodingCoder
from taco_plus.coding.rans import CdfTables, RansStream, decode_bottleneck, encode, encode_bottleneck
from taco_plus.images import crop, pad_to_multiple


# What the encoder's network leaves to the coder: y's symbols and table indexes (int32, coding order), the coded
# z, the container's fields and the file's path (None: in memory); and what the worker gives back.
CodingJob = NamedTuple("CodingJob", [("height", int), ("width", int), ("fingerprint", bytes), ("z_string", bytes),
                                     ("symbols", np.ndarray), ("indexes", np.ndarray), ("path", Optional[str])])
Coded = NamedTuple("Coded", [("data", bytes), ("symbols", np.ndarray), ("encode_ms", float), ("decode_ms", float)])


_TABLES: Optional[CdfTables] = None  # a worker's y tables (:func:`coding_pool`)


def _init_worker(tables: CdfTables) -> None:
    globals()["_TABLES"] = tables
    torch.set_num_threads(1)  # the CPU's other cores are the other workers'


def code_job(job: CodingJob, tables: Optional[CdfTables] = None) -> Coded:
    """rANS-encodes y, packs the file (written to ``job.path`` and read back), rANS-decodes its y string."""
    tables, start = tables or _TABLES, time.perf_counter()
    y_string = encode(torch.from_numpy(job.symbols), torch.from_numpy(job.indexes), tables)
    data = pack(Payload(job.height, job.width, job.fingerprint, y_string, job.z_string))
    if job.path is not None:
        Path(job.path).write_bytes(data)
        data = Path(job.path).read_bytes()  # decode what is on disk, and count its size
    middle = time.perf_counter()
    stream = RansStream(unpack(data, job.fingerprint, job.height * job.width).y_string, tables, job.indexes.size)
    symbols = stream.decode(torch.from_numpy(job.indexes)).numpy()
    stream.finish()
    return Coded(data, symbols, 1000 * (middle - start), 1000 * (time.perf_counter() - middle))


@torch.no_grad()
@deterministic()
def encode_network(codec: TacoCodec, x: Tensor, caption: str, path: Optional[Path] = None) -> tuple[CodingJob, Tensor, float]:
    """:meth:`TACO.compress`'s network passes on ``x`` (3, H, W): the job, y_hat and the time in ms."""
    start, model, (h, w) = time.perf_counter(), codec.model, x.shape[-2:]
    text, mask, weights = codec.encode_text(caption)
    y = model.analysis(pad_to_multiple(x[None].to(codec.device, torch.float32), 64), text, mask, weights)
    z_strings, z_hat = encode_bottleneck(model.entropy_bottleneck, model.h_a(y))
    coder = EncodingCoder(model.gaussian_conditional)
    y_hat, _, _ = model._code_latents(coder, model.h_s(z_hat), y)
    symbols, indexes = (torch.cat([p.reshape(-1) for p in parts]).to("cpu", torch.int32).numpy()
                        for parts in (coder.symbols, coder.indexes))  # one item: flush()'s order
    job = CodingJob(h, w, codec.fingerprint, z_strings[0], symbols, indexes, None if path is None else str(path))
    return job, y_hat, 1000 * (time.perf_counter() - start)


class _Decoded:  # a RansStream stand-in: the worker's symbols, while the decoder asks with their indexes

    def __init__(self, coded: Coded, job: CodingJob) -> None:
        self.symbols, self.indexes, self.pos = torch.from_numpy(coded.symbols), torch.from_numpy(job.indexes), 0

    def decode(self, indexes: Tensor) -> Tensor:
        n, self.pos = indexes.numel(), self.pos + indexes.numel()
        if not torch.equal(indexes.reshape(-1).to("cpu", torch.int32), self.indexes[self.pos - n:self.pos]):
            raise LookupError("the decoder's table indexes differ from the encoder's")
        return self.symbols[self.pos - n:self.pos].reshape(indexes.shape)


@torch.no_grad()
@deterministic()
def decode_network(codec: TacoCodec, job: CodingJob, coded: Coded, y_hat_encoder: Tensor) -> tuple[Tensor, float, float]:
    """:meth:`TacoCodec.decode` of ``coded.data`` with y's symbols from the worker: x_hat (1, 3, H, W), the largest
    difference between the decoded latent and the encoder's (inf: decoded serially), and the time in ms."""
    start, model = time.perf_counter(), codec.model
    payload = unpack(coded.data, codec.fingerprint, codec.max_pixels)
    z_hat = decode_bottleneck(model.entropy_bottleneck, [payload.z_string], payload.z_shape)
    coder = DecodingCoder(model.gaussian_conditional, [], 0)
    coder.streams = [_Decoded(coded, job)]
    try:
        y_hat, _, _ = model._code_latents(coder, model.h_s(z_hat), None)
        x_hat, diff = crop(model.g_s(y_hat), (job.height, job.width)).clamp(0, 1), float((y_hat - y_hat_encoder).abs().max())
    except LookupError:  # other tables than the encoder's: decode as a user would
        x_hat, diff = codec.decode(coded.data), math.inf
    if codec.device.type == "cuda":
        torch.cuda.synchronize(codec.device)  # time the kernels, not their launch
    return x_hat, diff, 1000 * (time.perf_counter() - start)


def default_workers(device: torch.device) -> int:
    """On a GPU: the CPUs this process may use, shared with the other processes of a torchrun node,
    minus one. On the CPU: none (the network's threads already use the cores; coding inline is as fast)."""
    if device.type == "cpu":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, cpus // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1)


def coding_pool(codec: TacoCodec, workers: int) -> Optional[ProcessPoolExecutor]:
    """``workers`` processes holding y's tables (spawned: safe beside CUDA), or None for none."""
    if workers < 1:
        return None
    pool = ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(codec.model.gaussian_conditional.tables(),))
    # Start every worker now (one task each, submitted at once): their start-up and the rANS coder's
    # compilation then happen before the first image, not in the middle of an evaluation.
    for future in [pool.submit(time.sleep, 0.5) for _ in range(workers)]:
        future.result()
    return pool


def submit(pool: Optional[ProcessPoolExecutor], job: CodingJob, codec: TacoCodec) -> Future:
    """:func:`code_job` in the pool, or done at once without one."""
    future = pool.submit(code_job, job) if pool is not None else Future()
    if pool is None:
        future.set_result(code_job(job, codec.model.gaussian_conditional.tables()))
    return future
