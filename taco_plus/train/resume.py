"""What a resumed run changes: every setting that differs from the run config stored in the
checkpoint is recorded in the run config and logged; a change to what the model learns from
(loss, data, captions, text features, token weights, model) stops the resume unless
``trainer.allow_resume_changes=true`` (docs/training.md#resuming-and-fine-tuning)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

STOPPING = ("loss", "data", "captions", "text_encoder", "weighting", "model", "attention")
# Where the run is and how it reports, not what it learns; derived notes.
IGNORED = ("run_dir", "trainer.resume", "trainer.allow_resume_changes", "data.num_workers", "training_data",
           "resume_changes")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping) and node:
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def resume_changes(old: Optional[Mapping], new: Mapping, allow: bool, path: Any) -> dict[str, list]:
    """``{key: [checkpoint value, this run's value]}``; raises ``ValueError`` for a change in
    :data:`STOPPING` unless ``allow``. A key the checkpoint lacks counts only when set."""
    a, b = _flat(old or {}), _flat(new)
    changes = {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys())
               if a.get(k) != b.get(k) and (k in a or b.get(k) is not None)
               and not any(k == i or k.startswith(i + ".") for i in IGNORED)}
    stopping = [k for k in changes if k.split(".")[0] in STOPPING]
    if stopping and not allow:
        shown = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in stopping[:5])
        raise ValueError(f"cannot resume from {path}: this run changes what the model learns from ({shown}"
                         f"{'; ...' if len(stopping) > 5 else ''}); keep the checkpoint's settings, or set "
                         "trainer.allow_resume_changes=true to continue anyway (the change is recorded)")
    return changes
