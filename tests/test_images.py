"""Image conversion rules, padding and cropping."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from taco_plus.images import ImageReadError, crop, load_image, pad_to_multiple, save_png


def write_png16(path, array: np.ndarray) -> None:
    """Minimal 16-bit PNG writer (Pillow cannot write 16-bit RGB)."""
    h, w = array.shape[:2]
    color_type = 2 if array.ndim == 3 else 0
    raw = b"".join(b"\x00" + array[r].astype(">u2").tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def test_rgb_png_exact(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 5, 7) and x.dtype == torch.float32
    assert np.array_equal((x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), rgb)


def test_grayscale_replicated(tmp_path):
    Image.fromarray(np.full((4, 4), 100, np.uint8), mode="L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert torch.allclose(x, torch.full((3, 4, 4), 100 / 255))


def test_palette_expanded(tmp_path):
    img = Image.new("P", (3, 2))
    img.putpalette([10, 20, 30] + [0] * 765)
    img.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png")
    assert torch.allclose(x[:, 0, 0] * 255, torch.tensor([10.0, 20.0, 30.0]))


def test_rgba_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent -> white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(x[:, 0, 1], torch.ones(3))


def test_16bit_rgb_and_gray_keep_high_byte(tmp_path):
    rng = np.random.default_rng(1)
    rgb16 = rng.integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    gray16 = rng.integers(0, 65536, (3, 4), dtype=np.uint16)
    write_png16(tmp_path / "c.png", rgb16)
    write_png16(tmp_path / "g.png", gray16)
    c = (load_image(tmp_path / "c.png") * 255).round().to(torch.int64)
    g = (load_image(tmp_path / "g.png") * 255).round().to(torch.int64)
    assert torch.equal(c.permute(1, 2, 0), torch.from_numpy((rgb16 >> 8).astype(np.int64)))
    assert torch.equal(g[0], torch.from_numpy((gray16 >> 8).astype(np.int64)))
    assert torch.equal(g[0], g[2])


def test_one_pixel_image(tmp_path):
    Image.fromarray(np.array([[[1, 2, 3]]], np.uint8)).save(tmp_path / "one.png")
    assert load_image(tmp_path / "one.png").shape == (3, 1, 1)


def test_bad_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="bad.png"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "t.png")
    (tmp_path / "trunc.png").write_bytes((tmp_path / "t.png").read_bytes()[:40])
    with pytest.raises(ImageReadError):
        load_image(tmp_path / "trunc.png")


@pytest.mark.parametrize("h,w", [(1, 1), (63, 65), (64, 64), (1363, 2048)])
def test_pad_and_crop(h, w):
    x = torch.rand(1, 3, h, w)
    p = pad_to_multiple(x, 64)
    assert p.shape[-2] % 64 == 0 and p.shape[-1] % 64 == 0
    assert p.shape[-2] - h < 64 and p.shape[-1] - w < 64
    assert torch.equal(crop(p, (h, w)), x)
    assert p[..., h:, :].abs().sum() == 0 and p[..., :, w:].abs().sum() == 0


def test_save_png_roundtrip(tmp_path):
    x = torch.rand(1, 3, 5, 6)
    save_png(x, tmp_path / "o.png")
    back = load_image(tmp_path / "o.png")
    assert torch.equal(back, (x[0] * 255).round() / 255)
