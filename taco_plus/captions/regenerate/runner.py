"""What online and batch runs share: the request built for each image (the same body online and in
Batch API files), the judging of each answer, journaling, progress, and the API key's secrecy."""

from __future__ import annotations

import base64
import io
import os
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple, Optional
from urllib.parse import urlsplit, urlunsplit

from PIL import Image, ImageOps

from taco_plus.captions.convert import list_images
from taco_plus.captions.format import utc_now
from taco_plus.captions.regenerate.config import PromptTemplate, RegenerateConfig, RegenerateError
from taco_plus.captions.regenerate.journal import Journal
from taco_plus.captions.sources import CaptionSetSource, captions_fingerprint

UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)  # what PIL raises for a bad image file
EXIF_ORIENTATION = 0x0112
JPEG_QUALITY = 90  # of the images that are re-encoded
# Typical opening of a model declining a request ("I'm sorry, I can't help with that.").
_REFUSAL_START = re.compile(r"^\W*(i['’]m sorry|i am sorry|sorry\b|i can(?:no|['’])t\b|i can not\b|"
                            r"i['’]m unable|i am unable|i['’]m not able|i won['’]t\b|unfortunately,? i\b|as an ai\b)",
                            re.IGNORECASE)
# Only unambiguous refusals: a caption may legitimately say "I cannot identify the brand".
_REFUSAL_ANYWHERE = re.compile(r"\bi (?:can(?:no|['’])t|am unable to|['’]m unable to) (?:help|assist|comply) "
                               r"with\b", re.IGNORECASE)
_BEARER = re.compile(r"Bearer\s+[\w.~+/=-]+", re.IGNORECASE)


class FatalAPIError(RuntimeError):
    """A failure no retry and no other image can escape; the run stops."""


class Job(NamedTuple):
    """One image to caption: its id (path relative to the image root), file and original caption."""

    image_id: str
    path: Path
    original: Optional[str] = None


class Answer(NamedTuple):
    """What matters in a chat completion; ``usage`` counts are 0 when the server omits them."""

    text: Optional[str]
    refusal: Optional[str] = None
    finish_reason: Optional[str] = None
    usage: dict = {"prompt_tokens": 0, "completion_tokens": 0}  # never mutated
    response_id: Optional[str] = None


def collect_jobs(cfg: RegenerateConfig) -> list[Job]:
    """Images named by ``cfg.captions`` (or every image under ``cfg.image_root``), id-sorted."""
    if not cfg.image_root.is_dir():
        raise RegenerateError(f"image folder not found: {cfg.image_root}")
    if cfg.captions is not None:
        source = CaptionSetSource(cfg.captions)
        jobs = [Job(i, cfg.image_root / i, source.captions(i)[0]) for i in sorted(source.ids())]
        if missing := [j.image_id for j in jobs if not j.path.is_file()]:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise RegenerateError(f"{len(missing)} images named in {cfg.captions} are not in {cfg.image_root}: {shown}")
    elif cfg.with_original:
        raise RegenerateError("--with-original needs --captions (the set holding the original captions)")
    else:
        jobs = [Job(i, cfg.image_root / i) for i in list_images(cfg.image_root)]
    if not jobs:
        raise RegenerateError(f"no images to caption in {cfg.image_root}")
    return jobs


def prompt_text(job: Job, cfg: RegenerateConfig, prompt: PromptTemplate) -> str:
    return prompt.render(job.original if cfg.with_original else None, cfg.target_words)


def build_request(job: Job, cfg: RegenerateConfig, prompt: PromptTemplate) -> dict:
    """The chat-completions body for ``job``: one user message with the prompt and the image."""
    with Image.open(job.path) as img:
        if (img.format == "JPEG" and img.mode in ("RGB", "L") and max(img.size) <= cfg.max_side
                and img.getexif().get(EXIF_ORIENTATION, 1) == 1):
            data = job.path.read_bytes()  # a JPEG that fits is sent as it is: re-encoding costs ~10 ms and quality
        else:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((cfg.max_side, cfg.max_side), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=JPEG_QUALITY)
            data = buf.getvalue()
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    content = [{"type": "text", "text": prompt_text(job, cfg, prompt)},
               {"type": "image_url", "image_url": {"url": url, "detail": cfg.detail}}]
    return {"model": cfg.model, "messages": [{"role": "user", "content": content}],
            "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}


def parse_completion(data: Any) -> Answer:
    """An :class:`Answer` from a decoded chat-completion object; ValueError if it is none."""
    try:
        choice = data["choices"][0]
        text, refusal = choice["message"].get("content"), choice["message"].get("refusal")
        if text is not None and not isinstance(text, str):
            raise TypeError("content is not a string")
        usage = data.get("usage") or {}
        counts = {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
        return Answer(text, refusal, choice.get("finish_reason"), counts, data.get("id"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"not a chat completion ({type(err).__name__}: {err})") from None


def answer_problem(answer: Answer, min_words: int, max_tokens: Optional[int] = None) -> Optional[str]:
    """Why ``answer`` is not a usable caption, or None if it is. An answer far beyond
    ``max_tokens`` (twice the tokens, or 32 characters a token) is a server ignoring the limit."""
    n_chars, n_tokens = len(answer.text or ""), answer.usage["completion_tokens"]
    if max_tokens and (n_tokens > 2 * max_tokens or n_chars > 32 * max_tokens):
        return f"answer far beyond max_tokens {max_tokens} ({n_chars:,} characters, {n_tokens:,} tokens); not kept"
    if answer.refusal:
        return f"refusal: {answer.refusal.strip()[:120]}"
    text = (answer.text or "").strip()
    if answer.finish_reason == "content_filter":
        return "answer blocked by the server's content filter"
    if not text:
        return "empty answer"
    if _REFUSAL_START.match(text) or _REFUSAL_ANYWHERE.search(text[:300]):
        return f"refusal: {text[:120]}"
    n_words = len(text.split())
    return f"answer too short ({n_words} words, minimum {min_words})" if n_words < min_words else None


def request_signature(cfg: RegenerateConfig, prompt: PromptTemplate, jobs: list[Job]) -> dict:
    """The settings that change the answers (with the given originals' fingerprint): a resume keeps them."""
    originals = {j.image_id: [j.original] for j in jobs if j.original} if cfg.with_original else {}
    target = cfg.target_words if prompt.uses_target_words() else None
    fingerprint = captions_fingerprint(originals) if originals else None
    return {"model": cfg.model, "prompt_sha256": prompt.sha256, "target_words": target,
            "with_original": cfg.with_original, "originals_sha256": fingerprint,
            **{k: getattr(cfg, k) for k in ("temperature", "max_tokens", "detail", "max_side")},
            "jpeg_quality": JPEG_QUALITY, "min_words": cfg.min_words}


def read_api_key(env_name: str) -> str:
    """The API key from the environment (never from the command line or a file)."""
    if not (key := os.environ.get(env_name, "").strip()):
        raise RegenerateError(f"no API key: the environment variable {env_name} is not set. Export your OpenAI key "
                              f"there; for a local server that ignores keys (vLLM, Ollama) any value works, e.g. "
                              f"{env_name}=local. --dry-run, --write-requests and --results need no key.")
    return key


def redact(text: object, key: Optional[str]) -> str:
    """``text`` with ``key`` and any ``Bearer <token>`` replaced by ``[redacted]`` (some servers echo the key);
    keys under 8 characters are placeholders for local servers, not secrets."""
    text = _BEARER.sub("Bearer [redacted]", str(text))
    return text.replace(key, "[redacted]") if key and len(key) >= 8 else text


def public_base_url(base_url: Optional[str]) -> Optional[str]:
    """``base_url`` without any ``user:password@`` part, safe to record."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, (parts.hostname or "") + f":{parts.port}" * bool(parts.port), parts.path, "", ""))


class Runner:
    """Builds requests, judges answers, journals and counts captions and failures (``total``: the bar's)."""

    mode = "online"

    def __init__(self, cfg: RegenerateConfig, journal: Journal, prompt: PromptTemplate, total: int,
                 api_key: Optional[str]) -> None:
        from tqdm.auto import tqdm

        self.cfg, self.journal, self.prompt, self.api_key = cfg, journal, prompt, api_key
        self.done = self.failed = self.retried = self.prompt_tokens = self.completion_tokens = 0
        self.given_up: set[str] = set()  # failed for good: no further attempt in this run
        self.status = ""  # shown after the counters (online: the longest wait in progress)
        self.bar = tqdm(total=total, desc=f"captions ({self.mode})", unit="img", dynamic_ncols=True,
                        file=sys.stderr, disable=not cfg.progress)

    def request(self, job: Job) -> Optional[dict]:  # None (the failure journaled) for an unreadable image
        try:
            return build_request(job, self.cfg, self.prompt)
        except UNREADABLE as err:
            self.fail(job.image_id, f"cannot read image: {err}")

    def accept(self, image_id: str, answer: Answer, **extra) -> Optional[str]:
        """Journal ``answer`` as the caption of ``image_id``, or return why it is rejected."""
        self.prompt_tokens += answer.usage["prompt_tokens"]
        self.completion_tokens += answer.usage["completion_tokens"]
        if (problem := answer_problem(answer, self.cfg.min_words, self.cfg.max_tokens)) is None:
            self._append({"type": "caption", "image_id": image_id, "caption": " ".join(answer.text.split()),
                          "usage": answer.usage, "mode": self.mode, "finish_reason": answer.finish_reason,
                          "response_id": answer.response_id, "time": utc_now(), **extra})
            self.done += 1
            self.show(advance=1)
        return problem

    def fail(self, image_id: str, reason: str, final: bool = True, **extra) -> None:  # final: no retry in this run
        if image_id in self.given_up:
            return
        self._append({"type": "failure", "image_id": image_id, "reason": reason, "mode": self.mode,
                      "time": utc_now(), **extra})
        if final:
            self.given_up.add(image_id)
            self.failed += 1
            self.show(advance=1)
        else:
            self.retry()

    def _append(self, record: dict) -> None:  # the key scrubbed from every text the server chose
        self.journal.append({k: redact(v, self.api_key) if isinstance(v, str) and k != "image_id" else v
                             for k, v in record.items()})

    def retry(self, message: Optional[str] = None) -> None:  # counted; message printed above the bar
        self.retried += 1
        if message and not self.bar.disable:
            self.bar.write(redact(message, self.api_key), file=sys.stderr)
        self.show()

    def show(self, advance: int = 0) -> None:
        tokens = self.prompt_tokens + self.completion_tokens
        self.bar.set_postfix_str(f"done={self.done} failed={self.failed} retried={self.retried} tokens={tokens:,}"
                                 + (f" | {redact(self.status, self.api_key)}" if self.status else ""),
                                 refresh=not advance)
        self.bar.update(advance)
