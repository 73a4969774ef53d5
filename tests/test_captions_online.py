"""Online regeneration with the real openai client against a loopback fake server."""

from __future__ import annotations

import json
import re
import time

import openai  # noqa: F401 - imported before the timed run below
import pytest
from captions_server import silent_server
from captions_support import (  # noqa: F401 - fixtures
    SENTINEL_KEY,
    api_key,
    assert_key_absent,
    caption_size,
    expected_size,
    fake_server,
    fast_config,
    make_images,
)

from taco_plus.captions import load_caption_set
from taco_plus.captions.regenerate import RegenerateConfig, RegenerateError, regenerate
from taco_plus.captions.regenerate.journal import read_journal
from taco_plus.captions.regenerate.runner import FatalAPIError
from taco_plus.cli import main


def test_faults_are_retried_and_every_caption_lands_on_its_image(tmp_path, fake_server, api_key):
    ids = make_images(tmp_path / "images", 8)
    fake_server.add_faults("429", "500", "hang", "malformed", "refusal", "refusal_text", "empty", "short")
    cfg = fast_config(tmp_path, fake_server, timeout=0.5, max_answer_retries=5)
    report = regenerate(cfg)
    assert report.captioned == 8 and report.missing == {}
    assert report.retried == 8  # one retry per injected fault
    caption_set = load_caption_set(cfg.out)
    assert list(caption_set.captions) == ids
    for image_id, (caption,) in caption_set.captions.items():
        assert caption_size(caption) == expected_size(image_id)
    assert caption_set.provenance.model == "gpt-4o"
    assert caption_set.provenance.prompt["name"] == "detailed_scene"
    assert all(u[0]["completion_tokens"] > 0 for u in caption_set.provenance.usage.values())
    assert report.prompt_tokens > 0
    records = [json.loads(line) for line in cfg.journal_path.read_text().splitlines()]
    assert sorted(r["image_id"] for r in records if r["type"] == "caption") == ids  # one caption per image
    assert_key_absent(tmp_path)


def test_retry_after_is_honoured(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 2)
    fake_server.retry_after = 0.3
    fake_server.add_faults("429")
    regenerate(fast_config(tmp_path, fake_server, concurrency=1))
    log = fake_server.chat_requests
    assert [r["fault"] for r in log] == ["429", None, None]
    assert log[1]["time"] - log[0]["time"] >= 0.29  # the SDK waited as the server asked


def test_bounded_answer_retries_and_failure_report(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 2)
    fake_server.add_faults("refusal", "refusal", "refusal")  # the first image: three refusals
    cfg = fast_config(tmp_path, fake_server, concurrency=1, max_answer_retries=2)
    report = regenerate(cfg)
    assert list(report.missing) == ["im00.png"]
    assert report.missing["im00.png"].startswith("refusal: I'm sorry")
    assert "im00.png: refusal" in report.summary()
    caption_set = load_caption_set(cfg.out)
    assert list(caption_set.captions) == ["im01.png"]
    assert caption_set.provenance.missing_images == ["im00.png"]
    # A re-run retries only the missing image.
    before = len(fake_server.chat_requests)
    report = regenerate(fast_config(tmp_path, fake_server, concurrency=1, resume=True))
    assert report.missing == {} and report.already_done == 1
    assert len(fake_server.chat_requests) == before + 1


def test_transport_retries_are_bounded(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 1)
    fake_server.add_faults("500", "500", "500")
    report = regenerate(fast_config(tmp_path, fake_server, max_attempts=3))
    assert report.missing["im00.png"].startswith("gave up after 3 attempts; last error: HTTP 500")
    assert report.out is None and not (tmp_path / "out" / "set.json").exists()


def test_bad_request_skips_the_image_without_retrying(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 2)
    fake_server.add_faults("400")
    report = regenerate(fast_config(tmp_path, fake_server, concurrency=1))
    assert list(report.missing) == ["im00.png"] and "HTTP 400" in report.missing["im00.png"]
    assert len(fake_server.chat_requests) == 2


def test_rejected_key_stops_the_run_without_leaking_it(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 3)
    fake_server.add_faults("401")  # this server echoes the key it was sent
    cfg = fast_config(tmp_path, fake_server, concurrency=1)
    with pytest.raises(FatalAPIError) as info:
        regenerate(cfg)
    assert "rejected the API key" in str(info.value)
    assert SENTINEL_KEY not in str(info.value) and "[redacted]" in str(info.value)
    assert_key_absent(tmp_path)


def test_quota_exhaustion_is_fatal(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 1)
    fake_server.add_faults("quota", "quota", "quota")  # persists through the SDK's retries
    with pytest.raises(FatalAPIError, match="quota exhausted"):
        regenerate(fast_config(tmp_path, fake_server, max_attempts=3))


def test_missing_key_is_a_clear_error(tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make_images(tmp_path / "images", 1)
    with pytest.raises(RegenerateError, match="OPENAI_API_KEY is not set"):
        regenerate(fast_config(tmp_path, fake_server))
    monkeypatch.setenv("MY_KEY", SENTINEL_KEY)  # a configurable variable name works
    assert regenerate(fast_config(tmp_path, fake_server, api_key_env="MY_KEY")).captioned == 1
    assert fake_server.chat_requests  # and the server accepted it
    rc = main(["captions", "regenerate", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "x.json"),
               "--api-key-env", "UNSET_VARIABLE_FOR_TEST"])
    assert rc == 2 and "UNSET_VARIABLE_FOR_TEST is not set" in capsys.readouterr().err


def test_original_caption_is_sent_when_asked(tmp_path, fake_server, api_key):
    ids = make_images(tmp_path / "images", 2)
    originals = tmp_path / "orig.json"
    originals.write_text(json.dumps({ids[0]: "a striped test pattern", ids[1]: "noise"}))
    cfg = fast_config(tmp_path, fake_server, captions=originals, with_original=True, detail="low", max_side=32)
    regenerate(cfg)
    prompts = sorted(r["prompt"] for r in fake_server.chat_requests)
    assert any('"a striped test pattern"' in p for p in prompts)
    assert all(r["detail"] == "low" and max(r["size"]) <= 32 for r in fake_server.chat_requests)
    caption_set = load_caption_set(cfg.out)
    assert caption_set.provenance.parameters["with_original"] is True
    assert caption_set.provenance.origin["file"] == "orig.json"


def test_cli_regenerate_online(tmp_path, fake_server, api_key, capsys):
    make_images(tmp_path / "images", 3)
    out = tmp_path / "cli.json"
    args = ["captions", "regenerate", "--images", str(tmp_path / "images"), "--out", str(out),
            "--base-url", fake_server.base_url, "--concurrency", "2", "--no-progress"]
    assert main(args) == 0
    assert "captioned 3/3 images" in capsys.readouterr().out
    assert len(load_caption_set(out).captions) == 3
    assert main(args) == 2  # the journal exists: refuse without --resume
    assert "pass --resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0  # nothing left to do
    assert len(fake_server.chat_requests) == 3
    assert main(args + ["--resume", "--temperature", "0.9"]) == 2  # different settings
    assert "temperature: 0.2 -> 0.9" in capsys.readouterr().err
    assert_key_absent(tmp_path)


def test_hung_request_times_out_on_the_client(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 1)
    fake_server.add_faults("hang")
    report = regenerate(fast_config(tmp_path, fake_server, timeout=0.3, max_attempts=1))
    assert report.missing == {"im00.png": "gave up after 1 attempts; last error: request timed out"}


def test_server_that_never_answers_costs_each_image_image_timeout_and_shows_it(tmp_path, api_key, capsys):
    make_images(tmp_path / "images", 2)
    with silent_server() as url:  # accepts and reads every request, answers none
        cfg = RegenerateConfig(out=tmp_path / "out.json", image_root=tmp_path / "images", base_url=url,
                               concurrency=2, timeout=0.3, image_timeout=1.5, max_attempts=20)
        start = time.monotonic()
        report = regenerate(cfg)
        elapsed = time.monotonic() - start
    assert elapsed < 4.0  # both images in parallel, each stopped at 1.5 s (20 attempts would take minutes)
    assert sorted(report.missing) == ["im00.png", "im01.png"]
    for reason in report.missing.values():
        assert re.match(r"no caption within --image-timeout 1.5 s \(\d+ attempts; last: no answer\)", reason)
    assert all(r["attempts"] >= 2 for r in read_journal(cfg.journal_path).failures.values())
    err = capsys.readouterr().err  # as it happened: each retry, and the wait on the bar
    assert re.search(r"im0[01].png: no answer after 0\.\d s \(timeout or lost connection\); retry 1 ", err)
    assert re.search(r"2 in flight, im0[01].png waiting 1 s", err)
