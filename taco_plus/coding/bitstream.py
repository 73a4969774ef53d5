"""The ``.tacoz`` file format: a checked container for one compressed image (layout: docs/coding.md, "The file").
:func:`unpack` checks magic, version, sizes, lengths, CRC, fingerprint and the pixel limit (2^25: 8K UHD fits)
before anything is decoded or allocated."""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: the CLI reads this module's limits
    import torch

MAGIC = b"TACZ"
VERSION = 1
_HEADER = struct.Struct(">4sBBII16sII")
HEADER_BYTES = _HEADER.size + 4  # + trailing CRC
MAX_SIDE = 1 << 16  # refuse absurd sizes before allocating anything
DEFAULT_MAX_PIXELS = 1 << 25


class BitstreamError(ValueError):
    """A file that is not a valid ``.tacoz`` stream for this model."""


@dataclass(frozen=True)
class Payload:
    """The decoded container: original size, model fingerprint, entropy-coded strings."""

    height: int
    width: int
    fingerprint: bytes
    y_string: bytes
    z_string: bytes

    @property
    def z_shape(self) -> tuple[int, int]:
        return (-(-self.height // 64), -(-self.width // 64))


def model_fingerprint(model: torch.nn.Module) -> bytes:
    """16-byte digest of every tensor in the state dict (names, dtypes, shapes, values),
    the entropy coders' CDF tables included: other tables would decode garbage."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        for part in (name, str(t.dtype), str(tuple(t.shape))):
            digest.update(part.encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.digest()[:16]


def pack(payload: Payload) -> bytes:
    """Serialises a payload (see the module docstring for the layout)."""
    if not (1 <= payload.height <= MAX_SIDE and 1 <= payload.width <= MAX_SIDE):
        raise ValueError(f"image size {payload.height}x{payload.width} out of range")
    if len(payload.fingerprint) != 16:
        raise ValueError("fingerprint must be 16 bytes")
    body = _HEADER.pack(MAGIC, VERSION, 0, payload.height, payload.width, payload.fingerprint,
                        len(payload.y_string), len(payload.z_string))
    body += payload.y_string + payload.z_string
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data: bytes, expected_fingerprint: bytes | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Payload:
    """Parses and validates a ``.tacoz`` stream; ``expected_fingerprint`` is the decoding model's,
    ``max_pixels`` the largest H x W accepted."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a .tacoz file (bad magic bytes)")
    if len(data) < HEADER_BYTES:
        raise BitstreamError(f"truncated file: {len(data)} bytes, header needs {HEADER_BYTES}")
    _, version, flags, height, width, fingerprint, y_len, z_len = _HEADER.unpack_from(data)
    if version != VERSION:
        raise BitstreamError(f"unsupported .tacoz version {version} (this build reads {VERSION})")
    expected_len = _HEADER.size + y_len + z_len + 4
    if len(data) != expected_len:
        kind = "truncated" if len(data) < expected_len else "trailing bytes in"
        raise BitstreamError(f"{kind} file: {len(data)} bytes, header announces {expected_len}")
    (crc,) = struct.unpack_from(">I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise BitstreamError("corrupted file: CRC-32 mismatch")
    if flags != 0:
        raise BitstreamError(f"unknown flags {flags:#x}")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"invalid image size {height}x{width}")
    if height * width > max_pixels:
        raise BitstreamError(f"image of {height}x{width} = {height * width:,} pixels is over the decoding limit of "
                             f"{max_pixels:,} pixels; if you trust this file, raise the limit "
                             "(taco-plus decompress --max-pixels N, or TacoCodec(..., max_pixels=N))")
    if expected_fingerprint is not None and fingerprint != expected_fingerprint:
        raise BitstreamError(f"this file was encoded by a different model (weights fingerprint {fingerprint.hex()} != "
                             f"{expected_fingerprint.hex()}): decode it with the checkpoint that encoded it")
    y_end = _HEADER.size + y_len
    return Payload(height, width, fingerprint, data[_HEADER.size : y_end], data[y_end : y_end + z_len])
