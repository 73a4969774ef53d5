"""Answer checks, response parsing and key hygiene (no server needed)."""

from __future__ import annotations

import json

import pytest

from taco_plus.captions.regenerate.batch import parse_results
from taco_plus.captions.regenerate.runner import Answer, answer_problem, parse_completion, public_base_url, redact

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
        with pytest.raises(ValueError, match="not a chat completion"):
            parse_completion(bad)


def test_batch_result_lines():
    lines = [{"custom_id": "ok", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": LONG}}]}}},
             {"custom_id": "err", "error": {"code": "x", "message": "boom"}},
             {"custom_id": "500", "response": {"status_code": 500, "body": {"error": {"message": "oops"}}}},
             {"custom_id": "bad", "response": {"status_code": 200, "body": {}}},
             {"id": "x", "custom_id": "vllm", "response": {"status_code": 400, "request_id": "r", "body": None},
              "error": "image too large"}]  # how vllm run-batch reports a failed line
    results = parse_results(b"\n".join(json.dumps(x).encode() for x in lines) + b"\n{broken\n\n")
    assert results["ok"][0].text == LONG and results["ok"][1] is None
    assert results["err"] == (None, "x: boom")
    assert results["500"] == (None, "HTTP 500: oops")
    assert results["bad"][0] is None and "malformed" in results["bad"][1]
    assert results["vllm"] == (None, "HTTP 400: image too large")
    assert len(results) == 5  # unreadable lines name no request


def test_redaction_and_public_url():
    key = "sk-abcdefgh12345"
    assert redact(f"Incorrect API key provided: {key}.", key) == "Incorrect API key provided: [redacted]."
    assert redact("local server", "local") == "local server"  # placeholder keys are not secrets
    assert public_base_url("http://user:pw@example.org:8000/v1?x=1") == "http://example.org:8000/v1"
    assert public_base_url(None) is None
