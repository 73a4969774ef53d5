"""Atomic writes keep the old file when writing fails half-way."""

from __future__ import annotations

import pytest

from taco_plus.atomic import atomic_write, atomic_writer


def test_replaces_content(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write(path, "first")
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary left


def test_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write(path, "good")
    with pytest.raises(RuntimeError):
        with atomic_writer(path, "w") as f:
            f.write("half of a new ver")
            raise RuntimeError("disk full")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_rejects_unknown_mode(tmp_path):
    with pytest.raises(ValueError):
        with atomic_writer(tmp_path / "x", "a"):
            pass
