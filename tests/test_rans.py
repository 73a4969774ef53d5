"""rANS coding: the bounds-checked decoder against compressai, hostile streams and files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from compressai.ans import RansDecoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models.base import get_scale_table

from taco_plus.coding.bitstream import BitstreamError
from taco_plus.coding.rans import (
    BucketizedGaussianConditional,
    RansStream,
    decode_all,
    decode_bottleneck,
    encode,
    encode_bottleneck,
)


def gaussian(levels: int, cls=BucketizedGaussianConditional):
    gc = cls(None)
    gc.update_scale_table(get_scale_table(levels=levels), force=True)
    return gc


@pytest.mark.parametrize("levels", [64, 512])
def test_bucketize_indexes_equal_compressai(levels):
    ours, ref = gaussian(levels), gaussian(levels, GaussianConditional)
    table = ref.scale_table
    special = torch.tensor([0.0, -1.0, 1e-9, 0.11, 0.1100001, 256.0, 1e30, float("inf"), float("-inf"), float("nan")])
    scales = torch.cat(
        [
            table,  # exactly on entries
            table.nextafter(torch.tensor(0.0)),  # just below
            table.nextafter(torch.tensor(1e9)),  # just above
            special,
            torch.rand(20000, generator=torch.Generator().manual_seed(0)) * 300,
        ]
    ).reshape(1, 2, -1)
    expected = ref.build_indexes(scales)
    got = ours.build_indexes(scales)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


def random_symbols(n: int, seed: int, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symbols mostly inside the tables, some far outside (escapes), table indexes."""
    g = torch.Generator().manual_seed(seed)
    indexes = torch.randint(0, levels, (n,), generator=g, dtype=torch.int32)
    symbols = (torch.randn(n, generator=g) * 20).round().int()
    far = torch.rand(n, generator=g) < 0.02
    symbols[far] = torch.randint(-(2**25), 2**25, (int(far.sum()),), generator=g, dtype=torch.int32)
    return symbols, indexes


def test_streams_are_compressai_streams_both_ways():
    gc = gaussian(512)
    tables = gc.tables()
    symbols, indexes = random_symbols(60000, 1, 512)
    # Our encoder (trimmed tables) writes exactly what compressai's own compress() writes.
    string = encode(symbols, indexes, tables)
    assert gc.compress(symbols[None].double(), indexes[None])[0] == string  # double: exact integers
    # compressai's decoder and ours read it back identically, ours in several calls.
    ref = RansDecoder()
    ref.set_stream(string)
    expected = ref.decode_stream(indexes.tolist(), tables.cdfs.tolist(), tables.lengths.tolist(), tables.offsets.tolist())
    stream = RansStream(string, tables, len(symbols))
    got = torch.cat([stream.decode(part) for part in indexes.split([1, 29999, 30000])])
    stream.finish()
    assert torch.equal(got, symbols) and got.tolist() == expected


def test_entropy_bottleneck_matches_compressai():
    eb = EntropyBottleneck(8)
    with torch.no_grad():
        eb.quantiles.add_(torch.randn_like(eb.quantiles))
    eb.update(force=True)
    z = torch.randn(2, 8, 5, 7) * 30
    strings, z_hat = encode_bottleneck(eb, z)
    assert strings == eb.compress(z)
    decoded = decode_bottleneck(eb, strings, (5, 7))
    assert torch.equal(decoded, z_hat) and torch.equal(decoded, eb.decompress(strings, (5, 7)))


def test_stream_must_decode_to_exactly_its_symbols():
    tables = gaussian(64).tables()
    symbols, indexes = random_symbols(5000, 2, 64)
    string = encode(symbols, indexes, tables)
    too_many = torch.cat([indexes, indexes[:100]])  # a stream read as a larger latent
    with pytest.raises(BitstreamError):
        decode_all([string], too_many[None], tables)
    with pytest.raises(BitstreamError, match="exactly"):  # ... or as a smaller one
        decode_all([string], indexes[None, :-100], tables)
    with pytest.raises(BitstreamError):  # decoded with other tables
        decode_all([string], (63 - indexes)[None], tables)
    with pytest.raises(BitstreamError):
        RansStream(string, tables, 10).decode(indexes)


def test_encoder_refuses_latents_that_hang_compressai():
    tables = gaussian(64).tables()
    nan_symbols = torch.tensor([float("nan")]).int()  # what NaN latents round to
    with pytest.raises(ValueError, match="out of the coder's range"):
        encode(nan_symbols, torch.zeros(1, dtype=torch.int32), tables)


# Hostile input runs in a child process: a read past the buffer may kill the process
# (SIGSEGV), which must fail the test, not pytest.
HOSTILE_STREAMS = textwrap.dedent(
    """
    import torch
    from compressai.models.base import get_scale_table
    from taco_plus.coding.bitstream import BitstreamError
    from taco_plus.coding.rans import BucketizedGaussianConditional, decode_all, encode

    gc = BucketizedGaussianConditional(None)
    gc.update_scale_table(get_scale_table(levels=64), force=True)
    tables = gc.tables()
    n = 100_000
    indexes = torch.randint(0, 64, (1, n), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    good = encode(torch.zeros(n, dtype=torch.int32), indexes, tables)
    cases = {
        "empty": b"",
        "one word": b"\\x00" * 4,
        "all 0xFF, 64 KiB": b"\\xff" * 65536,
        "all 0x00, 64 KiB": b"\\x00" * 65536,
        "0xFF after a valid start state": good[:8] + b"\\xff" * 4096,
        "truncated": good[: len(good) // 2],
        "truncated by one word": good[:-4],
        "odd length": good + b"\\x00",
        "random bytes": bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8).tolist()),
    }
    for name, string in cases.items():
        try:
            decode_all([string], indexes, tables)
        except BitstreamError as err:
            print(f"{name}: BitstreamError: {err}")
        else:
            print(f"{name}: DECODED")
    print("done")
    """
)


def test_hostile_streams_are_errors_not_crashes():
    proc = subprocess.run([sys.executable, "-c", HOSTILE_STREAMS], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"decoder process died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "done" and len(lines) == 10, proc.stdout
    assert all("BitstreamError" in line for line in lines[:-1]), proc.stdout


def test_coding_package_imports_nothing_of_the_model():
    """``taco_plus.coding`` is the layer the model calls: importing all of it loads no other taco_plus module
    (the model, the codec, the CLI), and the container alone does not even load torch (the CLI reads its limits)."""
    code = ("import json, sys, taco_plus.coding.bitstream; torch = 'torch' in sys.modules; "
            "import taco_plus.coding.checkerboard; "
            "print(json.dumps([torch, sorted(m for m in sys.modules if m.startswith('taco_plus.'))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    torch_loaded, modules = json.loads(out)
    assert not torch_loaded
    assert modules == ["taco_plus.coding", "taco_plus.coding.bitstream", "taco_plus.coding.checkerboard",
                       "taco_plus.coding.rans"]
