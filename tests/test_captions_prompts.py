"""Prompt templates: the bundled files, rendering, and malformed templates."""

from __future__ import annotations

import pytest

from taco_plus.captions.regenerate.config import PROMPTS_DIR, RegenerateError, load_prompt


def test_bundled_prompts_load_and_render():
    detailed = load_prompt()  # the default
    assert (detailed.meta["name"], detailed.meta["version"]) == ("detailed_scene", "1")
    assert detailed.path == PROMPTS_DIR / "detailed_scene_v1.txt"
    assert "100 to 250 words" in detailed.render()
    assert detailed.expected_words() == 175
    with_context = detailed.render(original_caption=" a red door ")
    assert with_context.startswith(detailed.render()) and '"a red door"' in with_context

    controlled = load_prompt("length_controlled_v1.txt")
    assert controlled.uses_target_words()
    assert "about 60 words" in controlled.render()
    assert "about 120 words" in controlled.render(target_words=120)
    assert controlled.expected_words(120) == 120
    assert detailed.sha256 != controlled.sha256


def _write(tmp_path, text):
    path = tmp_path / "p.txt"
    path.write_text(text)
    return path


def test_hash_covers_the_whole_file(tmp_path):
    a = load_prompt(_write(tmp_path, "# name: x\n---\nDescribe it.\n"))
    b = load_prompt(_write(tmp_path, "# name: x\n---\nDescribe it!\n"))
    assert a.sha256 != b.sha256 and a.render() == "Describe it."


@pytest.mark.parametrize(
    "text, message",
    [
        ("Describe it.\n", "missing the '---'"),
        ("# name: x\n---\n\n", "prompt text is empty"),
        ("# name: x\n---\nDescribe {thing}.\n", "unknown placeholders \\['thing'\\]"),
        ("# name: x\n---\nDescribe {.\n", "bad placeholder syntax"),
        ("# name: x\n---\nA.\n--- original caption ---\nNo placeholder.\n", "must contain {original_caption}"),
        ("name: x\n---\nA.\n", "header lines must start with '#'"),
        ("# expected_words: many\n---\nA.\n", "whole number"),
    ],
)
def test_malformed_templates(tmp_path, text, message):
    with pytest.raises(RegenerateError, match=message):
        load_prompt(_write(tmp_path, text))


def test_missing_context_part_and_target(tmp_path):
    plain = load_prompt(_write(tmp_path, "# name: x\n---\nDescribe it.\n"))
    with pytest.raises(RegenerateError, match="no '--- original caption ---' part"):
        plain.render(original_caption="a door")
    needs_target = load_prompt(_write(tmp_path, "# name: y\n---\nUse {target_words} words.\n"))
    with pytest.raises(RegenerateError, match="--target-words"):
        needs_target.render()


def test_missing_prompt_file():
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        load_prompt("no_such_prompt.txt")
