"""Results files and what is made from them: CompressAI-format RD JSON, per-image CSV,
reference curves, RD plots, BD-rate and the caption-sensitivity table.

Command-line tools: ``python -m taco_plus.results.{plot,bdrate,merge,sensitivity}``.
Names are imported lazily so that running those modules with ``-m`` does not
import them twice (and ``import taco_plus.results`` stays free of matplotlib).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "bd_rate": "bdrate",
    "bd_rate_results": "bdrate",
    "curve": "format",
    "load_results": "format",
    "make_results": "format",
    "merge_results": "format",
    "save_results": "format",
    "CSV_COLUMNS": "per_image",
    "read_per_image_csv": "per_image",
    "summarize": "per_image",
    "write_per_image_csv": "per_image",
    "plot_rd": "plot",
    "list_references": "reference_curves",
    "load_reference": "reference_curves",
    "derangement": "sensitivity",
    "format_markdown": "sensitivity",
    "sensitivity_table": "sensitivity",
    "write_sensitivity": "sensitivity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
