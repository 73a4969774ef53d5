"""Prompt templates for caption regeneration, stored as versioned text files.

Templates live in ``captions/prompts/*.txt``. A file is a header of ``# key: value``
lines, a line ``---``, then the prompt sent with every image. An optional line
``--- original caption ---`` starts a second part, appended only when the original
caption is given as context (``--with-original``)::

    # name: detailed_scene
    # version: 1
    # expected_words: 175
    ---
    Describe this photograph ...
    --- original caption ---
    An earlier automatic caption of this image was: "{original_caption}" ...

Placeholders: ``{target_words}`` (length-controlled prompts; header key
``target_words`` gives its default) and ``{original_caption}``; write literal braces as
``{{`` and ``}}``. The sha256 of the whole file is recorded in every generated caption
set and in the run journal, so a caption is always traceable to the exact prompt text.
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# captions/prompts/ at the repository root (taco_plus/captions/prompts.py -> ../../captions).
PROMPTS_DIR = Path(__file__).resolve().parents[2] / "captions" / "prompts"
DEFAULT_PROMPT = "detailed_scene_v1.txt"

_BODY_FIELDS = {"target_words"}
_CONTEXT_FIELDS = {"original_caption", "target_words"}
_CONTEXT_MARKER = "--- original caption ---"


class PromptError(ValueError):
    """A malformed prompt template; the message names the file."""


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed prompt file.

    Args:
        path: the file.
        sha256: hash of the file's bytes.
        meta: header values (``name``, ``version``, ``expected_words``, ``target_words``, ...).
        body: prompt text sent with every image.
        context: text appended when the original caption is given, or None.
    """

    path: Path
    sha256: str
    meta: dict
    body: str
    context: Optional[str]

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.stem)

    @property
    def version(self) -> str:
        return self.meta.get("version", "0")

    def uses_target_words(self) -> bool:
        return "target_words" in _fields(self.body, self.path)

    def expected_words(self, target_words: Optional[int] = None) -> int:
        """Typical answer length in words, for cost estimates."""
        if self.uses_target_words():
            return int(target_words or self.meta["target_words"])
        return int(self.meta.get("expected_words", 150))

    def render(self, original_caption: Optional[str] = None, target_words: Optional[int] = None) -> str:
        """The prompt text for one image."""
        values = {"target_words": target_words or self.meta.get("target_words")}
        if self.uses_target_words() and not values["target_words"]:
            raise PromptError(f"{self.path}: needs a target length (--target-words)")
        text = self.body.format(**values)
        if original_caption is not None:
            if self.context is None:
                raise PromptError(f"{self.path}: has no '{_CONTEXT_MARKER}' part for the original caption")
            text += "\n\n" + self.context.format(original_caption=original_caption.strip(), **values)
        return text

    def provenance(self) -> dict:
        """The ``provenance.prompt`` entry of a caption set."""
        return {"file": self.path.name, "sha256": self.sha256, "name": self.name, "version": self.version}


def _fields(text: str, path: Path) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError as err:
        raise PromptError(f"{path}: bad placeholder syntax ({err}); write literal braces as {{{{ }}}}") from None


def resolve_prompt_path(name_or_path: os.PathLike | str | None) -> Path:
    """A prompt file given as a path, or as a file name inside ``captions/prompts/``."""
    if name_or_path is None:
        name_or_path = DEFAULT_PROMPT
    path = Path(name_or_path)
    if path.exists():
        return path
    bundled = PROMPTS_DIR / path.name
    if bundled.exists() and path.parent == Path("."):
        return bundled
    raise FileNotFoundError(
        f"prompt file not found: {path} (the bundled prompts are in {PROMPTS_DIR}, "
        "part of a taco-plus source checkout)"
    )


def load_prompt(name_or_path: os.PathLike | str | None = None) -> PromptTemplate:
    """Parse a prompt template file (see the module docstring for the format)."""
    path = resolve_prompt_path(name_or_path)
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    header, sep, rest = text.partition("\n---\n")
    if not sep:
        raise PromptError(f"{path}: missing the '---' line that ends the header")
    meta = {}
    for line in header.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("#"):
            raise PromptError(f"{path}: header lines must start with '#': {line!r}")
        key, colon, value = line[1:].partition(":")
        if colon and key.strip().replace("_", "").isalnum() and " " not in key.strip():
            meta[key.strip()] = value.strip()
    body, marker, context = rest.partition(f"\n{_CONTEXT_MARKER}\n")
    body, context = body.strip(), (context.strip() if marker else None)
    if not body:
        raise PromptError(f"{path}: the prompt text is empty")
    unknown = _fields(body, path) - _BODY_FIELDS
    if context is not None:
        unknown |= _fields(context, path) - _CONTEXT_FIELDS
        if "original_caption" not in _fields(context, path):
            raise PromptError(f"{path}: the original-caption part must contain {{original_caption}}")
    if unknown:
        raise PromptError(f"{path}: unknown placeholders {sorted(unknown)}")
    for key in ("expected_words", "target_words"):
        if key in meta and not meta[key].isdigit():
            raise PromptError(f"{path}: header {key!r} must be a whole number, got {meta[key]!r}")
    return PromptTemplate(path, hashlib.sha256(raw).hexdigest(), meta, body, context)
