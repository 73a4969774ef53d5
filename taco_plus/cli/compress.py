"""``taco-plus compress`` and ``taco-plus decompress``.

Default outputs: ``photo.png`` -> ``photo.tacoz`` -> ``photo.decoded.png`` (never the
original). An existing output is refused unless ``--force``; one of the inputs (image,
``.tacoz`` file, checkpoint, caption file; any spelling or link) even with it. Outputs
are written atomically (a killed writer's temporary beside them is removed). ``--device``:
CUDA when present; docs/coding.md says what decodes exactly across devices.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from taco_plus.atomic import atomic_write, remove_stale_temporaries
from taco_plus.cli import CLIError
from taco_plus.coding.bitstream import DEFAULT_MAX_PIXELS

DECODED_SUFFIX = ".decoded.png"


def _load(args: argparse.Namespace, text_weights: str | None = None):
    from taco_plus.checkpoint import load_codec
    from taco_plus.codec import TacoCodec
    from taco_plus.distributed import resolve_device

    try:
        device = resolve_device(args.device or "auto")
    except RuntimeError as err:  # cuda asked for, none present
        raise CLIError(str(err)) from err
    loaded = load_codec(args.checkpoint)
    if text_weights is not None:  # same architecture, weights from a local file or folder
        loaded.text_encoder_config = {**loaded.text_encoder_config, "pretrained": text_weights}
    loaded.model.to(device)
    return TacoCodec(loaded, max_pixels=args.max_pixels)


def _check_output(out: Path, inputs: Sequence[Optional[str]], force: bool) -> Path:
    """The file to write for ``-o out``, resolved first (links followed, ``a/../`` collapsed) so that no
    spelling of an input gets past; a link to another file is written through, as a shell redirection would."""
    target = Path(os.path.realpath(out))
    if target.is_dir():
        raise CLIError(f"output {out} is a folder; give a file name with -o")
    if not target.exists():
        return target
    if not target.is_file():  # a device (/dev/null, /dev/stdout): replacing it would be wrong
        raise CLIError(f"output {out} is not a regular file; give a file name with -o")
    for given in filter(None, inputs):
        try:
            same = os.path.samefile(target, given)  # same inode: hard links included
        except OSError:  # input missing: reported later
            same = False
        if same:
            raise CLIError(f"output {out} is the input {given}: refusing to overwrite it (even with --force)")
    if not force:
        raise CLIError(f"output {out} exists: refusing to overwrite it (use --force, or another name with -o)")
    return target


def _write(target: Path, data: bytes, out: Path) -> None:
    """Writes ``target`` (the resolved ``-o out``) atomically, naming ``out`` when it fails."""
    try:
        remove_stale_temporaries(target)
        atomic_write(target, data)
    except OSError as err:  # read-only folder, disk full ...
        raise CLIError(f"cannot write {out}: {err.strerror or err}") from err


def _read_caption(args: argparse.Namespace) -> str:
    if args.caption is None and args.caption_file is None:
        raise CLIError("give the image's caption with --caption TEXT or --caption-file FILE")
    if args.caption_file is None:
        return args.caption
    try:
        return Path(args.caption_file).read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as err:
        raise CLIError(
            f"caption file {args.caption_file} is not UTF-8 text (byte 0x{err.object[err.start]:02x} "
            f"at offset {err.start}); convert it, e.g. iconv -f latin1 -t utf-8"
        ) from err


def _warn_if_truncated(codec, caption: str) -> None:
    """Says on stderr how much of a caption the text encoder's token limit dropped."""
    layout = codec.text_encoder.tokenize([caption])[0]
    if layout.truncated:
        kept = sum(i >= 0 for i in layout.piece_index)
        print(
            f"taco-plus compress: warning: caption truncated to {len(layout)} tokens "
            f"(max_tokens={codec.text_encoder.max_tokens}): kept its first {kept} of "
            f"{kept + layout.truncated} BPE tokens, dropped {layout.truncated}",
            file=sys.stderr,
        )


def _read_image(path: str, max_pixels: int):
    """The image (size checked from the header); what is not coded (later frames) is said on stderr."""
    from taco_plus.images import load_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(path, max_pixels)
    for w in caught:
        print(f"taco-plus compress: warning: {w.message}", file=sys.stderr)
    return image


def compress(args: argparse.Namespace) -> int:
    caption = _read_caption(args)
    out = Path(args.output or Path(args.image).with_suffix(".tacoz"))
    target = _check_output(out, (args.image, args.checkpoint, args.caption_file), args.force)
    image = _read_image(args.image, args.max_pixels)
    codec = _load(args, args.text_weights)
    from taco_plus.text import ClipWeightsUnavailableError

    try:
        result = codec.encode(image, caption)
    except ClipWeightsUnavailableError as err:
        raise CLIError(f"{err}\nThen pass that file or folder with --text-weights PATH.") from err
    _warn_if_truncated(codec, caption)
    _write(target, result.data, out)
    print(f"{out}: {len(result.data)} bytes, {result.height}x{result.width}, {result.bpp:.4f} bpp, "
          f"{result.encode_ms:.0f} ms")
    return 0


def decompress(args: argparse.Namespace) -> int:
    from taco_plus.images import encode_png

    path = Path(args.file)
    out = Path(args.output or path.with_name(path.stem + DECODED_SUFFIX))
    target = _check_output(out, (args.file, args.checkpoint), args.force)
    if path.exists() and not path.is_file():  # /dev/zero would be read forever
        raise CLIError(f"input {path} is not a regular file")
    data = path.read_bytes()
    x_hat = _load(args).decode(data)
    _write(target, encode_png(x_hat), out)
    h, w = x_hat.shape[-2:]
    print(f"{out}: {h}x{w}, {8 * len(data) / (h * w):.4f} bpp")
    return 0


def _add_common(p: argparse.ArgumentParser, checkpoint_help: str, output_help: str, func) -> None:
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("-o", "--output", help=output_help)
    p.add_argument("--force", action="store_true", help="overwrite an existing output file (never one of the inputs)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse images of more than N pixels (default {DEFAULT_MAX_PIXELS:,}; decoding needs a few "
                        "hundred bytes of memory per pixel)")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="where the networks run (default: cuda when present); docs/coding.md: decoding across devices")
    p.set_defaults(func=func)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compress", help="compress an image with its caption to a .tacoz file")
    p.add_argument("image", help="input image (PNG, JPEG, ...; any size and mode; first frame of an animation)")
    p.add_argument("--caption", help="the image's caption (used by the encoder only)")
    p.add_argument("--caption-file", help="read the caption from a UTF-8 text file")
    p.add_argument("--text-weights", metavar="PATH",
                   help="local CLIP weights (open_clip file, or a folder with open_clip_config.json) "
                        "for the checkpoint's text encoder, e.g. offline with an official checkpoint")
    _add_common(p, "taco-plus or official TACO checkpoint", "output file (default: IMAGE with .tacoz)", compress)
    p = subparsers.add_parser("decompress", help="decode a .tacoz file to PNG (no caption needed)")
    p.add_argument("file", help="input .tacoz file")
    _add_common(p, "the checkpoint that encoded the file", f"output PNG (default: FILE with {DECODED_SUFFIX})",
                decompress)
