"""OpenAI SDK clients for caption regeneration, and keeping the API key secret.

The key comes only from an environment variable (``OPENAI_API_KEY`` by default). It is
handed to the SDK and nowhere else: every message that could reach a log, the
journal, a caption set or an exception passes through :class:`Redactor` first.
The SDK's own retries are disabled (``max_retries=0``): retries, backoff and
``Retry-After`` handling are done by :mod:`taco_plus.captions.regenerate.retry`.
"""

from __future__ import annotations

import os
from typing import Optional
from urllib.parse import urlsplit, urlunsplit


class MissingAPIKeyError(RuntimeError):
    """The key's environment variable is unset or empty."""


def read_api_key(env_name: str = "OPENAI_API_KEY") -> str:
    """The API key from the environment, or a clear :class:`MissingAPIKeyError`."""
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise MissingAPIKeyError(
            f"no API key: the environment variable {env_name} is not set. Export your OpenAI key "
            f"there (keys are never read from the command line or files). For a local "
            f"OpenAI-compatible server that ignores keys (vLLM, Ollama), set it to any value, "
            f"e.g. {env_name}=local. --dry-run needs no key."
        )
    return key


class Redactor:
    """Replaces the secret in any text with ``[redacted]``.

    Args:
        secret: the API key. Keys shorter than 8 characters are placeholders for local
            servers (``local``, ``x``) and are not worth scrubbing from prose.
    """

    def __init__(self, secret: Optional[str]) -> None:
        self._secret = secret if secret and len(secret) >= 8 else None

    def __call__(self, text: object) -> str:
        text = str(text)
        return text.replace(self._secret, "[redacted]") if self._secret else text


def public_base_url(base_url: Optional[str]) -> Optional[str]:
    """``base_url`` without any ``user:password@`` part, safe to record."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def make_async_client(api_key: str, base_url: Optional[str], timeout: float):
    """``openai.AsyncOpenAI`` with SDK retries off and the per-request timeout set."""
    import openai

    return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)


def make_client(api_key: str, base_url: Optional[str], timeout: float):
    """``openai.OpenAI`` (batch mode: files and batches endpoints), SDK retries off."""
    import openai

    return openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)
