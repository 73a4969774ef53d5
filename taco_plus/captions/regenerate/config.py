"""A regeneration run's settings (each field of :class:`RegenerateConfig` is the option ``--field-name``
of ``taco-plus captions regenerate``) and its prompt template (docs/captions.md, "Prompt templates")."""

from __future__ import annotations

import hashlib
import math
import os
import string
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

PROMPTS_DIR = Path(__file__).parents[1] / "prompts"
DEFAULT_PROMPT = "detailed_scene_v1.txt"
_CONTEXT_MARKER = "--- original caption ---"


class RegenerateError(ValueError):
    """A run that cannot start as asked, a malformed prompt template included (the message says why)."""


def option(*default: Any, **argparse_kwargs: Any) -> Any:
    """A field with ``default`` (if given) and ``add_argument`` keywords, plus ``flags`` (default
    ``--field-name``) and ``group`` (it and the fields after it form a group of ``--help``)."""
    return field(default=default[0], metadata=argparse_kwargs) if default else field(metadata=argparse_kwargs)


@dataclass
class RegenerateConfig:
    """Everything that defines a regeneration run; its journal and batch folder sit beside ``out``."""

    out: Path = option(group="what to caption", type=Path, required=True, help="caption set to write")
    image_root: Path = option(type=Path, required=True, flags=("--images", "--image-root"), metavar="DIR",
                              help="image folder; image ids are paths relative to it")
    captions: Optional[Path] = option(None, type=Path, help="caption set naming the images (and their originals)")
    limit: Optional[int] = option(None, type=int, help="only the first N images")
    model: str = option("gpt-4o", group="request", help="vision chat model")
    base_url: Optional[str] = option(None, help="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    api_key_env: str = option("OPENAI_API_KEY", help="environment variable with the key")
    prompt: Optional[str] = option(None, help="prompt file, or a name in taco_plus/captions/prompts/ "
                                              "(default detailed_scene_v1.txt)")
    target_words: Optional[int] = option(None, type=int, help="answer length for length-controlled prompts")
    with_original: bool = option(False, help="give the original caption as context")
    temperature: float = option(0.2, help="sampling temperature")
    max_tokens: int = option(450, help="longest answer, in tokens")
    detail: str = option("high", choices=("low", "high", "auto"), help="image detail the model sees")
    max_side: int = option(1024, help="downscale images to this longest side")
    min_words: int = option(20, help="shorter answers are retried")
    mode: str = option("online", group="execution", choices=("online", "batch"),
                      help="concurrent requests, or the Batch API (half price, within 24 h)")
    concurrency: int = option(8, help="requests in flight (online)")
    timeout: float = option(60.0, help="seconds per HTTP request")
    image_timeout: float = option(180.0, help="seconds per image in online mode, retries and waits included")
    max_attempts: int = option(6, help="HTTP attempts per request (the openai SDK retries 408/409/429/5xx)")
    max_answer_retries: int = option(2, help="new requests after a refusal, empty, short or malformed answer")
    poll_interval: float = option(30.0, help="batch polling (s)")
    batch_max_requests: int = option(50_000, help="requests per batch file (the API's limit)")
    batch_max_bytes: int = option(200 * 1000 * 1000 - 1024, help="bytes per batch file (under the API's 200 MB)")
    journal: Optional[Path] = option(None, type=Path, help="journal file (default <out stem>.journal.jsonl)")
    resume: bool = option(False, help="continue the run recorded in the journal")
    dry_run: bool = option(False, help="estimate requests, tokens and cost; no key, no network")
    write_requests: bool = option(False, help="write the Batch API request files (<out stem>.batch/) and stop")
    results: Optional[list] = option(None, type=Path, nargs="+", help="merge Batch API result files (OpenAI's, "
                                     "or vllm run-batch's) instead of sending requests")
    prices: Optional[Path] = option(None, type=Path, help="price table JSON (default: the bundled one)")
    progress: bool = option(True, flags=("--no-progress",), help="no progress bar")

    def __post_init__(self) -> None:
        self.out, self.image_root = Path(self.out), Path(self.image_root)
        self.results = [Path(p) for p in self.results or []]
        bad = [f"{f.name} must be one of {f.metadata['choices']}" for f in fields(self)
               if getattr(self, f.name) not in f.metadata.get("choices", [getattr(self, f.name)])]
        bad += [f"{n} must be at least 1" for n in ("concurrency", "max_attempts", "max_side", "max_tokens",
                                                   "batch_max_requests") if getattr(self, n) < 1]
        bad += [f"{n} must not be negative" for n in ("max_answer_retries", "min_words", "poll_interval")
                if getattr(self, n) < 0]
        bad += [f"{n} must be positive" for n in ("timeout", "image_timeout") if getattr(self, n) <= 0]
        bad += [f"{f.name} must be a finite number" for f in fields(self) if f.type == "float"
                and not math.isfinite(getattr(self, f.name))]
        bad += ["temperature must be between 0 and 2"] * (self.temperature < 0 or self.temperature > 2)
        bad += ["limit must be at least 1"] * (self.limit is not None and self.limit < 1)
        try:  # an unparsable URL would end in a traceback inside httpx
            url = urlsplit(self.base_url or "http://localhost")
            url.port
        except ValueError as err:
            url, bad = None, bad + [f"base_url {self.base_url!r} is not a URL ({err})"]
        if url and (url.scheme not in ("http", "https") or not url.hostname):
            bad.append(f"base_url {self.base_url!r} is not an http(s) URL")
        if bad:
            raise ValueError("; ".join(bad))

    @property
    def journal_path(self) -> Path:
        return Path(self.journal) if self.journal else self.out.with_name(self.out.stem + ".journal.jsonl")

    @property
    def batch_dir(self) -> Path:  # batch request files and downloaded results
        return self.out.with_name(self.out.stem + ".batch")


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed prompt file: ``sha256`` of its bytes, header ``meta``, ``body`` (sent with every
    image) and ``context`` (appended with the original caption, or None)."""

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
            raise RegenerateError(f"{self.path}: needs a target length (--target-words)")
        return target

    def expected_words(self, target_words: Optional[int] = None) -> int:  # for cost estimates
        return int(self._target(target_words) if self.uses_target_words() else self.meta.get("expected_words", 150))

    def render(self, original_caption: Optional[str] = None, target_words: Optional[int] = None) -> str:
        target = self._target(target_words)
        text = self.body.format(target_words=target)
        if original_caption is None:
            return text
        if self.context is None:
            raise RegenerateError(f"{self.path}: has no '{_CONTEXT_MARKER}' part for the original caption")
        return text + "\n\n" + self.context.format(original_caption=original_caption.strip(), target_words=target)


def _fields(text: str, path: Path) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as err:
        raise RegenerateError(f"{path}: bad placeholder syntax ({err}); write literal braces as {{{{ }}}}") from None


def load_prompt(name_or_path: os.PathLike | str | None = None) -> PromptTemplate:
    """Parse a prompt file, given as a path or as a file name in ``taco_plus/captions/prompts/``."""
    path = Path(name_or_path or DEFAULT_PROMPT)
    if not path.exists() and path.parent == Path(".") and (PROMPTS_DIR / path.name).exists():
        path = PROMPTS_DIR / path.name
    if not path.exists():
        raise FileNotFoundError(f"prompt file not found: {path} (the bundled prompts are in {PROMPTS_DIR}, "
                                "shipped with the package)")
    header, sep, rest = (raw := path.read_bytes()).decode("utf-8").partition("\n---\n")
    if not sep:
        raise RegenerateError(f"{path}: missing the '---' line that ends the header")
    meta = {}
    for line in filter(None, (line.strip() for line in header.splitlines())):
        if not line.startswith("#"):
            raise RegenerateError(f"{path}: header lines must start with '#': {line!r}")
        key, colon, value = line[1:].partition(":")
        if colon and key.strip().replace("_", "").isalnum():  # "# some remark: ..." is a comment
            meta[key.strip()] = value.strip()
    body, marker, context = rest.partition(f"\n{_CONTEXT_MARKER}\n")
    body, context = body.strip(), (context.strip() if marker else None)
    if not body:
        raise RegenerateError(f"{path}: the prompt text is empty")
    unknown = _fields(body, path) - {"target_words"}
    if context is not None:
        if "original_caption" not in _fields(context, path):
            raise RegenerateError(f"{path}: the original-caption part must contain {{original_caption}}")
        unknown |= _fields(context, path) - {"original_caption", "target_words"}
    if unknown:
        raise RegenerateError(f"{path}: unknown placeholders {sorted(unknown)}")
    for key in ("expected_words", "target_words"):
        if key in meta and not meta[key].isdigit():
            raise RegenerateError(f"{path}: header {key!r} must be a whole number, got {meta[key]!r}")
    return PromptTemplate(path, hashlib.sha256(raw).hexdigest(), meta, body, context)
