"""Benchmarks (``python -m taco_plus.bench.<name>``).

* ``attention``: full vs Linformer adapter attention over caption length and image size.
* ``codec``: TACO vs CompressAI's ELIC encode/decode time (the text adapter's overhead).
"""
