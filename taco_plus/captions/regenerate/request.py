"""One captioning request and its answer: the chat-completions body, response parsing,
and the checks that reject refusals, empty and too-short answers.

The same body is sent online and written to Batch API input files, so both modes
ask exactly the same question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from taco_plus.captions.regenerate.images import EncodedImage

# Typical opening of a model declining a request ("I'm sorry, I can't help with that.").
_REFUSAL_START = re.compile(
    r"^\W*(i['’]m sorry|i am sorry|sorry\b|i can(?:no|['’])t\b|i can not\b|i['’]m unable|"
    r"i am unable|i['’]m not able|i won['’]t\b|unfortunately,? i\b|as an ai\b)",
    re.IGNORECASE,
)
# Only unambiguous refusals: a caption may legitimately say "I cannot identify the brand".
_REFUSAL_ANYWHERE = re.compile(
    r"\bi (?:can(?:no|['’])t|am unable to|['’]m unable to) (?:help|assist|comply) with\b",
    re.IGNORECASE,
)


class MalformedResponse(ValueError):
    """A response that is not a chat completion (bad JSON, missing fields)."""


@dataclass
class Answer:
    """The parts of a chat completion that matter here.

    Args:
        text: the message content, or None.
        refusal: the API's ``refusal`` field, or None.
        finish_reason: ``"stop"``, ``"length"``, ``"content_filter"``, ...
        usage: ``{"prompt_tokens", "completion_tokens"}`` (0 when the server omits usage).
        response_id: the completion id.
    """

    text: Optional[str]
    refusal: Optional[str] = None
    finish_reason: Optional[str] = None
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    response_id: Optional[str] = None


def build_chat_request(
    model: str,
    prompt_text: str,
    image: EncodedImage,
    detail: str,
    temperature: float,
    max_tokens: int,
) -> dict:
    """The chat-completions request body: one user message with the prompt and the image.

    ``max_tokens`` (rather than ``max_completion_tokens``) is what gpt-4o and the
    OpenAI-compatible servers (vLLM, Ollama) all accept.
    """
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt_text},
                    {"type": "image_url", "image_url": {"url": image.data_url, "detail": detail}},
                ],
            }
        ],
        "temperature": temperature,
        "max_tokens": max_tokens,
    }


def parse_completion(data: Any) -> Answer:
    """Extract an :class:`Answer` from a decoded chat-completion JSON object."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
        text = message.get("content")
        refusal = message.get("refusal")
        if text is not None and not isinstance(text, str):
            raise TypeError("content is not a string")
        usage = data.get("usage") or {}
        counts = {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
        return Answer(text, refusal, choice.get("finish_reason"), counts, data.get("id"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        raise MalformedResponse(f"not a chat completion ({type(err).__name__}: {err})") from None


def answer_problem(answer: Answer, min_words: int) -> Optional[str]:
    """Why ``answer`` is not a usable caption, or None if it is."""
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
    if n_words < min_words:
        return f"answer too short ({n_words} words, minimum {min_words})"
    return None


def clean_caption(text: str) -> str:
    """Normalise a model answer into a one-paragraph caption (whitespace collapsed)."""
    return " ".join(text.split())
