"""The versioned caption-set file format (``format_version`` 1).

A caption set is one JSON file holding captions (image id -> one or more captions),
their provenance (where they came from, which model and prompt, with what
parameters, when, and the API token usage of each caption) and summary statistics.
The full specification, with an example, is ``captions/FORMAT.md``. Captions are
versioned data: training and evaluation read these files and never call a model.

:func:`load_caption_set` validates a file and raises :class:`CaptionFormatError`
naming the file and the offending JSON path; :func:`save_caption_set` writes
atomically (temporary file + ``os.replace``), so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from taco_plus.atomic import atomic_write

FORMAT_NAME = "taco-plus-captions"
FORMAT_VERSION = 1

# Keys every ``stats`` object carries (values computed by taco_plus.captions.stats).
STATS_KEYS = (
    "num_images",
    "num_captions",
    "words_per_caption",
    "clip_tokens_per_caption",
    "share_over_38_tokens",
    "share_over_77_tokens",
)


class CaptionFormatError(ValueError):
    """A caption file that cannot be read; the message names the file and the problem.

    Args:
        path: the offending file.
        problem: what is wrong, with the JSON path of the bad value.
    """

    def __init__(self, path: os.PathLike | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


@dataclass
class Provenance:
    """Where a caption set came from.

    Args:
        source: human-readable origin ("MS-COCO 2017 captions", "regenerated with ...").
        created: ISO-8601 UTC time the set was written.
        model: captioning model (``"gpt-4o"``, ``"OFA"``) or None for human captions.
        prompt: for generated sets, ``{"file", "sha256", "name", "version"}`` of the prompt.
        parameters: generation or conversion parameters (temperature, detail, ...).
        origin: for converted sets, ``{"file", "sha256"}`` of the original file.
        usage: image id -> one entry per caption: ``{"prompt_tokens", "completion_tokens"}``
            or None where no API was involved.
        missing_images: images that were requested but got no caption.
        notes: free-form remarks.
    """

    source: str
    created: str = field(default_factory=lambda: utc_now())
    model: Optional[str] = None
    prompt: Optional[dict] = None
    parameters: dict = field(default_factory=dict)
    origin: Optional[dict] = None
    usage: dict = field(default_factory=dict)
    missing_images: list = field(default_factory=list)
    notes: list = field(default_factory=list)


@dataclass
class CaptionSet:
    """An in-memory caption set.

    Args:
        name: short identifier (``"kodak_ofa"``).
        captions: image id (file name relative to the image root) -> captions.
        provenance: see :class:`Provenance`.
        stats: summary statistics (see :func:`taco_plus.captions.stats.caption_stats`).
        issues: image id -> problems found in its captions (e.g. U+FFFD garbage).
    """

    name: str
    captions: dict[str, list[str]]
    provenance: Provenance
    stats: dict = field(default_factory=dict)
    issues: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        prov = {k: v for k, v in vars(self.provenance).items() if v not in (None, [], {})}
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "provenance": prov,
            "stats": self.stats,
            "issues": self.issues,
            "captions": self.captions,
        }


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_caption_set(
    name: str,
    captions: Mapping[str, Sequence[str] | str],
    provenance: Provenance,
    issues: Optional[Mapping[str, Sequence[str]]] = None,
) -> CaptionSet:
    """A :class:`CaptionSet` with its statistics computed (CLIP tokenizer, see ``stats``)."""
    from taco_plus.captions.stats import caption_stats  # imports open_clip: keep lazy

    caps = {k: [v] if isinstance(v, str) else list(v) for k, v in captions.items()}
    return CaptionSet(
        name=name,
        captions=caps,
        provenance=provenance,
        stats=caption_stats(caps),
        issues={k: list(v) for k, v in (issues or {}).items()},
    )


def save_caption_set(caption_set: CaptionSet, path: os.PathLike | str) -> None:
    """Validate and write ``caption_set`` to ``path`` atomically."""
    data = caption_set.to_json()
    parse_caption_set(data, path)  # never write a file the loader would reject
    write_json_atomic(path, data)


def write_json_atomic(path: os.PathLike | str, data: Any) -> None:
    """Write JSON to a temporary file in the same directory, fsync, then ``os.replace``."""
    atomic_write(path, json_bytes(data, indent=1))


def json_bytes(data: Any, indent: Optional[int] = None) -> bytes:
    """UTF-8 JSON text ending in a newline, even for strings holding lone surrogates.

    ``json.loads('"\\ud800"')`` gives a string UTF-8 cannot encode. A surrogate can only
    sit inside a JSON string, where ``backslashreplace`` writes it as ``\\ud800``: its
    JSON escape, so the file reads back to the same string.
    """
    separators = None if indent else (",", ":")
    text = json.dumps(data, ensure_ascii=False, indent=indent, separators=separators)
    return (text + "\n").encode("utf-8", "backslashreplace")


def read_json(path: os.PathLike | str) -> Any:
    """Parse a JSON file, turning decode errors into :class:`CaptionFormatError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CaptionFormatError(path, f"not UTF-8 text ({err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CaptionFormatError(
            path, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None


def load_caption_set(path: os.PathLike | str) -> CaptionSet:
    """Read and validate a versioned caption set."""
    return parse_caption_set(read_json(path), path)


def is_caption_set(data: Any) -> bool:
    """Whether parsed JSON claims to be a versioned caption set."""
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def parse_caption_set(data: Any, path: os.PathLike | str) -> CaptionSet:
    """Validate parsed JSON as a caption set; errors name ``path`` and the JSON path."""

    def fail(problem: str) -> CaptionFormatError:
        return CaptionFormatError(path, problem)

    if not isinstance(data, dict):
        raise fail(f"expected a JSON object at the top level, got {_kind(data)}")
    if data.get("format") != FORMAT_NAME:
        raise fail(f'"format" must be "{FORMAT_NAME}", got {data.get("format")!r}')
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail(f'"format_version" must be an integer, got {version!r}')
    if version > FORMAT_VERSION:
        raise fail(
            f"format_version {version} is newer than this taco-plus reads ({FORMAT_VERSION}); upgrade"
        )
    if version < 1:
        raise fail(f"format_version {version} does not exist")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise fail('"name" must be a non-empty string')

    captions = parse_caption_mapping(data.get("captions"), path, where="captions", allow_str=False)

    prov = data.get("provenance")
    if not isinstance(prov, dict):
        raise fail(f'"provenance" must be an object, got {_kind(prov)}')
    unknown = set(prov) - set(Provenance.__dataclass_fields__)
    if unknown:
        raise fail(f"provenance has unknown keys {sorted(unknown)}")
    for key in ("source", "created"):
        if not isinstance(prov.get(key), str) or not prov[key]:
            raise fail(f'provenance["{key}"] must be a non-empty string')
    for key, kind in (("model", str), ("prompt", dict), ("origin", dict)):
        if prov.get(key) is not None and not isinstance(prov[key], kind):
            raise fail(f'provenance["{key}"] must be a {kind.__name__} or null')
    for key, kind in (("parameters", dict), ("usage", dict), ("missing_images", list), ("notes", list)):
        if not isinstance(prov.get(key, kind()), kind):
            raise fail(f'provenance["{key}"] must be a JSON {"object" if kind is dict else "array"}')
    if prov.get("prompt") is not None and not isinstance(prov["prompt"].get("sha256"), str):
        raise fail('provenance["prompt"]["sha256"] must be the prompt file\'s sha256')
    for image_id, entries in prov.get("usage", {}).items():
        if image_id not in captions:
            raise fail(f'provenance["usage"] names {image_id!r}, which has no captions')
        if not isinstance(entries, list) or len(entries) != len(captions[image_id]):
            raise fail(f'provenance["usage"][{image_id!r}] must list one entry per caption')
        for entry in entries:
            if entry is not None and not (
                isinstance(entry, dict) and all(_is_count(v) for v in entry.values())
            ):
                raise fail(f'provenance["usage"][{image_id!r}]: entries are token-count objects or null')

    stats = data.get("stats")
    if not isinstance(stats, dict):
        raise fail(f'"stats" must be an object, got {_kind(stats)}')
    missing = [k for k in STATS_KEYS if k not in stats]
    if missing:
        raise fail(f"stats is missing {missing}")
    if stats["num_images"] != len(captions):
        raise fail(f'stats["num_images"] is {stats["num_images"]} but there are {len(captions)} images')
    n_caps = sum(len(v) for v in captions.values())
    if stats["num_captions"] != n_caps:
        raise fail(f'stats["num_captions"] is {stats["num_captions"]} but there are {n_caps} captions')

    issues = data.get("issues", {})
    if not isinstance(issues, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in issues.values()
    ):
        raise fail('"issues" must map image ids to lists of strings')

    return CaptionSet(
        name=name,
        captions=captions,
        provenance=Provenance(**prov),
        stats=stats,
        issues={k: list(v) for k, v in issues.items()},
    )


def parse_caption_mapping(
    data: Any, path: os.PathLike | str, where: str = "", allow_str: bool = True
) -> dict[str, list[str]]:
    """Validate ``{image_id: caption | [captions]}`` and return lists of captions.

    Args:
        data: parsed JSON.
        path: file name used in error messages.
        where: JSON path prefix for error messages.
        allow_str: accept a bare string as a single caption (the OFA files do this).
    """
    prefix = f"{where}" if where else "top level"
    if not isinstance(data, dict):
        raise CaptionFormatError(path, f"{prefix}: expected an object of image id -> captions, got {_kind(data)}")
    if not data:
        raise CaptionFormatError(path, f"{prefix}: no captions")
    out: dict[str, list[str]] = {}
    for image_id, value in data.items():
        here = f"{where}[{image_id!r}]" if where else repr(image_id)
        if not image_id.strip():
            raise CaptionFormatError(path, f"{prefix}: empty image id")
        if isinstance(value, str) and allow_str:
            value = [value]
        if not isinstance(value, list) or not value:
            expected = "a caption string or a non-empty list of captions" if allow_str else "a non-empty list of captions"
            raise CaptionFormatError(path, f"{here}: expected {expected}, got {_kind(value)}")
        for i, caption in enumerate(value):  # empty or broken text is flagged (checks.py), not refused
            if not isinstance(caption, str):
                raise CaptionFormatError(path, f"{here}[{i}]: expected a string, got {_kind(caption)}")
        out[image_id] = list(value)
    return out


def _is_count(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )
