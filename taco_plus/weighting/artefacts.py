"""Fitted weighting artefacts: JSON files (inspectable, safe to load) stamped with the fingerprint of
the caption set they were fitted on, loaded and never silently refitted (docs/weighting.md, "Artefacts")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from taco_plus import __version__
from taco_plus.atomic import atomic_write
from taco_plus.captions.format import json_bytes
from taco_plus.weighting.corpus import PathLike

FORMAT_VERSION = 1


class ArtefactError(ValueError):
    """An artefact file is missing, malformed, or of the wrong kind."""


class FingerprintMismatchError(ArtefactError):
    """An artefact was fitted on a different caption set than the one in use."""


def check_fingerprint(kind: str, fitted: str, expected: Optional[str], allow_mismatch: bool = False,
                      source: str = "") -> None:
    """Raises :class:`FingerprintMismatchError` unless ``fitted`` is ``expected`` (or None) or ``allow_mismatch``."""
    if expected is None or expected == fitted or allow_mismatch:
        return
    source = source or "unknown source"
    raise FingerprintMismatchError(f"{kind} artefact was fitted on caption set {fitted[:16]}… ({source}), but the "
                                   f"captions in use have fingerprint {expected[:16]}…. Refit it with `taco-plus "
                                   f"weights fit --weighting {kind} --captions SET --out FILE`, or set "
                                   "allow_fingerprint_mismatch=true to use it anyway.")


def save_artefact(path: PathLike, kind: str, caption_set: dict[str, Any], payload: dict[str, Any],
                  **versions: str) -> None:
    """Writes an artefact atomically; ``versions``: the libraries it was fitted with."""
    document = {"format": f"taco-plus/weighting/{kind}", "format_version": FORMAT_VERSION,
                "caption_set": caption_set, "created_with": {"taco_plus": __version__, **versions},
                "payload": payload}
    atomic_write(path, json_bytes(document, indent=1))


def load_artefact(path: PathLike, kind: str, expected_fingerprint: Optional[str] = None,
                  allow_mismatch: bool = False) -> dict[str, Any]:
    """Reads an artefact of ``kind`` (``tfidf``, ``ner``), checking its format and fingerprint; the document."""
    if not Path(path).is_file():
        raise ArtefactError(f"{kind} artefact not found: {path}. Build it with "
                            f"`taco-plus weights fit --weighting {kind} --captions SET.json --out {path}`.")
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ArtefactError(f"{path} is not a JSON weighting artefact: {err}") from None
    fmt = document.get("format") if isinstance(document, dict) else type(document).__name__
    if fmt != f"taco-plus/weighting/{kind}":
        raise ArtefactError(f"{path} holds {fmt!r}, expected a taco-plus {kind} artefact")
    if document.get("format_version") != FORMAT_VERSION:
        raise ArtefactError(f"{path} has format_version {document.get('format_version')!r}; this taco-plus "
                            f"reads version {FORMAT_VERSION}: refit it")
    meta = document.get("caption_set")
    if not isinstance(meta, dict) or not isinstance(meta.get("fingerprint"), str) \
            or not isinstance(document.get("payload"), dict):
        raise ArtefactError(f"{path} lacks a caption-set fingerprint or payload")
    check_fingerprint(kind, meta["fingerprint"], expected_fingerprint, allow_mismatch, str(meta.get("source", "")))
    return document
