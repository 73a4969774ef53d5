"""The .tacoz container: every bad-file case fails with BitstreamError, fast."""

from __future__ import annotations

import struct
import zlib

import pytest

from taco_plus.coding.bitstream import HEADER_BYTES, BitstreamError, Payload, pack, unpack

FP = bytes(range(16))


def sample(**kw) -> bytes:
    fields = dict(height=63, width=65, fingerprint=FP, y_string=b"\x01\x02\x03" * 20, z_string=b"zz")
    return pack(Payload(**{**fields, **kw}))


def test_roundtrip_fields():
    data = sample()
    p = unpack(data, expected_fingerprint=FP)
    assert (p.height, p.width, p.y_string, p.z_string) == (63, 65, b"\x01\x02\x03" * 20, b"zz")
    assert p.z_shape == (1, 2)
    assert len(data) == HEADER_BYTES + 62


@pytest.mark.parametrize("cut", [0, 3, 10, HEADER_BYTES - 1, HEADER_BYTES + 5, -1])
def test_truncated(cut):
    data = sample()
    with pytest.raises(BitstreamError):
        unpack(data[:cut] if cut >= 0 else data[:-1], FP)


def test_every_single_byte_flip_is_detected():
    data = sample()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x40
        with pytest.raises(BitstreamError):
            unpack(bytes(bad), FP)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "magic"),
        (b"", "magic"),
        (b"%PDF-1.7 hello", "magic"),
    ],
)
def test_foreign_files(data, match):
    with pytest.raises(BitstreamError, match=match):
        unpack(data, FP)


def test_trailing_garbage():
    with pytest.raises(BitstreamError, match="trailing"):
        unpack(sample() + b"\x00", FP)


def test_wrong_model():
    with pytest.raises(BitstreamError, match="different model"):
        unpack(sample(), expected_fingerprint=b"\xff" * 16)


def _reseal(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_future_version_with_valid_crc():
    data = bytearray(sample()[:-4])
    data[4] = 9
    with pytest.raises(BitstreamError, match="version 9"):
        unpack(_reseal(bytes(data)), FP)


def test_absurd_size_with_valid_crc():
    data = bytearray(sample()[:-4])
    data[6:10] = (0).to_bytes(4, "big")
    with pytest.raises(BitstreamError, match="invalid image size"):
        unpack(_reseal(bytes(data)), FP)


def test_pack_rejects_bad_sizes():
    with pytest.raises(ValueError):
        sample(height=0)
