"""Settings of one caption-regeneration run (``taco-plus captions regenerate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# Batch API input-file limits (platform.openai.com/docs/guides/batch): at most 50,000
# requests and 200 MB per file. Stay a little under the byte limit.
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 200 * 1000 * 1000 - 1024


@dataclass
class RegenerateConfig:
    """Everything that defines a regeneration run.

    Args:
        out: the caption set to write (JSON). The journal and batch files sit beside it.
        image_root: folder of the images; image ids are paths relative to it.
        captions: optional caption set (or plain JSON) naming the images to caption; its
            first caption per image is the "original" given with ``with_original``.
            Without it every image file under ``image_root`` is captioned.
        mode: ``"online"`` (concurrent chat completions) or ``"batch"`` (Batch API, 50% price).
        model: chat model name (any vision model of an OpenAI-compatible server).
        base_url: server URL (``http://localhost:8000/v1`` for vLLM, ``.../v1`` for Ollama);
            None means api.openai.com.
        api_key_env: environment variable holding the key (never passed on the command line).
        prompt: prompt template (path, or file name in ``captions/prompts/``).
        target_words: answer length for length-controlled prompts.
        with_original: add the original caption to the prompt as context.
        temperature, max_tokens: sampling settings sent with each request.
        detail: image detail, ``"low"`` (85 tokens an image) or ``"high"`` (tiled).
        max_side: images are downscaled so the longest side is at most this (pixels).
        jpeg_quality: JPEG quality of the uploaded (downscaled) image.
        min_words: answers shorter than this count as failures and are retried.
        concurrency: requests in flight at once (online mode).
        timeout: per-request timeout in seconds.
        max_attempts: attempts per image for transport errors (429, 5xx, timeouts, bad JSON).
        max_answer_retries: extra requests per image after a refusal / empty / too-short
            answer (online), or extra batch rounds for such images (batch).
        backoff_base, backoff_max: exponential backoff: the n-th retry waits about
            ``min(backoff_max, backoff_base * 2**n)``, half of it random (jitter).
        max_retry_after: cap on a server's ``Retry-After`` (seconds).
        poll_interval: seconds between batch status polls.
        batch_max_requests, batch_max_bytes: batch input-file split limits.
        journal: journal path; default ``<out stem>.journal.jsonl`` beside ``out``.
        resume: continue an existing journal (required when one exists).
        dry_run: estimate requests, tokens and cost and write the batch JSONL; no network.
        limit: caption only the first N images (in id order).
        prices: price table (JSON); default the bundled ``prices.json``.
        progress: show a tqdm progress bar.
        seed: seed for the backoff jitter (tests).
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
    max_attempts: int = 6
    max_answer_retries: int = 2
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 300.0
    poll_interval: float = 30.0
    batch_max_requests: int = BATCH_MAX_REQUESTS
    batch_max_bytes: int = BATCH_MAX_BYTES
    journal: Optional[Path] = None
    resume: bool = False
    dry_run: bool = False
    limit: Optional[int] = None
    prices: Optional[Path] = None
    progress: bool = True
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.image_root = Path(self.image_root)
        if self.mode not in ("online", "batch"):
            raise ValueError(f"mode must be 'online' or 'batch', got {self.mode!r}")
        if self.detail not in ("low", "high", "auto"):
            raise ValueError(f"detail must be 'low', 'high' or 'auto', got {self.detail!r}")
        for name in ("concurrency", "max_attempts", "max_side", "max_tokens", "batch_max_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_answer_retries < 0 or self.min_words < 0:
            raise ValueError("max_answer_retries and min_words must not be negative")

    @property
    def journal_path(self) -> Path:
        return Path(self.journal) if self.journal else self.out.with_name(self.out.stem + ".journal.jsonl")

    @property
    def batch_dir(self) -> Path:
        """Where batch input files (and downloaded outputs) are kept for inspection."""
        return self.out.with_name(self.out.stem + ".batch")
