"""What to do after a failed request: retry (when, honouring ``Retry-After``), skip the
image, or stop the run.

Transient failures -- 429, 408/409, 5xx, timeouts, dropped connections, responses that
are not valid JSON -- are retried with exponential backoff and jitter. A ``Retry-After``
(or OpenAI's ``retry-after-ms``) header overrides the backoff. Errors about one request
(400, 413, 422) skip that image. Errors that no retry can fix (bad key, no permission,
unknown model, exhausted quota) stop the run; finished captions are already journaled.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

from taco_plus.captions.regenerate.request import MalformedResponse

T = TypeVar("T")


class FatalAPIError(RuntimeError):
    """A failure that retrying cannot fix; the run stops (the journal keeps finished work)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff settings (see :class:`~taco_plus.captions.regenerate.config.RegenerateConfig`)."""

    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 300.0

    def backoff(self, retry_index: int, rng: random.Random) -> float:
        """Delay before retry number ``retry_index`` (0-based): half fixed, half random."""
        ceiling = min(self.backoff_max, self.backoff_base * 2**retry_index)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class ErrorDecision:
    """``kind`` is ``"retry"``, ``"skip"`` (give up on this image) or ``"fatal"``."""

    kind: str
    reason: str
    retry_after: Optional[float] = None


def retry_after_seconds(headers) -> Optional[float]:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return None if when is None else max(0.0, when.timestamp() - time.time())


def _status_reason(err) -> str:
    message = getattr(err, "message", None) or str(err)
    return f"HTTP {err.status_code}: {message[:300]}"


def classify_error(err: BaseException) -> ErrorDecision:
    """Decide how to handle an exception raised while making one request."""
    import openai

    if isinstance(err, (MalformedResponse, json.JSONDecodeError, openai.APIResponseValidationError)):
        return ErrorDecision("retry", f"malformed response: {str(err)[:200]}")
    if isinstance(err, openai.APITimeoutError):
        return ErrorDecision("retry", "request timed out")
    if isinstance(err, openai.APIConnectionError):
        return ErrorDecision("retry", f"connection error: {str(err)[:200]}")
    if isinstance(err, openai.APIStatusError):
        reason = _status_reason(err)
        code = getattr(err, "code", None)
        if isinstance(err, openai.RateLimitError) and code == "insufficient_quota":
            return ErrorDecision("fatal", f"quota exhausted ({reason}); check the account's billing")
        if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return ErrorDecision("fatal", f"the server rejected the API key ({reason})")
        if isinstance(err, openai.NotFoundError):
            return ErrorDecision("fatal", f"model or endpoint not found ({reason}); check --model and --base-url")
        if err.status_code in (408, 409, 429) or err.status_code >= 500:
            return ErrorDecision("retry", reason, retry_after_seconds(err.response.headers))
        return ErrorDecision("skip", reason)
    raise err


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    redact: Callable[[object], str],
    rng: random.Random,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` (a synchronous API call) until it succeeds, following :func:`classify_error`.

    Raises :class:`FatalAPIError` for fatal errors, skips (non-retryable request errors)
    and exhausted attempts; messages are redacted.
    """
    for retry_index in range(policy.max_attempts):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified below, unknown errors re-raised
            decision = classify_error(err)
            last = redact(decision.reason)
            if decision.kind != "retry" or retry_index == policy.max_attempts - 1:
                raise FatalAPIError(f"{what} failed: {last}") from None
            delay = decision.retry_after
            delay = policy.backoff(retry_index, rng) if delay is None else min(delay, policy.max_retry_after)
            sleep(delay)
    raise AssertionError("unreachable")
