"""The package's layering (README, "Layout"): every import between taco_plus's subpackages and
top-level modules goes down the layers (never up, never sideways to a peer), and the benchmarks use only public names of what they measure.
Imports inside functions count: they are dependencies all the same."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "taco_plus"


def layers() -> dict[str, int]:
    """Each unit's layer in the README's layer line (``a | b < c``: 0 for a and b, 1 for c)."""
    line = re.search(r"^`(atomic [^`]+)`$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    assert line, "README.md's Layout section states the layers as `atomic ... < __main__`"
    return {name.strip(): k for k, layer in enumerate(line.group(1).split("<")) for name in layer.split("|")}


def unit(module: str) -> str:
    """``taco_plus.evaluate.loop`` -> ``evaluate``; ``taco_plus.codec`` -> ``codec``."""
    return module.split(".")[1]


def imports() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, "file:line") of every import between two units."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        here = unit(".".join(parts))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = list(parts[: len(parts) - node.level]) if node.level else []
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                continue
            for name in names:
                if name.startswith("taco_plus.") and unit(name) != here:
                    found.append((here, unit(name), f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


def test_every_import_goes_down_the_layers():
    order, found = layers(), imports()
    assert len(found) > 100  # the walk sees the package
    unplaced = {u for edge in found for u in edge[:2]} - set(order) - {"__init__"}
    assert not unplaced, f"place these in README's layer line: {sorted(unplaced)}"
    upward = [f"{where}: {a} imports {b}" for a, b, where in found if a != "__init__" and order[b] >= order[a]]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_benchmarks_use_only_public_names():
    private = []
    for path in sorted((PACKAGE / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("taco_plus"):
                private += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                private.append(f"{path.name}:{node.lineno} uses {ast.unparse(node)}")
    assert not private, "\n".join(private)
