"""Caption sources (image id -> captions; ids are file names relative to the image root) that the ``captions``
group instantiates; they only read files."""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from functools import cached_property
from pathlib import Path
from typing import Any

from taco_plus.captions.format import (FORMAT_NAME, CaptionFormatError, parse_caption_mapping, parse_caption_set,
                                       read_json)


class UnknownImageError(KeyError):
    """Raised by :meth:`CaptionSource.captions` for an image id the source lacks."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def captions_fingerprint(captions: dict[str, list[str]]) -> str:
    """sha256 of the canonical JSON of ``{image_id: [captions]}``: the same in any file format."""
    canonical = json.dumps(captions, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a lone surrogate (a broken caption, flagged elsewhere) must not crash hashing
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class CaptionSource:
    """Read-only mapping from image id to its captions, read from the JSON file ``path``: subclasses parse it in
    ``_read`` into ``name`` and ``_captions`` (image id -> non-empty list), and may list ``uncaptioned`` images."""

    path: Path
    name: str
    _captions: dict[str, list[str]]
    uncaptioned: list[str] = []

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = Path(path)
        self._read(read_json(self.path))

    @classmethod
    def parsed(cls, path: os.PathLike | str, data: Any) -> "CaptionSource":  # the JSON of path, already read
        source = cls.__new__(cls)
        source.path = Path(path)
        source._read(data)
        return source

    def ids(self) -> list[str]:
        """Image ids with at least one caption, in a stable order."""
        return list(self._captions)

    def captions(self, image_id: str) -> list[str]:
        """All captions of ``image_id`` (a copy); :class:`UnknownImageError` if absent."""
        if image_id in self.uncaptioned:
            raise UnknownImageError(f"image {image_id!r} is listed in {self.path.name} but has no caption annotations")
        if image_id not in self._captions:
            raise UnknownImageError(f"no captions for image {image_id!r} in caption source {self.name!r}")
        return list(self._captions[image_id])

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._captions

    def __len__(self) -> int:
        return len(self._captions)

    @cached_property
    def fingerprint(self) -> str:
        """:func:`captions_fingerprint` of the captions."""
        return captions_fingerprint(self._captions)


class CaptionSetSource(CaptionSource):
    """Captions from a caption set, or a plain ``{"file.png": caption(s)}`` JSON (``caption_set`` None)."""

    def _read(self, data: Any) -> None:
        versioned = isinstance(data, dict) and data.get("format") == FORMAT_NAME
        self.caption_set = parse_caption_set(data, self.path) if versioned else None
        self.name = self.caption_set.name if self.caption_set else self.path.stem
        self._captions = self.caption_set.captions if self.caption_set else parse_caption_mapping(data, self.path)


class CocoCaptionsSource(CaptionSource):
    """Captions from an official MS-COCO ``captions_{train,val}2014.json`` (or 2017), keyed by image
    file name, ordered by annotation id and stripped; images listed without any are ``uncaptioned``."""

    def __init__(self, annotations_json: os.PathLike | str) -> None:  # the captions configs' keyword
        super().__init__(annotations_json)

    def _read(self, data: Any) -> None:
        self.name = self.path.stem
        if not (isinstance(data, dict) and isinstance(data.get("images"), list)
                and isinstance(data.get("annotations"), list)):
            raise CaptionFormatError(self.path, 'not a COCO captions file: needs "images" and "annotations" arrays')
        try:
            file_names = {image["id"]: image["file_name"] for image in data["images"]}
        except (TypeError, KeyError):
            raise CaptionFormatError(self.path, "an entry of images lacks an id or file_name") from None
        by_image: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or not isinstance(ann.get("caption"), str):
                raise CaptionFormatError(self.path, f"annotations[{i}] lacks image_id or a caption string")
            if ann.get("image_id") not in file_names:
                raise CaptionFormatError(self.path, f"annotations[{i}] names unknown image id {ann.get('image_id')}")
            by_image[file_names[ann["image_id"]]].append((ann.get("id", i), ann["caption"].strip()))
        self._captions = {name: [c for _, c in sorted(by_image[name])] for name in sorted(by_image)}
        self.uncaptioned = sorted(set(file_names.values()) - set(self._captions))  # val2017 has some


def open_caption_source(path: os.PathLike | str) -> CaptionSource:
    """The source of a COCO captions file (told by its keys) or a caption set, parsing the file once."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    data = read_json(path)
    coco = isinstance(data, dict) and "annotations" in data and "images" in data
    return (CocoCaptionsSource if coco else CaptionSetSource).parsed(path, data)
