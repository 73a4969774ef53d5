"""Entropy coding with CompressAI's rANS format, with a decoder that is safe on any input.

The streams are those of ``compressai.ans`` (Giesen's ``rans64``: a 64-bit state kept in
``[L, 2^63)``, ``L = 2^31``, renormalised by 32-bit little-endian words; 16-bit CDF
precision; values outside a table's range escape through CompressAI's 4-bit *bypass*
symbols). Encoding uses ``compressai.ans.BufferedRansEncoder`` unchanged, so files stay
bit-identical to the official TACO code's.

Decoding does not use ``compressai.ans.RansDecoder``: that C++ decoder never checks the
end of its input, and its consumption has no bound in the number of symbols. Each
symbol reads at most one word, but an escape first reads a count of 4-bit groups as a
run of ``15`` nibbles, then that many groups: a payload of ``0xFF`` bytes keeps the count
loop going through the whole stream and the raw loop then reads ~15 times the stream's
length beyond its end (a crafted file ends in SIGSEGV). Zero padding would still need
about 76 bytes per announced symbol (up to 143 bypass reads per escape), and
``set_stream`` copies the padded buffer twice. :func:`_decode_symbols` instead reads the
same format with three properties that hold for *every* input:

1. **It never reads past the stream.** Every word read is checked against the end;
   running out of words is an error.
2. **Bounded work.** The encoder writes a bypass count as a single nibble ``n <= 7``
   (it codes raw values below 2^28; larger ones hang it, see :func:`encode`), so a
   count nibble above 7, which the C++ decoder follows as a continuation, is refused:
   each symbol costs O(1).
3. **Exact streams only.** rANS decoding inverts encoding step by step, so a stream
   produced by the encoder ends, after its last symbol, with every word consumed and
   the state back at the encoder's initial value ``L``. :meth:`RansStream.finish`
   checks both: a truncated, corrupted or mismatched stream (or one decoded with other
   scales than it was encoded with) is an error, never an image; a corrupted stream
   passes only if it lands on that 63-bit state at exactly the last word (~2^-31).

The decoder is compiled by Numba (cached on disk); its output is checked against
``compressai.ans`` in ``tests/test_rans.py``.
"""

from __future__ import annotations

from typing import Sequence

import numba
import numpy as np
import torch
from compressai.ans import BufferedRansEncoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor

from taco_plus.coding.bitstream import BitstreamError

RANS64_L = 1 << 31
PRECISION = 16  # compressai's CDF precision
_OK, _OUT_OF_WORDS, _BAD_ESCAPE = 0, 1, 2
_ERRORS = {
    _OUT_OF_WORDS: "stream ends before its announced symbols (truncated or corrupted)",
    _BAD_ESCAPE: "stream holds an escape value no encoder writes (corrupted)",
}


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
    """An entropy model's CDF tables, read once per call: (rows, max length) int32 CDFs,
    their lengths and offsets, as arrays for the decoder and trimmed lists for the encoder."""

    def __init__(self, quantized_cdf: Tensor, cdf_length: Tensor, offset: Tensor) -> None:
        self.cdfs = quantized_cdf.detach().cpu().to(torch.int32).contiguous().numpy()
        self.lengths = cdf_length.detach().cpu().reshape(-1).to(torch.int32).numpy()
        self.offsets = offset.detach().cpu().reshape(-1).to(torch.int32).numpy()
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


# compressai's encoder loops forever on escape values of 2^28 and more (its nibble count
# shifts a 32-bit value by 32); NaN latents round to INT_MIN. Refuse them instead.
MAX_SYMBOL = 1 << 26


def encode(symbols: Tensor, indexes: Tensor, tables: CdfTables) -> bytes:
    """One rANS stream of ``symbols`` (int, any shape) coded with table ``indexes``."""
    if symbols.numel() and symbols.to(torch.int64).abs().max() >= MAX_SYMBOL:  # int32 abs(INT_MIN) < 0
        raise ValueError(
            f"latent values out of the coder's range (|symbol| >= {MAX_SYMBOL}): the image or the "
            "model produces non-finite or huge latents"
        )
    encoder = BufferedRansEncoder()
    encoder.encode_with_indexes(
        symbols.reshape(-1).int().tolist(), indexes.reshape(-1).int().tolist(), *tables.encoder_lists()
    )
    return encoder.flush()


class RansStream:
    """Decodes one stream in successive calls (the checkerboard parts), then :meth:`finish`.

    Args:
        string: the rANS stream.
        tables: the CDF tables it was encoded with.
        symbols: how many symbols the stream announces (all calls together).
    """

    def __init__(self, string: bytes, tables: CdfTables, symbols: int) -> None:
        if len(string) % 4 or len(string) < 8:
            raise BitstreamError(f"rANS stream of {len(string)} bytes: not a whole number (>= 2) of 32-bit words")
        self.words = np.frombuffer(string, dtype="<u4")
        self.state = np.uint64(self.words[0]) | (np.uint64(self.words[1]) << np.uint64(32))
        if not RANS64_L <= int(self.state) < 1 << 63:
            raise BitstreamError("rANS stream starts outside the coder's state range (corrupted)")
        self.pos = 2
        self.tables = tables
        self.remaining = symbols

    def decode(self, indexes: Tensor) -> Tensor:
        """Symbols (int32, shape of ``indexes``) for table indexes in coding order."""
        flat = indexes.reshape(-1).cpu().numpy().astype(np.int64)  # numpy: torch's threaded cast costs more than decoding
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
            raise BitstreamError(
                "stream does not decode to exactly its announced symbols "
                f"(ended at word {self.pos} of {len(self.words)}): corrupted, truncated, "
                "or decoded with another model"
            )


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
    """CompressAI's ``GaussianConditional`` with table indexes from one ``torch.bucketize``.

    ``GaussianConditional.build_indexes`` loops over the scale table in Python, one
    full-size comparison per level (512 passes for this project's default table).
    Index ``i`` is the number of table entries below the (lower-bounded) scale, which
    is what ``bucketize`` over the table without its last entry returns, NaN and
    infinities included (pinned in ``tests/test_rans.py``).
    """

    def build_indexes(self, scales: Tensor) -> Tensor:
        return torch.bucketize(self.lower_bound_scale(scales), self.scale_table[:-1], out_int32=True)

    def tables(self) -> CdfTables:
        return CdfTables(self.quantized_cdf, self.cdf_length, self.offset)


def _bottleneck_coding(bottleneck: EntropyBottleneck, batch: int, shape: Sequence[int]):
    """Tables, table indexes (B, C, h*w: one table per channel) and medians (1, C, 1, 1)."""
    tables = CdfTables(bottleneck.quantized_cdf, bottleneck.cdf_length, bottleneck.offset)
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
