"""Rate-distortion results files in CompressAI's JSON format.

One file is one curve: every list in ``results`` holds one value per rate point,
``bpp`` first::

    {
      "name": "taco-kodak",
      "description": "Kodak, real captions, file bpp",
      "results": {"bpp": [0.31], "psnr-rgb": [30.2], "ms-ssim-rgb": [0.95],
                  "lpips": [0.061], "clip_score": [27.4],
                  "encoding_time": [1.9], "decoding_time": [1.1]},
      "meta": {...}                     # provenance (taco-plus addition)
    }

CompressAI's ``python -m compressai.utils.plot`` reads these files. Metric keys
follow CompressAI (``psnr-rgb``, ``ms-ssim-rgb``, times in seconds) plus
``lpips``, ``clip_score`` and ``fid``. Values that could not be computed (MS-SSIM
on images under 161 px, say) are written as ``null``, never as ``NaN``, so strict
JSON readers accept the file; :func:`curve` drops them.

Published reference curves (Kodak) ship in ``reference/``, copied from the design
notes' table (each file's ``description`` says where from); TACO's released-checkpoint
LPIPS values use the reference code's LPIPS convention ([0, 1] inputs).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from taco_plus.atomic import atomic_write

# Axis labels of the known metrics; the plot and the BD-rate tool accept any key.
METRIC_LABELS = {
    "bpp": "Bit-rate [bpp]",
    "psnr-rgb": "PSNR (RGB) [dB]",
    "ms-ssim-rgb": "MS-SSIM (RGB)",
    "lpips": "LPIPS",
    "clip_score": "CLIP score",
    "fid": "FID",
    "encoding_time": "Encoding time [s]",
    "decoding_time": "Decoding time [s]",
}
# Metrics where a smaller value is better (used for plot legends and docs).
LOWER_IS_BETTER = {"lpips", "fid", "encoding_time", "decoding_time"}
REFERENCE_DIR = Path(__file__).with_name("reference")


def _clean(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars -> Python, non-finite floats -> None (JSON ``null``)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    obj = obj.item() if isinstance(obj, (np.floating, np.integer)) else obj
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def make_results(
    name: str,
    results: Mapping[str, Sequence[Optional[float]]],
    description: str = "",
    meta: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """Builds and validates a results dict (one value per rate point in every list)."""
    out = {"name": name, "description": description, "results": {k: list(v) for k, v in results.items()}}
    if meta is not None:
        out["meta"] = dict(meta)
    validate(out)
    return out


def validate(data: Any, source: str = "results") -> dict[str, Any]:
    """Checks the CompressAI layout; returns ``data``. Raises ``ValueError`` with the reason."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{source}: not a CompressAI results file (no 'results' object)")
    results = data["results"]
    if "bpp" not in results:
        raise ValueError(f"{source}: 'results' has no 'bpp' list")
    lengths = {}
    for key, values in results.items():
        if not isinstance(values, list):
            raise ValueError(f"{source}: results[{key!r}] must be a list, got {type(values).__name__}")
        lengths[key] = len(values)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{source}: results lists differ in length: {lengths}")
    if not isinstance(data.get("name", ""), str):
        raise ValueError(f"{source}: 'name' must be a string")
    return data


def save_results(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Writes a results file atomically (temporary file + rename); returns its path."""
    validate(dict(data))
    text = json.dumps(_clean(data), indent=2, allow_nan=False) + "\n"
    return atomic_write(path, text)


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and validates a results file; a missing ``name`` becomes the file stem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err}") from err
    validate(data, str(path))
    data.setdefault("name", path.stem)
    data.setdefault("description", "")
    return data


def list_references() -> dict[str, Path]:
    """Shipped reference curve names (file stems, e.g. ``"elic_paper"``) -> their files."""
    return {p.stem: p for p in sorted(REFERENCE_DIR.glob("*.json"))}


def load_reference(name: str) -> dict[str, Any]:
    """Loads a shipped reference curve by name."""
    available = list_references()
    if name not in available:
        raise KeyError(f"unknown reference curve {name!r}; available: {', '.join(available)}")
    return load_results(available[name])


def load_curve(source: str | os.PathLike) -> dict[str, Any]:
    """A results file, or the name of a shipped reference curve."""
    if str(source) in list_references() and not Path(source).exists():
        return load_reference(str(source))
    return load_results(source)


def curve(data: Mapping[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, metric) arrays of the points where both are known, sorted by bpp."""
    results = data["results"]
    if metric not in results:
        available = ", ".join(k for k in results if k != "bpp")
        raise KeyError(f"{data.get('name', '?')}: no {metric!r} values (available: {available})")
    pairs = [
        (float(b), float(v))
        for b, v in zip(results["bpp"], results[metric])
        if b is not None and v is not None and math.isfinite(b) and math.isfinite(v)
    ]
    pairs.sort()
    bpp = np.array([p[0] for p in pairs], dtype=np.float64)
    values = np.array([p[1] for p in pairs], dtype=np.float64)
    return bpp, values


def merge_results(
    sources: Iterable[Mapping[str, Any]], name: str, description: str = ""
) -> dict[str, Any]:
    """Combines results (e.g. one file per λ) into one curve sorted by bpp.

    Only metrics present in every source are kept; each source's ``meta`` is kept,
    in the merged order, under ``meta["points"]``.
    """
    sources = [validate(dict(s)) for s in sources]
    if not sources:
        raise ValueError("nothing to merge")
    keys = [k for k in sources[0]["results"] if all(k in s["results"] for s in sources)]
    points = []  # (bpp, {metric: value}, meta)
    for s in sources:
        r = s["results"]
        for i in range(len(r["bpp"])):
            points.append((r["bpp"][i], {k: r[k][i] for k in keys}, s.get("meta", {}), s.get("name")))
    if any(p[0] is None for p in points):
        raise ValueError("cannot merge a rate point without a bpp value")
    points.sort(key=lambda p: p[0])
    merged = {k: [p[1][k] for p in points] for k in keys}
    meta = {"points": [{"name": p[3], **p[2]} for p in points]}
    dropped = sorted({k for s in sources for k in s["results"]} - set(keys))
    if dropped:
        meta["dropped_metrics"] = dropped  # not present in every source
    return make_results(name, merged, description, meta)
