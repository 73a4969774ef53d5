"""End-to-end coding: images of any size, exact round trips, real files, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from taco_plus.checkpoint import LoadedCodec, load_codec, save_codec
from taco_plus.cli import main as cli_main
from taco_plus.codec import TacoCodec
from taco_plus.coding.bitstream import HEADER_BYTES, BitstreamError
from taco_plus.images import pad_to_multiple
from taco_plus.models import TACO

TINY_MODEL = {
    "_target_": "taco_plus.models.TACO",
    "N": 32,
    "M": 64,
    "slice_ch": [4, 4, 8, 16, 32],
    "text_dim": 64,
    "num_heads": 4,
}
TINY_TEXT = {
    "_target_": "taco_plus.text.ClipTextEncoder",
    "model_name": "taco-tiny-clip",
    "pretrained": None,
    "max_tokens": 38,
    "pad": "eot",
}
TINY_TEXT_WIDTH = 64  # taco-tiny-clip's token width


def make_model(seed: int) -> TACO:
    torch.manual_seed(seed)
    model = TACO(**{k: v for k, v in TINY_MODEL.items() if k != "_target_"})
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            torch.nn.init.normal_(p, std=0.5)  # let the text matter
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    model = make_model(0)
    model.update(force=True)
    save_codec(path, model, TINY_MODEL, TINY_TEXT)
    return path


@pytest.fixture(scope="module")
def codec(checkpoint):
    return TacoCodec(load_codec(checkpoint))


@pytest.mark.parametrize("h,w", [(1, 1), (63, 65), (64, 64), (100, 37)])
def test_roundtrip_exact_on_odd_sizes(codec, h, w):
    x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * w))
    result = codec.encode(x, "a red brick building with white windows")
    decoded = codec.decode(result.data)
    assert decoded.shape == (1, 3, h, w)
    assert torch.equal(decoded, result.x_hat)
    # ... and equals the eval-mode forward's reconstruction, bit for bit.
    text, mask, _ = codec.encode_text("a red brick building with white windows")
    with torch.no_grad():
        forward = codec.model(pad_to_multiple(x[None], 64), text, mask)["x_hat"]
    assert torch.equal(decoded, forward[..., :h, :w].clamp(0, 1))


@pytest.mark.slow
def test_roundtrip_large_clic_sized_image(codec):
    x = torch.rand(3, 1363, 2048, generator=torch.Generator().manual_seed(7))
    result = codec.encode(x, "a street at night")
    assert torch.equal(codec.decode(result.data), result.x_hat)


def test_two_runs_give_identical_files(checkpoint):
    x = torch.rand(3, 70, 90, generator=torch.Generator().manual_seed(3))
    first = TacoCodec(load_codec(checkpoint)).encode(x, "two dogs on a beach")
    second = TacoCodec(load_codec(checkpoint)).encode(x, "two dogs on a beach")
    assert first.data == second.data


def test_caption_changes_the_file_but_decoding_needs_none(codec):
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(5))
    a = codec.encode(x, "a cat")
    b = codec.encode(x, "an aerial photograph of a harbour with many boats")
    assert a.data != b.data
    assert torch.equal(codec.decode(b.data), b.x_hat)


def test_wrong_model_is_refused(codec, tmp_path):
    other = make_model(1)
    other.update(force=True)
    other_codec = TacoCodec(LoadedCodec(other, TINY_TEXT), text_encoder=codec.text_encoder)
    data = other_codec.encode(torch.rand(3, 32, 32), "x").data
    with pytest.raises(BitstreamError, match="different model"):
        codec.decode(data)


def test_truncated_and_corrupted_files_are_refused(codec):
    data = codec.encode(torch.rand(3, 64, 64), "a boat").data
    with pytest.raises(BitstreamError):
        codec.decode(data[: len(data) // 2])
    bad = bytearray(data)
    bad[HEADER_BYTES] ^= 0xFF
    with pytest.raises(BitstreamError, match="CRC"):
        codec.decode(bytes(bad))


def test_cli_compress_decompress(checkpoint, tmp_path, capsys):
    rgb = np.random.default_rng(0).integers(0, 256, (45, 77, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    out = tmp_path / "img.tacoz"
    assert cli_main(["compress", str(tmp_path / "img.png"), "--caption", "noise", "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    bpp = 8 * out.stat().st_size / (45 * 77)
    assert f"{bpp:.4f} bpp" in printed
    png = tmp_path / "dec.png"
    assert cli_main(["decompress", str(out), "--checkpoint", str(checkpoint), "-o", str(png)]) == 0
    assert Image.open(png).size == (77, 45)


def test_cli_reports_bad_inputs_cleanly(checkpoint, tmp_path, capsys):
    (tmp_path / "junk.tacoz").write_bytes(b"GIF89a nonsense")
    assert cli_main(["decompress", str(tmp_path / "junk.tacoz"), "--checkpoint", str(checkpoint)]) == 2
    assert "bad magic" in capsys.readouterr().err
    assert cli_main(["compress", str(tmp_path / "nope.png"), "--caption", "x", "--checkpoint", str(checkpoint)]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli_main(["decompress", str(tmp_path / "junk.tacoz"), "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


# Crafted files with a valid CRC, decoded in a child process: a crash there fails the
# test instead of killing pytest.
CRAFTED_FILES = """
import sys, time, torch
from taco_plus.checkpoint import load_codec
from taco_plus.codec import TacoCodec
from taco_plus.coding.bitstream import BitstreamError, Payload, pack, unpack

codec = TacoCodec(load_codec(sys.argv[1]))
real = unpack(open(sys.argv[2], "rb").read(), codec.fingerprint)  # a 64x64 image's file
fp = codec.fingerprint
cases = {
    "65536x65536 header": Payload(65536, 65536, fp, real.y_string, real.z_string),
    "16384x16384 header": Payload(16384, 16384, fp, real.y_string, real.z_string),
    "larger size than encoded": Payload(128, 192, fp, real.y_string, real.z_string),
    "empty y and z": Payload(64, 64, fp, b"", b""),
    "empty y": Payload(64, 64, fp, b"", real.z_string),
    "all-0xFF y": Payload(64, 64, fp, b"\\xff" * 4096, real.z_string),
    "all-0xFF z": Payload(64, 64, fp, real.y_string, b"\\xff" * 64),
    "y truncated by a word": Payload(64, 64, fp, real.y_string[:-4], real.z_string),
    "y and z swapped": Payload(64, 64, fp, real.z_string, real.y_string),
}
for name, payload in cases.items():
    start = time.perf_counter()
    try:
        codec.decode(pack(payload))
        outcome = "DECODED"
    except BitstreamError as err:
        outcome = f"BitstreamError: {err}"
    print(f"{name} ({time.perf_counter() - start:.1f} s): {outcome}")
print("done")
"""


def test_crafted_files_with_valid_crc_are_errors(codec, checkpoint, tmp_path):
    import subprocess
    import sys

    path = tmp_path / "real.tacoz"
    path.write_bytes(codec.encode(torch.rand(3, 64, 64), "a boat").data)
    proc = subprocess.run(
        [sys.executable, "-c", CRAFTED_FILES, str(checkpoint), str(path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"decoder process died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "done" and len(lines) == 10, proc.stdout
    assert all("BitstreamError" in line for line in lines[:-1]), proc.stdout
    assert "over the decoding limit" in lines[0] and "--max-pixels" in lines[0]


def test_pixel_limit_is_configurable(checkpoint, codec, tmp_path, capsys):
    data = codec.encode(torch.rand(3, 40, 50), "x").data
    limited = TacoCodec(load_codec(checkpoint), max_pixels=40 * 50 - 1)
    with pytest.raises(BitstreamError, match="over the decoding limit of 1,999 pixels"):
        limited.decode(data)
    limited.max_pixels = 40 * 50
    assert limited.decode(data).shape == (1, 3, 40, 50)
    (tmp_path / "a.tacoz").write_bytes(data)
    args = ["decompress", str(tmp_path / "a.tacoz"), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "a.png")]
    assert cli_main([*args, "--max-pixels", "1000"]) == 2
    assert "--max-pixels" in capsys.readouterr().err
    assert cli_main([*args, "--max-pixels", "2000"]) == 0


def test_decoding_is_exact_whatever_the_thread_count(tmp_path):
    """Encoded with 1 CPU thread and decoded with 2, and the reverse: the decoded image is the one the
    encoder predicted, to the bit (official sizes, a 256x256 crop of kodim23). oneDNN's 1x1 convolutions
    sum in a thread-count-dependent order: before the entropy model ran on one thread, the means differed
    by ~2e-7 and the decoded image by ~7e-7."""
    from taco_plus.images import load_image
    from tests.conftest import shared_path

    x = load_image(shared_path("data", "kodak", "kodim23.png"))[:, :256, :256]
    torch.manual_seed(0)
    model = TACO(text_dim=TINY_TEXT_WIDTH)
    model.update(force=True)
    codec = TacoCodec(LoadedCodec(model.eval(), TINY_TEXT))
    threads = torch.get_num_threads()
    try:
        for encode_threads, decode_threads in ((1, 2), (2, 1)):
            torch.set_num_threads(encode_threads)
            encoded = codec.encode(x, "two parrots")
            torch.set_num_threads(decode_threads)
            assert torch.equal(codec.decode(encoded.data), encoded.x_hat), (encode_threads, decode_threads)
            assert torch.get_num_threads() == decode_threads  # restored after each entropy-model call
    finally:
        torch.set_num_threads(threads)
