"""Checks for broken caption text.

Machine captions come with real defects: TACO's Kodak OFA file has, for kodim17,
``"a statue of a woman holding a coconacci New K\\ufffd F\\ufffd"`` -- a caption ending
in U+FFFD REPLACEMENT CHARACTERs, the mark of bytes that were not valid UTF-8. The
converters report such captions (and record them under ``issues`` in the caption
set) instead of passing them silently to the text encoder.
"""

from __future__ import annotations

import unicodedata

REPLACEMENT_CHARACTER = "\ufffd"


def caption_problems(text: str) -> list[str]:
    """Human-readable problems with one caption; empty when it looks sound.

    Detected: empty or whitespace-only text, U+FFFD replacement characters (undecodable
    bytes), control characters other than ordinary whitespace, Unicode private-use
    code points, lone surrogates (``"\\ud800"`` in JSON), and leading/trailing whitespace.
    """
    problems = []
    if not text.strip():
        return ["empty caption"]
    n_bad = text.count(REPLACEMENT_CHARACTER)
    if n_bad:
        problems.append(
            f"contains {n_bad} U+FFFD replacement character{'s' * (n_bad > 1)} (undecodable bytes)"
        )
    controls = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n"})
    if controls:
        problems.append(f"contains control characters {', '.join(controls)}")
    if any(unicodedata.category(c) == "Co" for c in text):
        problems.append("contains private-use code points")
    if any(unicodedata.category(c) == "Cs" for c in text):
        problems.append("contains lone surrogates (not encodable as UTF-8)")
    if text != text.strip():
        problems.append("leading or trailing whitespace")
    return problems


def find_problems(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """Image id -> problems, for every image with at least one suspicious caption.

    Problems of the i-th caption of an image with several captions are prefixed
    ``caption i:``.
    """
    found: dict[str, list[str]] = {}
    for image_id, caps in captions.items():
        msgs = []
        for i, cap in enumerate(caps):
            for problem in caption_problems(cap):
                msgs.append(problem if len(caps) == 1 else f"caption {i}: {problem}")
        if msgs:
            found[image_id] = msgs
    return found
