"""Fitted weighting artefacts: JSON files stamped with their caption set's fingerprint.

TF-IDF statistics and NER caches are *data derived from a caption set*. They are
written once by ``taco-plus weights fit`` and loaded by training and evaluation,
never silently refitted (house rule 10). Each file records the sha256 fingerprint
of the caption set it came from; loading it against another caption set is an
error unless the caller explicitly allows it. JSON, not pickle: the files are
inspectable, diffable and safe to load.

File layout::

    {"format": "taco-plus/weighting/tfidf", "format_version": 1,
     "caption_set": {"fingerprint": "<sha256 hex>", "source": "<path>", "num_captions": 795},
     "created_with": {"taco_plus": "0.1.0", ...},
     "payload": {...}}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from taco_plus.atomic import atomic_write

FORMAT_VERSION = 1
PathLike = Union[str, "os.PathLike[str]"]


class ArtefactError(ValueError):
    """An artefact file is missing, malformed, or of the wrong kind."""


class FingerprintMismatchError(ArtefactError):
    """An artefact was fitted on a different caption set than the one in use."""


@dataclass
class Artefact:
    """A loaded (or to-be-saved) weighting artefact.

    Args:
        kind: ``"tfidf"`` or ``"ner"``.
        fingerprint: sha256 of the caption set the artefact was fitted on.
        payload: the kind-specific content (JSON-serialisable).
        source: where the caption set was read from (informational).
        num_captions: captions in that set (informational).
        created_with: library versions used to fit it (informational).
    """

    kind: str
    fingerprint: str
    payload: dict[str, Any]
    source: str = ""
    num_captions: int = 0
    created_with: dict[str, str] = field(default_factory=dict)

    def check_fingerprint(self, expected: Optional[str], allow_mismatch: bool = False) -> None:
        """Raises :class:`FingerprintMismatchError` unless ``expected`` matches."""
        if expected is None or expected == self.fingerprint or allow_mismatch:
            return
        raise FingerprintMismatchError(
            f"{self.kind} artefact was fitted on caption set {self.fingerprint[:16]}… "
            f"({self.source or 'unknown source'}), but the captions in use have fingerprint "
            f"{expected[:16]}…. Refit it with `taco-plus weights fit --weighting {self.kind} "
            "--captions SET --out FILE`, or set allow_fingerprint_mismatch=true to use it anyway."
        )


def save_artefact(path: PathLike, artefact: Artefact) -> Path:
    """Writes ``artefact`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": f"taco-plus/weighting/{artefact.kind}",
        "format_version": FORMAT_VERSION,
        "caption_set": {
            "fingerprint": artefact.fingerprint,
            "source": artefact.source,
            "num_captions": artefact.num_captions,
        },
        "created_with": artefact.created_with,
        "payload": artefact.payload,
    }
    return atomic_write(path, json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def load_artefact(
    path: PathLike,
    kind: str,
    expected_fingerprint: Optional[str] = None,
    allow_mismatch: bool = False,
) -> Artefact:
    """Reads a weighting artefact and checks its kind and caption-set fingerprint.

    Args:
        path: the JSON file written by :func:`save_artefact`.
        kind: the expected kind (``"tfidf"``, ``"ner"``).
        expected_fingerprint: fingerprint of the caption set in use; None skips the check.
        allow_mismatch: accept an artefact fitted on another caption set.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(
            f"{kind} artefact not found: {path}. Build it with "
            f"`taco-plus weights fit --weighting {kind} --captions SET.json --out {path}`."
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtefactError(f"{path} is not a JSON weighting artefact: {err}") from None
    if not isinstance(document, dict):
        raise ArtefactError(f"{path} is not a weighting artefact (top level is not an object)")
    fmt = document.get("format")
    if fmt != f"taco-plus/weighting/{kind}":
        raise ArtefactError(f"{path} holds {fmt!r}, expected a taco-plus {kind} artefact")
    if document.get("format_version") != FORMAT_VERSION:
        raise ArtefactError(
            f"{path} has format_version {document.get('format_version')!r}; "
            f"this taco-plus reads version {FORMAT_VERSION}: refit it"
        )
    meta = document.get("caption_set") or {}
    fingerprint = meta.get("fingerprint")
    if not isinstance(fingerprint, str) or not isinstance(document.get("payload"), dict):
        raise ArtefactError(f"{path} lacks a caption-set fingerprint or payload")
    artefact = Artefact(
        kind=kind,
        fingerprint=fingerprint,
        payload=document["payload"],
        source=str(meta.get("source", "")),
        num_captions=int(meta.get("num_captions", 0)),
        created_with=dict(document.get("created_with") or {}),
    )
    artefact.check_fingerprint(expected_fingerprint, allow_mismatch)
    return artefact
