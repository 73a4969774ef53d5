"""Hostile inputs and servers for the caption and weight commands: deeply nested JSON, a
malformed --base-url, bad numbers, unwritable outputs (real subprocesses: the defects were
tracebacks), answers far beyond max_tokens, an unbounded body, and a server that echoes the key."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from captions_support import (  # noqa: F401 - fixtures
    REPO_ROOT,
    SENTINEL_KEY,
    api_key,
    assert_key_absent,
    fake_server,
    fast_config,
    make_images,
)

from taco_plus.captions import load_caption_set
from taco_plus.captions.regenerate import RegenerateConfig, regenerate
from taco_plus.captions.regenerate.journal import read_journal
from taco_plus.captions.regenerate.runner import redact
from taco_plus.cli import main


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``taco-plus ARGV`` in a child process."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "taco_plus", *argv], capture_output=True, text=True,
                          env=env, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_deeply_nested_json_is_a_one_line_error(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    deep_object = tmp_path / "deep_object.json"
    deep_object.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    for argv in (["captions", "stats", str(deep)],
                 ["captions", "convert", "ofa", str(deep_object), "--out", str(tmp_path / "set.json")],
                 ["weights", "fit", "--captions", str(deep), "--out", str(tmp_path / "tfidf.json")]):
        proc = cli(*argv)
        assert_one_line_error(proc, "deep")
        assert str(tmp_path) in proc.stderr, proc.stderr  # the file is named
    # A weighting artefact, in this process.
    assert main(["weights", "--weighting", "tfidf", "--tfidf", str(deep_object), "a red door"]) == 2
    assert "deep_object.json is not a JSON weighting artefact" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.json", "deep_object.json"]


def test_malformed_base_url_is_a_one_line_error(tmp_path):
    make_images(tmp_path / "images", 1)
    base = ["captions", "regenerate", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "set.json"),
            "--no-progress"]
    proc = cli(*base, "--base-url", "http://[::1", env={"OPENAI_API_KEY": SENTINEL_KEY})
    assert_one_line_error(proc, "base_url 'http://[::1' is not a URL")
    assert not (tmp_path / "set.journal.jsonl").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--limit", "-1", "limit must be at least 1"),
    ("--limit", "0", "limit must be at least 1"),
    ("--temperature", "nan", "temperature must be a finite number"),
    ("--temperature", "3", "temperature must be between 0 and 2"),
    ("--timeout", "inf", "timeout must be a finite number"),
    ("--base-url", "ftp://example.org/v1", "is not an http(s) URL"),
    ("--base-url", "http://:8000/v1", "is not an http(s) URL"),
])
def test_numeric_and_url_options_are_validated(tmp_path, capsys, option, value, message):
    make_images(tmp_path / "images", 2)
    argv = ["captions", "regenerate", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "s.json"),
            "--dry-run", option, value]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RegenerateConfig(out=tmp_path / "s.json", image_root=tmp_path, **{option[2:].replace("-", "_"): value
                                                                            if "url" in option else float(value)})


def test_unwritable_artefact_names_the_output_not_a_temporary(tmp_path):
    captions = tmp_path / "caps.json"
    captions.write_text(json.dumps({"a.png": "a red door in a brick wall", "b.png": "a boat on a calm lake"}))
    if os.access("/sys", os.W_OK) and not os.path.ismount("/sys"):
        pytest.skip("/sys is writable here")
    proc = cli("weights", "fit", "--captions", str(captions), "--out", "/sys/x.json")
    assert_one_line_error(proc, "cannot write /sys/x.json")
    assert ".tmp" not in proc.stderr and ".x.json." not in proc.stderr


def test_answers_far_beyond_max_tokens_are_not_kept(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 2)
    fake_server.add_faults("huge", "huge", "huge")  # im00 (or im01), all three answers
    cfg = fast_config(tmp_path, fake_server, concurrency=1)
    report = regenerate(cfg)
    assert report.captioned == 1 and len(report.missing) == 1
    (reason,) = report.missing.values()
    assert "far beyond max_tokens 450" in reason and "3 answers rejected" in reason
    assert cfg.out.stat().st_size < 10_000 and cfg.journal_path.stat().st_size < 10_000
    assert all(len(c[0]) < 1000 for c in load_caption_set(cfg.out).captions.values())


def test_response_body_is_read_with_a_size_bound(tmp_path, fake_server, api_key):
    make_images(tmp_path / "images", 1)
    fake_server.add_faults("flood")  # 64 MiB announced and sent until the client hangs up
    report = regenerate(fast_config(tmp_path, fake_server, max_attempts=1, max_answer_retries=0))
    assert "response body over 1,077,376 bytes" in report.missing["im00.png"]
    assert fake_server.flood_sent < 16 * 2**20  # the client stopped reading at the bound


def test_api_key_is_scrubbed_from_every_answer(tmp_path, fake_server, api_key, capsys, caplog):
    caplog.set_level(logging.INFO)
    make_images(tmp_path / "images", 3)
    fake_server.add_faults("echo_key", "refusal", "echo_key")
    online = fast_config(tmp_path, fake_server, concurrency=1, progress=True)
    assert regenerate(online).captioned == 3
    captions = [c[0] for c in load_caption_set(online.out).captions.values()]
    assert sum("Authorization: Bearer [redacted])" in c for c in captions) == 2
    assert sum("[redacted]" in r["response_id"] for r in read_journal(online.journal_path).captions.values()) == 2
    # Batch mode: the answers, the output files kept on disk, the journal.
    fake_server.add_faults("echo_key", "echo_key")
    batch = fast_config(tmp_path, fake_server, mode="batch", out=tmp_path / "batch" / "set.json")
    assert regenerate(batch).captioned == 3
    assert sum("[redacted]" in c[0] for c in load_caption_set(batch.out).captions.values()) == 2
    assert any(b"Bearer [redacted]" in p.read_bytes() for p in batch.batch_dir.glob("output-*.jsonl"))
    assert_key_absent(tmp_path)
    assert not any(b"Bearer sk-" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    out, err = capsys.readouterr()
    assert SENTINEL_KEY not in out + err + caplog.text


def test_redaction_covers_bearer_tokens():
    assert redact("sent with Authorization: Bearer sk-abc.DEF_123/+= and more", None) == \
        "sent with Authorization: Bearer [redacted] and more"
    assert redact('{"auth": "bearer abc"}', "local") == '{"auth": "Bearer [redacted]"}'
