"""Settings of one caption-regeneration run (``taco-plus captions regenerate``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# Batch API input-file limits (platform.openai.com/docs/api-reference/batch/create): at
# most 50,000 requests and 200 MB per file. Stay a little under the byte limit.
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 200 * 1000 * 1000 - 1024


@dataclass
class RegenerateConfig:
    """Everything that defines a regeneration run; each field is the command-line option
    ``--field-name`` (``docs/captions.md`` and ``--help`` explain them). The ones to know:

    Args:
        out: the caption set to write; the journal (``<stem>.journal.jsonl``) and the batch
            folder (``<stem>.batch/``) sit beside it.
        image_root, captions: the images (ids are paths relative to ``image_root``), or the
            images a caption set names (its captions are the originals for ``with_original``).
        max_side, jpeg_quality: larger or non-JPEG images are downscaled and re-encoded;
            JPEGs that fit are sent as they are.
        timeout, max_attempts: seconds and attempts per HTTP request; the openai SDK retries
            408/409/429/5xx, timeouts and dropped connections, honouring ``Retry-After``.
        image_timeout: seconds per image in online mode, retries and waits included.
        max_answer_retries: new requests after a refusal, empty, short or malformed answer
            (online), or extra rounds for such images (batch).
        dry_run, write_requests, results: estimate the cost from the image headers, write the
            Batch API request files, or merge result files (OpenAI's or ``vllm run-batch``'s);
            none of them needs a key or the network.
    """

    out: Path
    image_root: Path
    captions: Optional[Path] = None
    mode: str = "online"
    model: str = "gpt-4o"
    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    prompt: Optional[str] = None
    target_words: Optional[int] = None
    with_original: bool = False
    temperature: float = 0.2
    max_tokens: int = 450
    detail: str = "high"
    max_side: int = 1024
    jpeg_quality: int = 90
    min_words: int = 20
    concurrency: int = 8
    timeout: float = 60.0
    image_timeout: float = 180.0
    max_attempts: int = 6
    max_answer_retries: int = 2
    poll_interval: float = 30.0
    batch_max_requests: int = BATCH_MAX_REQUESTS
    batch_max_bytes: int = BATCH_MAX_BYTES
    journal: Optional[Path] = None
    resume: bool = False
    dry_run: bool = False
    write_requests: bool = False
    results: list = field(default_factory=list)
    limit: Optional[int] = None
    prices: Optional[Path] = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.out, self.image_root = Path(self.out), Path(self.image_root)
        self.results = [Path(p) for p in self.results or []]
        for name, choices in (("mode", ("online", "batch")), ("detail", ("low", "high", "auto"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("concurrency", "max_attempts", "max_side", "max_tokens", "batch_max_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_answer_retries < 0 or self.min_words < 0 or min(self.timeout, self.image_timeout) <= 0:
            raise ValueError("max_answer_retries and min_words must not be negative, the timeouts positive")

    @property
    def journal_path(self) -> Path:
        return Path(self.journal) if self.journal else self.out.with_name(self.out.stem + ".journal.jsonl")

    @property
    def batch_dir(self) -> Path:
        """Batch request files and downloaded results."""
        return self.out.with_name(self.out.stem + ".batch")
