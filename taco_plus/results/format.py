"""Rate-distortion results files in CompressAI's JSON format (``null``, never ``NaN``, for an uncomputable value)
and the shipped reference curves ``reference/*.json`` (docs/evaluation.md, "Output files")."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from taco_plus.atomic import atomic_write

REFERENCE_DIR = Path(__file__).with_name("reference")


def _clean(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars -> Python, non-finite floats -> None (JSON ``null``)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    obj = obj.item() if isinstance(obj, (np.floating, np.integer)) else obj
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def make_results(name: str, results: Mapping[str, Sequence[Optional[float]]], description: str = "",
                 meta: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Builds and validates a results dict."""
    out = {"name": name, "description": description, "results": {k: list(v) for k, v in results.items()}}
    return validate(out if meta is None else {**out, "meta": dict(meta)})


def validate(data: Any, source: str = "results") -> dict[str, Any]:
    """Checks the CompressAI layout; returns ``data``. Raises ``ValueError`` with the reason."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or "bpp" not in data["results"]:
        raise ValueError(f"{source}: not a CompressAI results file (no 'results' object with a 'bpp' list)")
    lengths = {k: len(v) if isinstance(v, list) else type(v).__name__ for k, v in data["results"].items()}
    if len(set(lengths.values())) > 1 or not isinstance(lengths["bpp"], int):
        raise ValueError(f"{source}: results must be lists of one length (one value per rate point): {lengths}")
    return data


def save_results(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Writes a results file atomically (temporary file + rename); returns its path."""
    return atomic_write(path, json.dumps(_clean(validate(dict(data))), indent=2, allow_nan=False) + "\n")


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and validates a results file; a missing ``name`` becomes the file stem."""
    path = Path(path)
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


def load_curve(source: str | os.PathLike) -> dict[str, Any]:
    """A results file, or the name of a shipped reference curve."""
    references = list_references()
    if not Path(source).exists() and str(source) in references:
        return load_results(references[str(source)])
    if not Path(source).is_file():
        raise FileNotFoundError(f"{source} is neither a results file nor a reference curve "
                                f"({', '.join(references)})")
    return load_results(source)


def curve(data: Mapping[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, metric) arrays of the points where both are known, sorted by bpp."""
    results = data["results"]
    if metric not in results:
        available = ", ".join(k for k in results if k != "bpp")
        raise KeyError(f"{data.get('name', '?')}: no {metric!r} values (available: {available})")
    points = sorted((float(b), float(v)) for b, v in zip(results["bpp"], results[metric])
                    if b is not None and v is not None and math.isfinite(b) and math.isfinite(v))
    bpp, values = np.array(points, dtype=np.float64).reshape(-1, 2).T
    return bpp, values


def merge_results(sources: Iterable[Mapping[str, Any]], name: str, description: str = "",
                  groups: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """One curve sorted by bpp from results (one per λ and seed): the metrics every source has, averaged over each
    of ``groups`` (default: each point alone), with ``meta`` labels, seeds, spread and points (docs/experiments.md)."""
    import pandas as pd

    sources = [validate(dict(s)) for s in sources]
    if not sources:
        raise ValueError("nothing to merge")
    keys = [k for k in sources[0]["results"] if all(k in s["results"] for s in sources)]
    frame = pd.concat([pd.DataFrame({k: s["results"][k] for k in keys}, dtype=float).assign(_group=g)
                       for s, g in zip(sources, groups or [None] * len(sources))], ignore_index=True)
    if frame.bpp.isna().any():
        raise ValueError("cannot merge a rate point without a bpp value")
    by = frame.assign(_group=frame.index if groups is None else frame._group).groupby("_group", sort=False)
    mean = by.mean().sort_values("bpp", kind="stable")
    meta: dict[str, Any] = {"points": [{"name": s.get("name"), **s.get("meta", {})} for s in sources], "seeds":
                            by.size()[mean.index].tolist(), "spread": by.std(ddof=1).loc[mean.index].to_dict("list")}
    if groups is not None:
        meta["labels"] = list(mean.index)
    if dropped := sorted({k for s in sources for k in s["results"]} - set(keys)):
        meta["dropped_metrics"] = dropped  # not present in every source
    return _clean(make_results(name, mean.to_dict("list"), description, meta))
