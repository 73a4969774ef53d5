"""Broken caption text (TACO's Kodak OFA caption of kodim17 ends in U+FFFD garbage): reported, listed under a
set's ``issues``; training and evaluation apply their ``bad_caption`` policy to it."""

from __future__ import annotations

import unicodedata


def caption_problems(text: str) -> list[str]:
    """Human-readable problems with one caption; empty when it looks sound."""
    if not text.strip():
        return ["empty caption"]
    problems = []
    if n_bad := text.count("\ufffd"):
        problems.append(f"contains {n_bad} U+FFFD replacement character{'s' * (n_bad > 1)} (undecodable bytes)")
    categories = {c: unicodedata.category(c) for c in set(text)}
    controls = sorted(f"U+{ord(c):04X}" for c, cat in categories.items() if cat == "Cc" and c not in "\t\n")
    if controls:
        problems.append(f"contains control characters {', '.join(controls)}")
    if "Co" in categories.values():
        problems.append("contains private-use code points")
    if "Cs" in categories.values():  # "\ud800" in JSON: not encodable as UTF-8
        problems.append("contains lone surrogates (not encodable as UTF-8)")
    if text != text.strip():
        problems.append("leading or trailing whitespace")
    return problems


def find_problems(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """Image id -> problems of its suspicious captions (``caption i:`` first when it has several)."""
    found: dict[str, list[str]] = {}
    for image_id, caps in captions.items():
        msgs = [p if len(caps) == 1 else f"caption {i}: {p}"
                for i, cap in enumerate(caps) for p in caption_problems(cap)]
        if msgs:
            found[image_id] = msgs
    return found
