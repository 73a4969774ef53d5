"""Benchmarks, ``python -m taco_plus.bench.<name>``: ``attention`` (adapter attention options),
``codec`` (TACO vs ELIC coding time), ``weighting`` (captions/s), ``captions`` (regeneration
throughput), ``train_step`` (the training step on a GPU). Shared primitives: :mod:`.measure`."""
