"""The versioned caption-set file (``captions/FORMAT.md``): captions, provenance and statistics.
Loading validates, errors naming the file and the JSON path; broken text is flagged, not refused."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from taco_plus.atomic import atomic_write

FORMAT_NAME = "taco-plus-captions"
FORMAT_VERSION = 1
STATS_KEYS = ("num_images", "num_captions", "words_per_caption", "clip_tokens_per_caption",
              "share_over_38_tokens", "share_over_77_tokens")


class CaptionFormatError(ValueError):
    """A caption file that cannot be read; the message names the file and the problem."""

    def __init__(self, path: os.PathLike | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Provenance:
    """Where a caption set came from: the ``provenance`` fields of ``captions/FORMAT.md``."""

    source: str
    created: str = field(default_factory=utc_now)
    model: Optional[str] = None
    prompt: Optional[dict] = None
    parameters: dict = field(default_factory=dict)
    origin: Optional[dict] = None
    usage: dict = field(default_factory=dict)
    missing_images: list = field(default_factory=list)
    notes: list = field(default_factory=list)


@dataclass
class CaptionSet:
    """An in-memory caption set: image id -> ``captions``, ``provenance``, ``stats``, image id -> ``issues``."""

    name: str
    captions: dict[str, list[str]]
    provenance: Provenance
    stats: dict = field(default_factory=dict)
    issues: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        prov = {k: v for k, v in vars(self.provenance).items() if v not in (None, [], {})}
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": self.name, "provenance": prov,
                "stats": self.stats, "issues": self.issues, "captions": self.captions}


@lru_cache(maxsize=1)
def _tokenizer():
    # open_clip's own cleaning (ftfy) copes with lone surrogates, which a broken caption may hold
    from open_clip.tokenizer import SimpleTokenizer  # the CLIP BPE ships with open_clip; imports torch

    return SimpleTokenizer()


def clip_token_count(text: str) -> int:
    """Number of CLIP positions ``text`` occupies untruncated (BPE tokens + SOT + EOT)."""
    return len(_tokenizer().encode(text)) + 2


def _summary(values: Sequence[int]) -> dict:
    ordered = sorted(values)
    p95 = ordered[max(0, -(-95 * len(ordered) // 100) - 1)]  # nearest rank: 95% of captions do not exceed it
    return {"mean": round(statistics.fmean(ordered), 2), "median": statistics.median(ordered), "p95": p95,
            "min": ordered[0], "max": ordered[-1]}


def caption_stats(captions: Mapping[str, Iterable[str]]) -> dict:
    """The ``stats`` of a caption set (``captions/FORMAT.md``) for image id -> captions."""
    texts = [c for caps in captions.values() for c in caps]
    if not texts:
        raise ValueError("cannot compute statistics of an empty caption set")
    tokens = [clip_token_count(t) for t in texts]
    return {"num_images": len(captions), "num_captions": len(texts),
            "words_per_caption": _summary([len(t.split()) for t in texts]), "clip_tokens_per_caption": _summary(tokens),
            "share_over_38_tokens": round(sum(t > 38 for t in tokens) / len(texts), 4),  # TACO's text length
            "share_over_77_tokens": round(sum(t > 77 for t in tokens) / len(texts), 4),  # CLIP's context
            "tokenizer": "open_clip SimpleTokenizer (CLIP ViT-B-32 BPE); counts include start/end of text"}


def build_caption_set(name: str, captions: Mapping[str, Sequence[str] | str], provenance: Provenance,
                      issues: Optional[Mapping[str, Sequence[str]]] = None) -> CaptionSet:  # stats computed
    caps = {k: [v] if isinstance(v, str) else list(v) for k, v in captions.items()}
    return CaptionSet(name, caps, provenance, caption_stats(caps), {k: list(v) for k, v in (issues or {}).items()})


def save_caption_set(caption_set: CaptionSet, path: os.PathLike | str) -> None:
    """Validate and write ``caption_set`` to ``path`` atomically."""
    data = caption_set.to_json()
    parse_caption_set(data, path)  # never write a file the loader would reject
    atomic_write(path, json_bytes(data, indent=1))


def json_bytes(data: Any, indent: Optional[int] = None) -> bytes:
    """UTF-8 JSON text ending in a newline; a lone surrogate (only possible inside a JSON string)
    is written as its JSON escape by ``backslashreplace``, so the file reads back the same."""
    text = json.dumps(data, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"))
    return (text + "\n").encode("utf-8", "backslashreplace")


def read_json(path: os.PathLike | str) -> Any:
    """Parse a JSON file, turning decode errors into :class:`CaptionFormatError`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CaptionFormatError(path, f"not UTF-8 text ({err})") from None
    except json.JSONDecodeError as err:
        raise CaptionFormatError(path, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise CaptionFormatError(path, "JSON nested too deeply to read") from None


def load_caption_set(path: os.PathLike | str) -> CaptionSet:
    return parse_caption_set(read_json(path), path)


def parse_caption_set(data: Any, path: os.PathLike | str) -> CaptionSet:
    """Validate parsed JSON as a caption set; errors name ``path`` and the JSON path."""

    def check(ok: bool, problem: str) -> None:
        if not ok:
            raise CaptionFormatError(path, problem)

    check(isinstance(data, dict), f"expected a JSON object at the top level, got {_kind(data)}")
    check(data.get("format") == FORMAT_NAME, f'"format" must be "{FORMAT_NAME}", got {data.get("format")!r}')
    version = data.get("format_version")
    check(type(version) is int, f'"format_version" must be an integer, got {version!r}')
    check(version <= FORMAT_VERSION, f"format_version {version} is newer than this taco-plus reads "
                                     f"({FORMAT_VERSION}); upgrade")
    check(version >= 1, f"format_version {version} does not exist")
    check(isinstance(data.get("name"), str) and data["name"], '"name" must be a non-empty string')
    captions = parse_caption_mapping(data.get("captions"), path, where="captions", allow_str=False)

    prov = data.get("provenance")
    check(isinstance(prov, dict), f'"provenance" must be an object, got {_kind(prov)}')
    unknown = set(prov) - {f.name for f in fields(Provenance)}
    check(not unknown, f"provenance has unknown keys {sorted(unknown)}")
    for key in ("source", "created"):
        check(isinstance(prov.get(key), str) and prov[key], f'provenance["{key}"] must be a non-empty string')
    for key, kind in (("model", str), ("prompt", dict), ("origin", dict)):
        check(prov.get(key) is None or isinstance(prov[key], kind),
              f'provenance["{key}"] must be a {kind.__name__} or null')
    for key, kind in (("parameters", dict), ("usage", dict), ("missing_images", list), ("notes", list)):
        check(isinstance(prov.get(key, kind()), kind), f'provenance["{key}"] must be {_kind(kind())}')
    check(prov.get("prompt") is None or isinstance(prov["prompt"].get("sha256"), str),
          'provenance["prompt"]["sha256"] must be the prompt file\'s sha256')
    for image_id, entries in prov.get("usage", {}).items():
        check(image_id in captions, f'provenance["usage"] names {image_id!r}, which has no captions')
        check(isinstance(entries, list) and len(entries) == len(captions[image_id]),
              f'provenance["usage"][{image_id!r}] must list one entry per caption')
        check(all(e is None or (isinstance(e, dict) and all(v is None or (type(v) is int and v >= 0)
                                                             for v in e.values())) for e in entries),
              f'provenance["usage"][{image_id!r}]: entries are token-count objects or null')

    stats = data.get("stats")
    check(isinstance(stats, dict), f'"stats" must be an object, got {_kind(stats)}')
    check(all(k in stats for k in STATS_KEYS), f"stats is missing {[k for k in STATS_KEYS if k not in stats]}")
    check(stats["num_images"] == len(captions), f'stats["num_images"] is {stats["num_images"]} but there are '
                                                f"{len(captions)} images")
    n_caps = sum(len(v) for v in captions.values())
    check(stats["num_captions"] == n_caps, f'stats["num_captions"] is {stats["num_captions"]} but there are '
                                           f"{n_caps} captions")
    issues = data.get("issues", {})
    check(isinstance(issues, dict) and all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                           for v in issues.values()), '"issues" must map image ids to lists of strings')
    return CaptionSet(data["name"], captions, Provenance(**prov), stats, {k: list(v) for k, v in issues.items()})


def parse_caption_mapping(data: Any, path: os.PathLike | str, where: str = "",
                          allow_str: bool = True) -> dict[str, list[str]]:
    """Validate ``{image_id: caption | [captions]}`` (``allow_str``: a bare string is one caption,
    as in TACO's OFA files) and return lists of captions; ``where`` prefixes the JSON path."""
    prefix = where or "top level"
    if not isinstance(data, dict):
        raise CaptionFormatError(path, f"{prefix}: expected an object of image id -> captions, got {_kind(data)}")
    if not data:
        raise CaptionFormatError(path, f"{prefix}: no captions")
    out: dict[str, list[str]] = {}
    for image_id, value in data.items():
        here = f"{where}[{image_id!r}]" if where else repr(image_id)
        if not image_id.strip():
            raise CaptionFormatError(path, f"{prefix}: empty image id")
        value = [value] if isinstance(value, str) and allow_str else value
        if not isinstance(value, list) or not value:
            expected = ("a caption string or " if allow_str else "") + "a non-empty list of captions"
            raise CaptionFormatError(path, f"{here}: expected {expected}, got {_kind(value)}")
        for i, caption in enumerate(value):
            if not isinstance(caption, str):
                raise CaptionFormatError(path, f"{here}[{i}]: expected a string, got {_kind(caption)}")
        out[image_id] = value
    return out


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)
