"""Benchmarks (``python -m taco_plus.bench.<name>``), each printing a table and writing files.

* ``attention``: full vs Linformer adapter attention over caption length and image size.
* ``codec``: TACO vs CompressAI's ELIC encode/decode time (the text adapter's overhead).
* ``weighting``: token-weighting throughput (captions per second).
* ``captions``: caption-regeneration throughput against a loopback fake server.
* ``train_step``: the whole training step (steps/s, peak memory) per attention option and
  for an ELIC baseline, fp32/bf16, eager/compiled, beside the data loader's images/s.

Shared measurement primitives (time, peak memory, FLOPs) live in :mod:`taco_plus.bench.measure`.
"""
