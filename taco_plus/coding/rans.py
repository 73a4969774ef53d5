"""rANS coding in CompressAI's format, with a decoder that is safe on any input (docs/coding.md, "Decoding
hostile files").

Streams are ``compressai.ans``'s (ryg_rans ``rans64``: 64-bit state in ``[L, 2^63)``, ``L = 2^31``, 32-bit
little-endian words, 16-bit CDFs, 4-bit bypass escapes), encoded by CompressAI's ``BufferedRansEncoder`` so
files stay bit-identical to the official TACO code's. CompressAI's C++ decoder never checks the end of its
input (an all-0xFF payload reads ~15x the stream past its end); :func:`_decode_symbols` (Numba, checked
against ``compressai.ans`` in ``tests/test_rans.py``) reads the same format but never past the stream,
refuses escape counts no encoder writes (> 7 nibbles: O(1) per symbol), and :meth:`RansStream.finish`
accepts only a stream that ends exactly, every word consumed and the state back at ``L``.
"""

from __future__ import annotations

from typing import Sequence

import numba
import numpy as np
import torch
from compressai.ans import BufferedRansEncoder
from compressai.entropy_models import EntropyBottleneck, EntropyModel, GaussianConditional
from torch import Tensor

from taco_plus.coding.bitstream import BitstreamError

RANS64_L = 1 << 31
PRECISION = 16  # compressai's CDF precision
_OK, _OUT_OF_WORDS, _BAD_ESCAPE = 0, 1, 2
_ERRORS = {_OUT_OF_WORDS: "stream ends before its announced symbols (truncated or corrupted)",
           _BAD_ESCAPE: "stream holds an escape value no encoder writes (corrupted)"}


@numba.njit(cache=True, nogil=True)
def _get_nibble(words, pos, state):
    """CompressAI's ``Rans64DecGetBits(4)``: (nibble, state, pos); pos = -1 when out of words."""
    nibble = np.int64(state & np.uint64(15))
    state >>= np.uint64(4)
    if state < np.uint64(RANS64_L):
        if pos >= words.shape[0]:
            return nibble, state, -1
        state = (state << np.uint64(32)) | np.uint64(words[pos])
        pos += 1
    return nibble, state, pos


@numba.njit(cache=True, nogil=True)
def _decode_symbols(words, pos, state, indexes, cdfs, cdf_lengths, offsets, out):
    """Decodes ``len(indexes)`` symbols into ``out``; returns (state, pos, status)."""
    mask = np.uint64((1 << PRECISION) - 1)
    for i in range(indexes.shape[0]):
        row = indexes[i]
        top = cdf_lengths[row] - 1  # cdfs[row, 0] == 0 <= cf < cdfs[row, top] == 2^16
        cf = np.int64(state & mask)
        low = 0  # binary search for the last cdf entry <= cf (compressai scans linearly)
        while top - low > 1:
            mid = (low + top) >> 1
            if cdfs[row, mid] <= cf:
                low = mid
            else:
                top = mid
        start = np.int64(cdfs[row, low])
        freq = np.uint64(cdfs[row, low + 1] - start)
        state = freq * (state >> np.uint64(PRECISION)) + np.uint64(cf - start)
        if state < np.uint64(RANS64_L):
            if pos >= words.shape[0]:
                return state, pos, _OUT_OF_WORDS
            state = (state << np.uint64(32)) | np.uint64(words[pos])
            pos += 1
        value = np.int64(low)
        max_value = np.int64(cdf_lengths[row] - 2)
        if value == max_value:  # escape: a count nibble, then that many raw nibbles
            count, state, pos = _get_nibble(words, pos, state)
            if pos < 0:
                return state, pos, _OUT_OF_WORDS
            if count > 7:
                return state, pos, _BAD_ESCAPE
            raw = np.int64(0)
            for j in range(count):
                nibble, state, pos = _get_nibble(words, pos, state)
                if pos < 0:
                    return state, pos, _OUT_OF_WORDS
                raw |= nibble << (4 * j)
            value = -(raw >> 1) - 1 if raw & 1 else (raw >> 1) + max_value
        out[i] = value + offsets[row]
    return state, pos, _OK


class CdfTables:
    """An entropy model's CDF tables (rows, max length) int32, lengths and offsets: arrays for the decoder."""

    def __init__(self, entropy_model: EntropyModel) -> None:
        self.cdfs = entropy_model.quantized_cdf.detach().cpu().to(torch.int32).contiguous().numpy()
        self.lengths, self.offsets = (t.detach().cpu().reshape(-1).to(torch.int32).numpy()
                                      for t in (entropy_model.cdf_length, entropy_model.offset))
        rows, width = self.cdfs.shape
        if rows == 0:
            raise ValueError("entropy model has no CDF tables: call model.update() first")
        if len(self.lengths) != rows or len(self.offsets) != rows:
            raise ValueError("CDF tables, lengths and offsets disagree in size")
        if self.lengths.min() < 3 or self.lengths.max() > width:
            raise ValueError("CDF lengths out of range")

    def encoder_lists(self) -> tuple[list[list[int]], list[int], list[int]]:
        """Rows trimmed to their lengths (pybind converts every entry it is given)."""
        lengths = self.lengths.tolist()
        return [self.cdfs[i, :n].tolist() for i, n in enumerate(lengths)], lengths, self.offsets.tolist()


# compressai's encoder loops forever on escape values >= 2^28 (its nibble count shifts a 32-bit value by 32);
# NaN latents round to INT_MIN. Refused instead.
MAX_SYMBOL = 1 << 26


def encode(symbols: Tensor, indexes: Tensor, tables: CdfTables) -> bytes:
    """One rANS stream of ``symbols`` (int, any shape) coded with table ``indexes``."""
    if symbols.numel() and symbols.to(torch.int64).abs().max() >= MAX_SYMBOL:  # int32 abs(INT_MIN) < 0
        raise ValueError(f"latent values out of the coder's range (|symbol| >= {MAX_SYMBOL}): the image or the "
                         "model produces non-finite or huge latents")
    encoder = BufferedRansEncoder()
    encoder.encode_with_indexes(symbols.reshape(-1).int().tolist(), indexes.reshape(-1).int().tolist(),
                                *tables.encoder_lists())
    return encoder.flush()


class RansStream:
    """Decodes one ``string`` coded with ``tables`` in successive calls (the checkerboard parts), then
    :meth:`finish` checks that it held exactly ``symbols`` symbols."""

    def __init__(self, string: bytes, tables: CdfTables, symbols: int) -> None:
        if len(string) % 4 or len(string) < 8:
            raise BitstreamError(f"rANS stream of {len(string)} bytes: not a whole number (>= 2) of 32-bit words")
        self.words = np.frombuffer(string, dtype="<u4")
        self.state = np.uint64(self.words[0]) | (np.uint64(self.words[1]) << np.uint64(32))
        if not RANS64_L <= int(self.state) < 1 << 63:
            raise BitstreamError("rANS stream starts outside the coder's state range (corrupted)")
        self.pos, self.tables, self.remaining = 2, tables, symbols

    def decode(self, indexes: Tensor) -> Tensor:
        """Symbols (int32, shape of ``indexes``) for table indexes in coding order."""
        # the cast in numpy: torch's threaded one costs more than the decoding
        flat = indexes.reshape(-1).cpu().numpy().astype(np.int64)
        if flat.size > self.remaining:
            raise BitstreamError("asked for more symbols than the stream announces")
        if flat.size and (flat.min() < 0 or flat.max() >= len(self.tables.lengths)):
            raise ValueError("table index out of range")
        out = np.empty(flat.size, dtype=np.int32)
        t = self.tables
        state, pos, status = _decode_symbols(self.words, self.pos, self.state, flat, t.cdfs, t.lengths, t.offsets, out)
        self.state, self.pos = np.uint64(state), int(pos)  # one compiled signature
        if status != _OK:
            raise BitstreamError(_ERRORS[status])
        self.remaining -= flat.size
        return torch.from_numpy(out).reshape(indexes.shape)

    def finish(self) -> None:
        """Raises unless every announced symbol was decoded and the stream ended exactly."""
        if self.remaining:
            raise BitstreamError(f"{self.remaining} announced symbols were never decoded")
        if self.pos != len(self.words) or int(self.state) != RANS64_L:
            raise BitstreamError(f"stream does not decode to exactly its announced symbols (ended at word {self.pos} "
                                 f"of {len(self.words)}): corrupted, truncated, or decoded with another model")


def decode_all(strings: Sequence[bytes], indexes: Tensor, tables: CdfTables) -> Tensor:
    """Decodes one complete stream per batch item; ``indexes`` (B, ...) -> symbols (B, ...)."""
    if len(strings) != indexes.shape[0]:
        raise ValueError(f"{len(strings)} strings for a batch of {indexes.shape[0]}")
    out = []
    for string, idx in zip(strings, indexes):
        stream = RansStream(string, tables, idx.numel())
        out.append(stream.decode(idx))
        stream.finish()
    return torch.stack(out)


class BucketizedGaussianConditional(GaussianConditional):
    """CompressAI's ``GaussianConditional`` with table indexes from one ``torch.bucketize`` instead of a Python
    loop over the scale table: the same indexes, NaN and infinities included (``tests/test_rans.py``)."""

    def build_indexes(self, scales: Tensor) -> Tensor:
        return torch.bucketize(self.lower_bound_scale(scales), self.scale_table[:-1], out_int32=True)

    def tables(self) -> CdfTables:
        return CdfTables(self)


def _bottleneck_coding(bottleneck: EntropyBottleneck, batch: int, shape: Sequence[int]):
    """Tables, table indexes (B, C, h*w: one table per channel) and medians (1, C, 1, 1)."""
    tables = CdfTables(bottleneck)
    channels = len(tables.lengths)
    indexes = torch.arange(channels, dtype=torch.int32)[None, :, None].expand(batch, channels, shape[0] * shape[1])
    return tables, indexes, bottleneck._get_medians().detach().reshape(1, channels, 1, 1)


def encode_bottleneck(bottleneck: EntropyBottleneck, z: Tensor) -> tuple[list[bytes], Tensor]:
    """``EntropyBottleneck.compress`` (same bytes) -> (one string per item, z_hat as decoded)."""
    tables, indexes, medians = _bottleneck_coding(bottleneck, z.shape[0], z.shape[-2:])
    symbols = bottleneck.quantize(z, "symbols", medians)
    strings = [encode(s, i, tables) for s, i in zip(symbols, indexes)]
    return strings, symbols.to(medians.dtype) + medians


def decode_bottleneck(bottleneck: EntropyBottleneck, strings: Sequence[bytes], shape: Sequence[int]) -> Tensor:
    """``EntropyBottleneck.decompress`` through :class:`RansStream`: z_hat (B, C, h, w)."""
    tables, indexes, medians = _bottleneck_coding(bottleneck, len(strings), shape)
    symbols = decode_all(strings, indexes, tables)
    return symbols.reshape(len(strings), -1, *shape).to(medians.device, medians.dtype) + medians
