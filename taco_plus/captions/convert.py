"""Converters from the original caption files (TACO's OFA ``{file: caption}`` JSON, the official MS-COCO
captions files) to caption sets, captions verbatim; broken ones flagged in ``issues``, or dropped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from taco_plus.atomic import file_sha256
from taco_plus.captions.checks import caption_problems, find_problems
from taco_plus.captions.format import CaptionSet, Provenance, build_caption_set
from taco_plus.captions.sources import CaptionSetSource, CaptionSource, CocoCaptionsSource

OFA_SOURCE = "OFA captions released with TACO (github.com/effl-lab/TACO, materials/)"
COCO_SOURCE = "MS-COCO human captions (cocodataset.org, annotations_trainval2014.zip or 2017)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".gif")


def list_images(image_dir: os.PathLike | str) -> list[str]:
    """Image file names (relative POSIX paths, sorted) under ``image_dir``, recursively;
    hidden files and folders are skipped. ``os.walk`` reads no inode: fast on COCO's 82k."""
    root = Path(image_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else Path(rel).as_posix() + "/"
        found += [prefix + f for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)


def _convert(original: CaptionSource, name: str, provenance: Provenance, drop_bad: bool,
             uncaptioned: list[str]) -> CaptionSet:
    captions = {k: original.captions(k) for k in original.ids()}
    problems = find_problems(captions)
    if drop_bad and problems:
        kept = {i: [c for c in captions[i] if not caption_problems(c)] for i in problems}
        dropped = sorted(i for i, caps in kept.items() if not caps)
        captions = {i: kept.get(i, caps) for i, caps in captions.items() if i not in dropped}
        found = "; ".join(f"{i}: {', '.join(p)}" for i, p in problems.items())
        provenance.notes.append(f"dropped the broken captions of {len(problems)} images ({found}), {len(dropped)} "
                                f"of them left without any: {dropped}")
    provenance.origin = {"file": original.path.name, "sha256": file_sha256(original.path)}
    provenance.missing_images = uncaptioned
    return build_caption_set(name, captions, provenance, {} if drop_bad else problems)


def convert_ofa(path: os.PathLike | str, *, name: Optional[str] = None, source: Optional[str] = None,
                model: Optional[str] = "OFA", drop_bad: bool = False) -> CaptionSet:
    """Convert a plain ``{file: caption | [captions]}`` JSON (TACO's OFA files); ``name``
    defaults to the file's stem, ``source`` to TACO's OFA release, ``model`` None for human captions."""
    original = CaptionSetSource(path)
    if original.caption_set is not None:
        raise ValueError(f"{path} is already a taco-plus caption set")
    return _convert(original, name or original.path.stem, Provenance(source or OFA_SOURCE, model=model), drop_bad, [])


def convert_coco(annotations_json: os.PathLike | str, *, name: Optional[str] = None,
                 image_dir: Optional[os.PathLike | str] = None, drop_bad: bool = False) -> CaptionSet:
    """Convert ``captions_{train,val}2014.json`` (or 2017) to a set keyed by file name (``name`` defaults
    to ``coco_<stem>``); images in ``image_dir`` without a caption are reported."""
    original = CocoCaptionsSource(annotations_json)
    uncaptioned, provenance = set(original.uncaptioned), Provenance(COCO_SOURCE)
    if image_dir is not None:
        on_disk = list_images(image_dir)
        uncaptioned |= set(on_disk) - set(original.ids())
        provenance.parameters["images_on_disk"] = len(on_disk)
    return _convert(original, name or f"coco_{original.path.stem}", provenance, drop_bad, sorted(uncaptioned))
