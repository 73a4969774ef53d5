"""Prompt templates for caption regeneration: versioned text files in
``taco_plus/captions/prompts/`` (``# key: value`` header, ``---``, the prompt, an optional
``--- original caption ---`` part); docs/captions.md describes the format. The file's
sha256 goes into the journal and the caption set."""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PROMPTS_DIR = Path(__file__).with_name("prompts")
DEFAULT_PROMPT = "detailed_scene_v1.txt"
_CONTEXT_MARKER = "--- original caption ---"


class PromptError(ValueError):
    """A malformed prompt template; the message names the file."""


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed prompt file: ``sha256`` of its bytes, header ``meta``, ``body`` (sent with
    every image) and ``context`` (appended with the original caption, or None)."""

    path: Path
    sha256: str
    meta: dict
    body: str
    context: Optional[str]

    def uses_target_words(self) -> bool:
        return "target_words" in _fields(self.body, self.path)

    def _target(self, target_words: Optional[int]) -> Optional[str | int]:
        target = target_words or self.meta.get("target_words")
        if self.uses_target_words() and not target:
            raise PromptError(f"{self.path}: needs a target length (--target-words)")
        return target

    def expected_words(self, target_words: Optional[int] = None) -> int:
        """Typical answer length in words, for cost estimates."""
        if self.uses_target_words():
            return int(self._target(target_words))
        return int(self.meta.get("expected_words", 150))

    def render(self, original_caption: Optional[str] = None, target_words: Optional[int] = None) -> str:
        """The prompt text for one image."""
        target = self._target(target_words)
        text = self.body.format(target_words=target)
        if original_caption is None:
            return text
        if self.context is None:
            raise PromptError(f"{self.path}: has no '{_CONTEXT_MARKER}' part for the original caption")
        return text + "\n\n" + self.context.format(original_caption=original_caption.strip(), target_words=target)

    def provenance(self) -> dict:
        """The ``provenance.prompt`` entry of a caption set."""
        return {"file": self.path.name, "sha256": self.sha256, "name": self.meta.get("name", self.path.stem),
                "version": self.meta.get("version", "0")}


def _fields(text: str, path: Path) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as err:
        raise PromptError(f"{path}: bad placeholder syntax ({err}); write literal braces as {{{{ }}}}") from None


def load_prompt(name_or_path: os.PathLike | str | None = None) -> PromptTemplate:
    """Parse a prompt file, given as a path or as a file name in ``taco_plus/captions/prompts/``."""
    path = Path(name_or_path or DEFAULT_PROMPT)
    if not path.exists() and path.parent == Path(".") and (PROMPTS_DIR / path.name).exists():
        path = PROMPTS_DIR / path.name
    if not path.exists():
        raise FileNotFoundError(f"prompt file not found: {path} (the bundled prompts are in {PROMPTS_DIR}, "
                                "shipped with the package)")
    raw = path.read_bytes()
    header, sep, rest = raw.decode("utf-8").partition("\n---\n")
    if not sep:
        raise PromptError(f"{path}: missing the '---' line that ends the header")
    meta = {}
    for line in filter(None, (line.strip() for line in header.splitlines())):
        if not line.startswith("#"):
            raise PromptError(f"{path}: header lines must start with '#': {line!r}")
        key, colon, value = line[1:].partition(":")
        if colon and key.strip().replace("_", "").isalnum():  # "# some remark: ..." is a comment
            meta[key.strip()] = value.strip()
    body, marker, context = rest.partition(f"\n{_CONTEXT_MARKER}\n")
    body, context = body.strip(), (context.strip() if marker else None)
    if not body:
        raise PromptError(f"{path}: the prompt text is empty")
    unknown = _fields(body, path) - {"target_words"}
    if context is not None:
        if "original_caption" not in _fields(context, path):
            raise PromptError(f"{path}: the original-caption part must contain {{original_caption}}")
        unknown |= _fields(context, path) - {"original_caption", "target_words"}
    if unknown:
        raise PromptError(f"{path}: unknown placeholders {sorted(unknown)}")
    for key in ("expected_words", "target_words"):
        if key in meta and not meta[key].isdigit():
            raise PromptError(f"{path}: header {key!r} must be a whole number, got {meta[key]!r}")
    return PromptTemplate(path, hashlib.sha256(raw).hexdigest(), meta, body, context)
