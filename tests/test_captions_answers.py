"""Answer checks, response parsing, retry timing and key hygiene (no server needed)."""

from __future__ import annotations

import random
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

from taco_plus.captions.regenerate.batch_files import result_answer
from taco_plus.captions.regenerate.client import Redactor, public_base_url
from taco_plus.captions.regenerate.request import Answer, MalformedResponse, answer_problem, parse_completion
from taco_plus.captions.regenerate.retry import RetryPolicy, retry_after_seconds

LONG = "A red door with a brass knocker set in a weathered brick wall, lit by low afternoon sun."


@pytest.mark.parametrize(
    "answer, problem",
    [
        (Answer(LONG), None),
        (Answer(LONG + " I cannot identify the brand of the lock."), None),  # a hedge, not a refusal
        (Answer(None, refusal="I can't help with that."), "refusal: I can't help with that."),
        (Answer("I'm sorry, but I can't help with this image."), "refusal"),
        (Answer("I’m unable to describe people."), "refusal"),  # curly apostrophe
        (Answer("Here is the thing: I can't assist with that request, " + LONG), "refusal"),
        (Answer(""), "empty answer"),
        (Answer("   "), "empty answer"),
        (Answer("A door."), "answer too short (2 words, minimum 10)"),
        (Answer(LONG, finish_reason="content_filter"), "blocked by the server's content filter"),
    ],
)
def test_answer_problem(answer, problem):
    found = answer_problem(answer, min_words=10)
    assert found == problem if problem is None else problem in found


def test_parse_completion():
    data = {"id": "c1", "choices": [{"message": {"content": LONG, "refusal": None}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20}}
    answer = parse_completion(data)
    assert (answer.text, answer.finish_reason, answer.response_id) == (LONG, "stop", "c1")
    assert answer.usage == {"prompt_tokens": 10, "completion_tokens": 20}
    del data["usage"]
    assert parse_completion(data).usage == {"prompt_tokens": 0, "completion_tokens": 0}
    for bad in ({}, {"choices": []}, {"choices": [{}]}, "text", {"choices": [{"message": {"content": 3}}]}):
        with pytest.raises(MalformedResponse):
            parse_completion(bad)


def test_batch_result_lines():
    ok = {"custom_id": "a", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": LONG}}]}}}
    assert result_answer(ok)[0].text == LONG
    assert result_answer({"custom_id": "a", "error": {"code": "x", "message": "boom"}}) == (None, "x: boom")
    failed = {"custom_id": "a", "response": {"status_code": 500, "body": {"error": {"message": "oops"}}}}
    assert result_answer(failed) == (None, "HTTP 500: oops")
    assert "malformed" in result_answer({"custom_id": "a", "response": {"status_code": 200, "body": {}}})[1]


def test_retry_after_headers():
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after_seconds({"retry-after": later}) <= 30
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


def test_backoff_grows_with_jitter_and_a_cap():
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    rng = random.Random(0)
    for n, ceiling in enumerate([1, 2, 4, 8, 8, 8]):
        delays = [policy.backoff(n, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_redaction_and_public_url():
    redact = Redactor("sk-abcdefgh12345")
    assert redact("Incorrect API key provided: sk-abcdefgh12345.") == "Incorrect API key provided: [redacted]."
    assert Redactor("local")("local server") == "local server"  # placeholder keys are not secrets
    assert public_base_url("http://user:pw@example.org:8000/v1?x=1") == "http://example.org:8000/v1"
    assert public_base_url(None) is None
