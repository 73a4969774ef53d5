"""What a resumed run changes from the run config stored in the checkpoint: recorded and logged, or,
for what the model learns from, refused (docs/training.md, "Resuming and fine-tuning")."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

logger = logging.getLogger(__name__)

STOPPING = ("loss", "data", "captions", "text_encoder", "weighting", "model", "attention")
# Where the run is and how it reports, not what it learns; derived notes.
IGNORED = ("run_dir", "trainer.resume", "trainer.allow_resume_changes", "data.num_workers", "training_data",
           "resume_changes")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping) and node:
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def resume_changes(old: Optional[Mapping], new: Mapping, step: int, allow: bool, path: Any) -> list[dict]:
    """The run's ``resume_changes``: the checkpoint's, plus ``{"step", "changes": {key: [old, new]}}`` (logged);
    a change in :data:`STOPPING` raises ``ValueError`` unless ``allow``. A key the checkpoint lacks counts if set."""
    a, b = _flat(old or {}), _flat(new)
    changes = {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys())
               if a.get(k) != b.get(k) and (k in a or b.get(k) is not None)
               and not any(k == i or k.startswith(i + ".") for i in IGNORED)}
    shown = "; ".join(f"{k}: {x!r} -> {y!r}" for k, (x, y) in changes.items() if allow or k.split(".")[0] in STOPPING)
    if shown and not allow:
        raise ValueError(f"cannot resume from {path}: this run changes what the model learns from ({shown}); keep "
                         "the checkpoint's settings, or set trainer.allow_resume_changes=true (the change is recorded)")
    if changes:
        logger.warning("resuming from %s with changed settings (recorded in the run config): %s", path,
                       "; ".join(f"{k}: {x!r} -> {y!r}" for k, (x, y) in changes.items()))
    return [*(old or {}).get("resume_changes", []), *([{"step": step, "changes": changes}] if changes else [])]


def write_run_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    """``run_dir/config.yaml``: the resolved run config, ``training_data`` and ``resume_changes`` included."""
    import yaml

    (Path(run_dir) / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True))
