"""Batch mode: files split under the limits, upload, create, poll, download, merge, resume."""

from __future__ import annotations

import json
import os

import pytest
from captions_server import run_batch
from captions_support import (  # noqa: F401 - fixtures
    SENTINEL_KEY,
    api_key,
    assert_key_absent,
    caption_size,
    expected_size,
    fake_server,
    fast_config,
    journal_records,
    make_images,
    run_and_kill,
)

from taco_plus.captions import load_caption_set
from taco_plus.captions.regenerate.config import load_prompt
from taco_plus.captions.regenerate import regenerate
from taco_plus.captions.regenerate.batch import write_request_files
from taco_plus.captions.regenerate.runner import build_request, collect_jobs, request_signature
from taco_plus.captions.regenerate.journal import open_journal
from taco_plus.cli import main


def test_write_request_files_respects_both_limits(tmp_path):
    items = [(f"id{i}", {"n": "x" * (10 * i)}) for i in range(7)]
    files = list(write_request_files(iter(items), tmp_path, "r", 3, 10_000, on_oversize=None))
    assert [ids for _, ids in files] == [["id0", "id1", "id2"], ["id3", "id4", "id5"], ["id6"]]
    sizes = [len(json.dumps({"custom_id": i, "method": "POST", "url": "/v1/chat/completions", "body": b},
                            separators=(",", ":"))) + 1 for i, b in items]
    limit = sizes[0] + sizes[1]  # room for two short lines, then one line per file
    files = list(write_request_files(iter(items), tmp_path, "s", 100, limit, on_oversize=None))
    assert [ids for _, ids in files][0] == ["id0", "id1"]
    for path, ids in files:
        assert path.stat().st_size <= limit
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        assert [x["custom_id"] for x in lines] == ids and lines[0]["url"] == "/v1/chat/completions"
    skipped = []
    files = list(write_request_files(iter(items), tmp_path, "t", 100, sizes[3], lambda i, n: skipped.append(i)))
    assert skipped == ["id4", "id5", "id6"]
    assert [ids for _, ids in files] == [["id0"], ["id1"], ["id2"], ["id3"]]


def test_batch_round_trip_with_failed_lines(tmp_path, fake_server, api_key):
    ids = make_images(tmp_path / "images", 5)
    fake_server.add_faults("refusal", "500", "hang")  # the first three lines of the first batch
    cfg = fast_config(tmp_path, fake_server, mode="batch", batch_max_requests=2)
    report = regenerate(cfg)
    assert report.captioned == 5 and report.missing == {}
    assert len(fake_server.batches) == 5  # 3 files in round one, 2 for the three re-asked images
    assert all(f["purpose"] in ("batch", "batch_output") for f in fake_server.files.values())
    inputs = [f["data"] for f in fake_server.files.values() if f["purpose"] == "batch"]
    assert [len(data.splitlines()) for data in inputs] == [2, 2, 1, 2, 1]
    assert not list(cfg.batch_dir.glob("requests-*.jsonl"))  # deleted once uploaded
    assert len(list(cfg.batch_dir.glob("output-*.jsonl"))) == 5
    assert len(list(cfg.batch_dir.glob("errors-*.jsonl"))) == 1  # the 500 line
    caption_set = load_caption_set(cfg.out)
    assert list(caption_set.captions) == ids
    for image_id, (caption,) in caption_set.captions.items():
        assert caption_size(caption) == expected_size(image_id)
    assert caption_set.provenance.parameters["modes"] == ["batch"]
    kinds = [r["type"] for r in journal_records(cfg.journal_path)]
    assert kinds.count("upload") == kinds.count("batch") == kinds.count("batch_done") == 5
    assert kinds.count("caption") == 5 and kinds.count("failure") == 3
    assert_key_absent(tmp_path)


def test_expired_batch_resubmits_the_rest(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 4)
    fake_server.expire_next_batches = 1
    report = regenerate(fast_config(tmp_path, fake_server, mode="batch"))
    assert report.captioned == 4
    assert [b["status"] for b in fake_server.batches.values()] == ["expired", "completed"]
    assert fake_server.batches["batch_2"]["request_counts"]["total"] == 2


def test_rounds_are_bounded(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 1)
    fake_server.add_faults("short", "short")
    report = regenerate(fast_config(tmp_path, fake_server, mode="batch", max_answer_retries=1))
    assert "answer too short" in report.missing["im00.png"]
    assert len(fake_server.batches) == 2


def test_upload_without_journaled_batch_finds_the_existing_batch(tmp_path, fake_server, api_key):
    """A crash between creating a batch and journaling its id must not create a second one."""
    make_images(tmp_path / "images", 2)
    cfg = fast_config(tmp_path, fake_server, mode="batch", resume=True)
    prompt = load_prompt(cfg.prompt)
    jobs = collect_jobs(cfg)
    (path, ids), = write_request_files(
        ((j.image_id, build_request(j, cfg, prompt)) for j in jobs), tmp_path, "pre", 100, 10**8, None
    )
    import openai

    client = openai.OpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=fake_server.base_url)
    with open(path, "rb") as fh:
        uploaded = client.files.create(file=fh, purpose="batch")
    client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    with open_journal(cfg.journal_path, request_signature(cfg, prompt, jobs), resume=False) as journal:
        journal.append({"type": "upload", "file_id": uploaded.id, "file": path.name, "image_ids": ids})

    report = regenerate(cfg)
    assert report.captioned == 2 and len(fake_server.batches) == 1


@pytest.mark.slow
def test_killed_run_resumes_across_batches(tmp_path, fake_server, api_key):
    """A SIGKILLed batch run, resumed, collects the batches it created and submits the rest."""
    ids = make_images(tmp_path / "images", 6)
    fake_server.batch_polls = 10**9  # batches stay in progress while the first run is killed
    cfg = fast_config(tmp_path, fake_server, mode="batch", batch_max_requests=2, poll_interval=0.05)
    run_and_kill(cfg, until=lambda text: '"type":"batch"' in text)  # after the first of three batches
    assert len(fake_server.batches) >= 1 and not cfg.out.exists()

    fake_server.batch_polls = 1
    report = regenerate(fast_config(tmp_path, fake_server, mode="batch", batch_max_requests=2, resume=True))
    assert report.captioned == 6 and report.missing == {}
    records = journal_records(cfg.journal_path)
    uploads = [r["image_ids"] for r in records if r["type"] == "upload"]
    assert sorted(i for u in uploads for i in u) == ids  # each image sent in exactly one batch
    assert len(fake_server.batches) == 3 and all(len(u) <= 2 for u in uploads)  # none submitted twice
    assert sorted(r["image_id"] for r in records if r["type"] == "caption") == ids


def test_request_files_run_on_a_local_server_and_merge_back(tmp_path, fake_server, monkeypatch):
    """The no-cost path: --write-requests, a run-batch-style local run, then --results."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # neither end needs a key
    ids = make_images(tmp_path / "images", 5)
    out = tmp_path / "local.json"
    base = ["captions", "regenerate", "--images", str(tmp_path / "images"), "--out", str(out),
            "--model", "Qwen/Qwen2-VL-7B-Instruct", "--no-progress"]
    assert main(base + ["--write-requests", "--batch-max-requests", "2"]) == 0
    requests = sorted(out.with_name("local.batch").glob("requests-*.jsonl"))
    assert [len(p.read_text().splitlines()) for p in requests] == [2, 2, 1]
    results = []
    for path in requests:  # what `vllm run-batch -i requests-000.jsonl -o results-000.jsonl` does
        results.append(path.with_name(path.name.replace("requests", "results")))
        run_batch(path, results[-1], fake_server.base_url, SENTINEL_KEY)
    lost = results[1].read_text().splitlines()
    results[1].write_text(lost[0] + "\n")  # one answer lost

    assert main(base + ["--results", *map(str, results)]) == 1  # one image still missing
    caption_set = load_caption_set(out)
    assert sorted(caption_set.captions) == sorted(set(ids) - {ids[3]})
    for image_id, (caption,) in caption_set.captions.items():
        assert caption_size(caption) == expected_size(image_id)
    assert caption_set.provenance.model == "Qwen/Qwen2-VL-7B-Instruct"
    bodies = [json.loads(x)["body"] for x in requests[0].read_text().splitlines()]
    assert all(b["model"] == "Qwen/Qwen2-VL-7B-Instruct" for b in bodies)  # what the local server serves

    assert main(base + ["--write-requests"]) == 0  # only what is missing
    (again,) = sorted(out.with_name("local.batch").glob("requests-*.jsonl"))
    assert [json.loads(x)["custom_id"] for x in again.read_text().splitlines()] == [ids[3]]
    run_batch(again, tmp_path / "r.jsonl", fake_server.base_url, SENTINEL_KEY)
    assert main(base + ["--results", str(tmp_path / "r.jsonl"), "--resume"]) == 0
    assert sorted(load_caption_set(out).captions) == ids
