"""Settings of one caption-regeneration run. Each field is also the command-line option
``--field-name`` of ``taco-plus captions regenerate``; its metadata holds the option's help
and ``add_argument`` keywords (docs/captions.md explains the options)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional


class RegenerateError(ValueError):
    """A run that cannot start as asked (the message says why)."""


def option(*default: Any, **argparse_kwargs: Any) -> Any:
    """A field with ``default`` (if given) whose metadata are keywords of ``add_argument``, plus
    ``flags`` (default ``--field-name``) and ``group``: it and the fields after it form a group
    of the ``--help`` text."""
    return field(default=default[0], metadata=argparse_kwargs) if default else field(metadata=argparse_kwargs)


@dataclass
class RegenerateConfig:
    """Everything that defines a regeneration run. The journal (``<out stem>.journal.jsonl``)
    and the batch folder (``<out stem>.batch/``) sit beside ``out``."""

    out: Path = option(group="what to caption", type=Path, required=True, help="caption set to write")
    image_root: Path = option(type=Path, required=True, flags=("--images", "--image-root"), metavar="DIR",
                              help="image folder; image ids are paths relative to it")
    captions: Optional[Path] = option(None, type=Path, help="caption set naming the images (and their originals)")
    limit: Optional[int] = option(None, type=int, help="only the first N images")
    model: str = option("gpt-4o", group="request")
    base_url: Optional[str] = option(None, help="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    api_key_env: str = option("OPENAI_API_KEY", help="environment variable with the key")
    prompt: Optional[str] = option(None, help="prompt file, or a name in taco_plus/captions/prompts/ "
                                              "(default detailed_scene_v1.txt)")
    target_words: Optional[int] = option(None, type=int, help="answer length for length-controlled prompts")
    with_original: bool = option(False, help="give the original caption as context")
    temperature: float = option(0.2)
    max_tokens: int = option(450)
    detail: str = option("high", choices=("low", "high", "auto"))
    max_side: int = option(1024, help="downscale images to this longest side")
    min_words: int = option(20, help="shorter answers are retried")
    mode: str = option("online", group="execution", choices=("online", "batch"))
    concurrency: int = option(8)
    timeout: float = option(60.0, help="seconds per HTTP request")
    image_timeout: float = option(180.0, help="seconds per image in online mode, retries and waits included")
    max_attempts: int = option(6, help="HTTP attempts per request (the openai SDK retries 408/409/429/5xx)")
    max_answer_retries: int = option(2, help="new requests after a refusal, empty, short or malformed answer")
    poll_interval: float = option(30.0, help="batch polling (s)")
    batch_max_requests: int = option(50_000)  # the Batch API's limits per input file: 50,000
    batch_max_bytes: int = option(200 * 1000 * 1000 - 1024)  # requests, 200 MB (a little under)
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
        bad += [f"{n} must not be negative" for n in ("max_answer_retries", "min_words") if getattr(self, n) < 0]
        bad += [f"{n} must be positive" for n in ("timeout", "image_timeout") if getattr(self, n) <= 0]
        if bad:
            raise ValueError("; ".join(bad))

    @property
    def journal_path(self) -> Path:
        return Path(self.journal) if self.journal else self.out.with_name(self.out.stem + ".journal.jsonl")

    @property
    def batch_dir(self) -> Path:
        """Batch request files and downloaded results."""
        return self.out.with_name(self.out.stem + ".batch")
