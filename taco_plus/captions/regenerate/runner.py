"""What online and batch runs share: :class:`Runner` builds each image's request, judges each
answer, journals the outcome and shows progress; and the API key stays secret."""

from __future__ import annotations

import os
import sys
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from taco_plus.captions.format import utc_now
from taco_plus.captions.prompts import PromptTemplate
from taco_plus.captions.regenerate.config import RegenerateConfig, RegenerateError
from taco_plus.captions.regenerate.journal import Journal
from taco_plus.captions.regenerate.requests import Answer, Job, answer_problem, build_request

UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)  # what PIL raises for a bad image file


class MissingAPIKeyError(RegenerateError):
    """The key's environment variable is unset or empty."""


class FatalAPIError(RuntimeError):
    """A failure no retry and no other image can escape; the run stops."""


def read_api_key(env_name: str) -> str:
    """The API key from the environment (never from the command line or a file)."""
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise MissingAPIKeyError(
            f"no API key: the environment variable {env_name} is not set. Export your OpenAI key there; for a "
            f"local server that ignores keys (vLLM, Ollama) any value works, e.g. {env_name}=local. "
            "--dry-run, --write-requests and --results need no key.")
    return key


class Redactor:
    """Replaces the key in any text with ``[redacted]`` (some servers echo it in 401 errors).
    Keys under 8 characters are placeholders for local servers, not secrets."""

    def __init__(self, secret: Optional[str]) -> None:
        self._secret = secret if secret and len(secret) >= 8 else None

    def __call__(self, text: object) -> str:
        return str(text).replace(self._secret, "[redacted]") if self._secret else str(text)


def public_base_url(base_url: Optional[str]) -> Optional[str]:
    """``base_url`` without any ``user:password@`` part, safe to record."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Runner:
    """Builds requests, judges answers, journals captions and failures and counts them;
    ``total`` is the length of the progress bar, ``api_key`` None when no server is asked."""

    mode = "online"

    def __init__(self, cfg: RegenerateConfig, journal: Journal, prompt: PromptTemplate, total: int,
                 api_key: Optional[str]) -> None:
        from tqdm.auto import tqdm

        self.cfg, self.journal, self.prompt, self.api_key = cfg, journal, prompt, api_key
        self.redact = Redactor(api_key)
        self.done = self.failed = self.retried = self.prompt_tokens = self.completion_tokens = 0
        self.given_up: set[str] = set()  # failed for good: no further attempt in this run
        self.status = ""  # shown after the counters (online: the longest wait in progress)
        self.bar = tqdm(total=total, desc=f"captions ({self.mode})", unit="img", dynamic_ncols=True,
                        file=sys.stderr, disable=not cfg.progress)

    def request(self, job: Job) -> Optional[dict]:
        """The request body, or None (the failure journaled) for an unreadable image."""
        try:
            return build_request(job, self.cfg, self.prompt)[0]
        except UNREADABLE as err:
            self.fail(job.image_id, f"cannot read image: {err}")
            return None

    def accept(self, image_id: str, answer: Answer, **extra) -> Optional[str]:
        """Journal ``answer`` as the caption of ``image_id``, or return why it is rejected."""
        usage = answer.usage
        self.prompt_tokens += usage["prompt_tokens"]
        self.completion_tokens += usage["completion_tokens"]
        problem = answer_problem(answer, self.cfg.min_words)
        if problem is None:  # the caption: one paragraph, whitespace collapsed
            self.journal.append({"type": "caption", "image_id": image_id, "caption": " ".join(answer.text.split()),
                                 "usage": usage, "mode": self.mode, "finish_reason": answer.finish_reason,
                                 "response_id": answer.response_id, "time": utc_now(), **extra})
            self.done += 1
            self.show(advance=1)
        return problem

    def fail(self, image_id: str, reason: str, final: bool = True, **extra) -> None:
        """Journal a failure; ``final``: no further attempt in this run."""
        if image_id in self.given_up:
            return
        self.journal.append({"type": "failure", "image_id": image_id, "reason": self.redact(reason),
                             "mode": self.mode, "time": utc_now(), **extra})
        if final:
            self.given_up.add(image_id)
            self.failed += 1
            self.show(advance=1)
        else:
            self.retry()

    def retry(self, message: Optional[str] = None) -> None:
        """Count a retry; ``message`` is printed above the bar as it happens."""
        self.retried += 1
        if message and not self.bar.disable:
            self.bar.write(message, file=sys.stderr)
        self.show()

    def show(self, advance: int = 0) -> None:
        tokens = self.prompt_tokens + self.completion_tokens
        self.bar.set_postfix_str(f"done={self.done} failed={self.failed} retried={self.retried} tokens={tokens:,}"
                                 + (f" | {self.status}" if self.status else ""), refresh=not advance)
        self.bar.update(advance)
