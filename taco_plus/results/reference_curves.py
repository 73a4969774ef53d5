"""Published reference curves (Kodak), shipped as CompressAI-format JSON files.

The numbers are copied from the table in the project's design notes
(``DESIGN.md``, "Numbers to compare against"); each file's ``description`` says
where they come from. TACO's released-checkpoint LPIPS values use the reference
code's LPIPS convention ([0, 1] inputs without ``normalize=True``), so compare
them only with an evaluation run with ``lpips.convention=reference``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taco_plus.results.format import load_results

REFERENCE_DIR = Path(__file__).with_name("reference")


def list_references() -> dict[str, Path]:
    """Reference curve names (file stems, e.g. ``"elic_paper"``) -> their files."""
    return {p.stem: p for p in sorted(REFERENCE_DIR.glob("*.json"))}


def load_reference(name: str) -> dict[str, Any]:
    """Loads a shipped reference curve by name."""
    available = list_references()
    if name not in available:
        raise KeyError(f"unknown reference curve {name!r}; available: {', '.join(available)}")
    return load_results(available[name])
