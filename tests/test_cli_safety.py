"""``taco-plus compress/decompress`` never overwrite an input, refuse existing outputs
without --force, and turn bad inputs into one-line errors or warnings (real files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taco_plus.cli import main as cli_main
from tests.test_codec import checkpoint  # noqa: F401  (fixture: a tiny checkpoint)


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    return path


def run(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    status = cli_main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def test_default_round_trip_keeps_the_original(photo, checkpoint, capsys):  # noqa: F811
    original = photo.read_bytes()
    assert run(capsys, "compress", photo, "--caption", "noise", "--checkpoint", checkpoint)[0] == 0
    assert run(capsys, "decompress", photo.with_suffix(".tacoz"), "--checkpoint", checkpoint)[0] == 0
    assert photo.read_bytes() == original
    decoded = photo.with_name("photo.decoded.png")
    assert Image.open(decoded).size == (40, 30)
    # Run again: both outputs exist now, so both commands refuse without --force ...
    status, err = run(capsys, "decompress", photo.with_suffix(".tacoz"), "--checkpoint", checkpoint)
    assert status == 2 and "photo.decoded.png exists" in err and "--force" in err
    status, err = run(capsys, "compress", photo, "--caption", "noise", "--checkpoint", checkpoint)
    assert status == 2 and "photo.tacoz exists" in err
    # ... and replace them with it.
    decoded.write_bytes(b"old")
    assert run(capsys, "decompress", photo.with_suffix(".tacoz"), "--checkpoint", checkpoint, "--force")[0] == 0
    assert decoded.read_bytes()[:4] == b"\x89PNG"
    assert photo.read_bytes() == original


def test_an_input_is_never_the_output(photo, checkpoint, tmp_path, capsys):  # noqa: F811
    original = photo.read_bytes()
    os.symlink(photo, tmp_path / "link.png")
    os.link(photo, tmp_path / "hard.png")
    (tmp_path / "caption.txt").write_text("a caption")
    spellings = [photo, tmp_path / "link.png", tmp_path / "hard.png", tmp_path / "missing" / ".." / "photo.png",
                 Path(os.path.relpath(photo))]
    for out in spellings:
        status, err = run(capsys, "compress", photo, "--caption", "x", "--checkpoint", checkpoint, "-o", out, "--force")
        assert status == 2 and "is the input" in err and "even with --force" in err, out
    for out in (checkpoint, tmp_path / "caption.txt"):  # the other inputs too
        status, err = run(capsys, "compress", photo, "--caption-file", tmp_path / "caption.txt",
                          "--checkpoint", checkpoint, "-o", out, "--force")
        assert status == 2 and "is the input" in err
    assert photo.read_bytes() == original and (tmp_path / "caption.txt").read_text() == "a caption"
    # decompress -o its own input, and compress of an image named like its default output
    assert run(capsys, "compress", photo, "--caption", "x", "--checkpoint", checkpoint)[0] == 0
    tacoz = photo.with_suffix(".tacoz")
    data = tacoz.read_bytes()
    status, err = run(capsys, "decompress", tacoz, "--checkpoint", checkpoint, "-o", tacoz, "--force")
    assert status == 2 and "is the input" in err and tacoz.read_bytes() == data
    named = tmp_path / "odd.tacoz"
    named.write_bytes(original)
    status, err = run(capsys, "compress", named, "--caption", "x", "--checkpoint", checkpoint, "--force")
    assert status == 2 and "is the input" in err and named.read_bytes() == original


def test_unwritable_outputs_are_one_line_errors(photo, checkpoint, tmp_path, capsys):  # noqa: F811
    (tmp_path / "folder").mkdir()
    compress = ["compress", photo, "--caption", "x", "--checkpoint", checkpoint]
    status, err = run(capsys, *compress, "-o", tmp_path / "folder")
    assert status == 2 and "is a folder" in err
    # Even with --force a device is not replaced by a regular file (as root it could be).
    status, err = run(capsys, *compress, "-o", "/dev/null", "--force")
    assert status == 2 and "is not a regular file" in err and Path("/dev/null").is_char_device()
    if os.geteuid() == 0:  # root writes into a mode-0555 folder: use a file system that refuses files
        read_only = Path("/sys/taco-plus-test.tacoz")
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        read_only = tmp_path / "ro" / "x.tacoz"
    status, err = run(capsys, *compress, "-o", read_only)
    assert status == 2 and f"cannot write {read_only}" in err and len(err.strip().splitlines()) == 1
    assert not read_only.exists()


def test_bad_inputs_are_one_line_errors(photo, checkpoint, tmp_path, capsys):  # noqa: F811
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    status, err = run(capsys, "compress", photo, "--caption-file", tmp_path / "latin1.txt", "--checkpoint", checkpoint)
    assert status == 2 and "is not UTF-8 text (byte 0xe9 at offset 3)" in err
    # 20000 x 20000 pixels: over twice Pillow's MAX_IMAGE_PIXELS (a 4 MB PNG of zeros)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    status, err = run(capsys, "compress", bomb, "--caption", "x", "--checkpoint", checkpoint)
    assert status == 2 and "exceeds limit" in err and "decompression bomb" in err
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    status, err = run(capsys, "compress", photo, "--caption", "x", "--checkpoint", tmp_path / "random.pt")
    assert status == 2 and "random.pt is not a checkpoint" in err


def test_silent_changes_are_reported(photo, checkpoint, tmp_path, capsys):  # noqa: F811
    caption = "a photo of a cat " * 2941  # 50,000 characters
    assert len(caption) == 50_000 - 3
    status, err = run(capsys, "compress", photo, "--caption", caption, "--checkpoint", checkpoint)
    # 5 BPE tokens per repetition; 36 fit between start and end of text in 38 positions.
    assert status == 0 and "caption truncated to 38 tokens" in err
    assert f"kept its first 36 of {5 * 2941} BPE tokens, dropped {5 * 2941 - 36}" in err
    status, err = run(capsys, "compress", photo, "--caption", "a cat", "--checkpoint", checkpoint, "--force")
    assert status == 0 and "truncated" not in err

    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    status, err = run(capsys, "compress", tmp_path / "anim.gif", "--caption", "x", "--checkpoint", checkpoint)
    assert status == 0 and "anim.gif has 3 frames: only the first is read; the others are not coded" in err


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header announces width x height (pixel data of a 1x1 image: only the header is read)."""
    import struct
    import zlib

    tiny = path.with_suffix(".tiny.png")
    Image.new("RGB", (1, 1)).save(tiny)
    data = bytearray(tiny.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_compress_checks_the_size_from_the_header(checkpoint, tmp_path, capsys):  # noqa: F811
    """Before any pixel is decoded (a 12000x12000 image needed 9.3 GB with the tiny model), against the
    format's 65,536-side limit and the pixel limit decoding applies (--max-pixels)."""
    narrow = tmp_path / "narrow.png"
    Image.new("RGB", (70000, 3)).save(narrow)  # real, small, but no .tacoz can hold it
    huge = tmp_path / "huge.png"
    _png_header(huge, 12000, 12000)
    for image, extra, size, limit in ((narrow, [], "3x70000 = 210,000", "33,554,432"),
                                      (huge, [], "12000x12000 = 144,000,000", "33,554,432"),
                                      (tmp_path / "photo.png", ["--max-pixels", "1000"], "30x40 = 1,200", "1,000")):
        if not image.exists():
            Image.new("RGB", (40, 30)).save(image)
        status, err = run(capsys, "compress", image, "--caption", "x", "--checkpoint", checkpoint, *extra)
        assert status == 2 and size in err and "sides up to 65,536" in err and f"more than {limit} pixels" in err, err
    assert not list(tmp_path.glob("*.tacoz"))


def test_special_files_long_names_and_stale_temporaries(photo, checkpoint, tmp_path, capsys):  # noqa: F811
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    status, err = run(capsys, "compress", fifo, "--caption", "x", "--checkpoint", checkpoint)
    assert status == 2 and f"cannot read image {fifo}: it is a FIFO, not a regular file" in err
    status, err = run(capsys, "compress", "/dev/zero", "--caption", "x", "--checkpoint", checkpoint, "-o", tmp_path / "z")
    assert status == 2 and "/dev/zero: it is a device or socket, not a regular file" in err
    # A 240-character output name: its temporary file's name must stay under the 255-byte limit.
    long = tmp_path / ("x" * 234 + ".tacoz")
    assert run(capsys, "compress", photo, "--caption", "x", "--checkpoint", checkpoint, "-o", long)[0] == 0
    assert long.is_file() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # A temporary left by a killed compress (its process gone) is removed by the next one.
    stale = tmp_path / ".photo.tacoz.4194303.k1ll3d.tmp"  # above the kernel's largest pid
    stale.write_bytes(b"partial")
    assert run(capsys, "compress", photo, "--caption", "x", "--checkpoint", checkpoint)[0] == 0
    assert not stale.exists() and photo.with_suffix(".tacoz").is_file()


def test_device_option(photo, checkpoint, capsys):  # noqa: F811
    import torch

    assert run(capsys, "compress", photo, "--caption", "x", "--checkpoint", checkpoint, "--device", "cpu")[0] == 0
    tacoz = photo.with_suffix(".tacoz")
    assert run(capsys, "decompress", tacoz, "--checkpoint", checkpoint, "--device", "cpu")[0] == 0
    if not torch.cuda.is_available():
        status, err = run(capsys, "decompress", tacoz, "--checkpoint", checkpoint, "--device", "cuda", "--force")
        assert status == 2 and "CUDA is not available" in err and len(err.splitlines()) == 1
