"""Resumability: a killed run loses at most its in-flight requests and never duplicates."""

from __future__ import annotations

import json

import pytest
from captions_support import (  # noqa: F401 - fixtures
    api_key,
    caption_size,
    expected_size,
    fake_server,
    fast_config,
    journal_records,
    make_images,
    run_and_kill,
)

from taco_plus.captions import load_caption_set
from taco_plus.captions.regenerate import RegenerateError, regenerate
from taco_plus.captions.regenerate.journal import open_journal, read_journal


@pytest.mark.slow
def test_killed_online_run_resumes_without_loss_or_duplicates(tmp_path, fake_server, api_key):
    ids = make_images(tmp_path / "images", 12)
    fake_server.latency = 0.15
    cfg = fast_config(tmp_path, fake_server, concurrency=2)
    run_and_kill(cfg, until=lambda text: text.count('"type":"caption"') >= 3)
    captioned_before = len(read_journal(cfg.journal_path).captions)
    assert 3 <= captioned_before < 12 and not cfg.out.exists()

    fake_server.latency = 0.0
    report = regenerate(fast_config(tmp_path, fake_server, concurrency=2, resume=True))
    assert report.captioned == 12 and report.missing == {} and report.already_done == captioned_before
    captions = [r for r in journal_records(cfg.journal_path) if r["type"] == "caption"]
    assert sorted(r["image_id"] for r in captions) == ids  # each image exactly once
    # Lost work is bounded by the requests in flight when the process died.
    assert len(fake_server.chat_requests) <= 12 + cfg.concurrency
    for image_id, (caption,) in load_caption_set(cfg.out).captions.items():
        assert caption_size(caption) == expected_size(image_id)


def test_half_written_journal_line_is_dropped_and_redone(tmp_path, fake_server, api_key):
    ids = make_images(tmp_path / "images", 4)
    cfg = fast_config(tmp_path, fake_server, concurrency=1)
    regenerate(cfg)
    assert len(fake_server.chat_requests) == 4
    text = cfg.journal_path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    assert json.loads(last)["image_id"] == ids[-1]
    cfg.journal_path.write_text(text[: len(text) - len(last) // 2 - 1])  # crash mid-write
    cfg.out.unlink()

    report = regenerate(fast_config(tmp_path, fake_server, concurrency=1, resume=True))
    assert report.captioned == 4 and report.already_done == 3
    assert len(fake_server.chat_requests) == 5  # only the lost caption was asked again
    records = journal_records(cfg.journal_path)  # every line parses again
    assert sorted(r["image_id"] for r in records if r["type"] == "caption") == ids
    assert list(load_caption_set(cfg.out).captions) == ids


def test_complete_last_record_without_newline_is_kept(tmp_path):
    path = tmp_path / "j.jsonl"
    header = {"type": "header", "journal_version": 1, "signature": {"model": "m"}}
    caption = {"type": "caption", "image_id": "a.png", "caption": "x"}
    path.write_text(json.dumps(header) + "\n" + json.dumps(caption))
    with open_journal(path, {"model": "m"}, resume=True) as journal:
        assert "a.png" in journal.captions
        journal.append({"type": "caption", "image_id": "b.png", "caption": "y"})
        with pytest.raises(RegenerateError, match="second caption for 'a.png'"):
            journal.append({"type": "caption", "image_id": "a.png", "caption": "z"})
    assert [r["image_id"] for r in journal_records(path)[1:]] == ["a.png", "b.png"]


def test_damaged_middle_line_is_an_error(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"type": "header", "signature": {}}\n{garbage\n{"type": "failure", "image_id": "a"}\n')
    with pytest.raises(RegenerateError, match="line 2 is unreadable"), open_journal(path, {}, resume=True):
        pass


def test_one_run_per_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    with open_journal(path, {"model": "m"}, resume=False):
        with pytest.raises(RegenerateError, match="in use by another regenerate run"), open_journal(path, {}, True):
            pass
    with open_journal(path, {"model": "m"}, resume=True):  # released on close
        pass
