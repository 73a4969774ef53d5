"""Materialises the registry tests' tiny invented caption files in ../shared/data's layout."""

from __future__ import annotations

import json
from pathlib import Path

SOURCE = Path(__file__).parent / "fixtures" / "registry" / "source_data.json"


def write_source_data(root: Path) -> Path:
    """Writes every file of ``source_data.json`` below ``root``; returns ``root``."""
    for relative, content in json.loads(SOURCE.read_text(encoding="utf-8"))["files"].items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return root
