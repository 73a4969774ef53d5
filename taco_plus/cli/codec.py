"""``taco-plus compress`` and ``taco-plus decompress``."""

from __future__ import annotations

import argparse
from pathlib import Path

from taco_plus.atomic import atomic_write
from taco_plus.cli import CLIError


def _load(checkpoint: str, text_weights: str | None = None):
    from taco_plus.checkpoint import load_codec
    from taco_plus.codec import TacoCodec

    if text_weights is not None and not Path(text_weights).exists():
        raise CLIError(f"--text-weights: no such file or folder: {text_weights}")
    try:
        loaded = load_codec(checkpoint)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from err
    if text_weights is not None:  # same architecture, weights from a local file or folder
        loaded.text_encoder_config = {**loaded.text_encoder_config, "pretrained": text_weights}
    return TacoCodec(loaded)


def compress(args: argparse.Namespace) -> int:
    from taco_plus.images import ImageReadError, load_image

    if args.caption is None and args.caption_file is None:
        raise CLIError("give the image's caption with --caption TEXT or --caption-file FILE")
    caption = args.caption
    if args.caption_file is not None:
        try:
            caption = Path(args.caption_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise CLIError(f"cannot read caption file: {err}") from err
    try:
        image = load_image(args.image)
    except (FileNotFoundError, ImageReadError) as err:
        raise CLIError(str(err)) from err
    codec = _load(args.checkpoint, args.text_weights)
    from taco_plus.text import ClipWeightsUnavailableError

    try:
        result = codec.encode(image, caption)
    except ClipWeightsUnavailableError as err:
        raise CLIError(f"{err}\nThen pass that file or folder with --text-weights PATH.") from err
    except RuntimeError as err:
        raise CLIError(str(err)) from err
    out = Path(args.output or Path(args.image).with_suffix(".tacoz"))
    atomic_write(out, result.data)
    print(
        f"{out}: {len(result.data)} bytes, {result.height}x{result.width}, "
        f"{result.bpp:.4f} bpp, {result.encode_ms:.0f} ms"
    )
    return 0


def decompress(args: argparse.Namespace) -> int:
    from taco_plus.bitstream import BitstreamError
    from taco_plus.images import save_png

    path = Path(args.file)
    if not path.is_file():
        raise CLIError(f"file not found: {path}")
    data = path.read_bytes()
    codec = _load(args.checkpoint)
    try:
        x_hat = codec.decode(data)
    except BitstreamError as err:
        raise CLIError(f"{path}: {err}") from err
    out = Path(args.output or path.with_suffix(".png"))
    save_png(x_hat, out)
    h, w = x_hat.shape[-2:]
    print(f"{out}: {h}x{w}, {8 * len(data) / (h * w):.4f} bpp")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compress", help="compress an image with its caption to a .tacoz file")
    p.add_argument("image", help="input image (PNG, JPEG, ...; any size and mode)")
    p.add_argument("--caption", help="the image's caption (used by the encoder only)")
    p.add_argument("--caption-file", help="read the caption from a UTF-8 text file")
    p.add_argument("--checkpoint", required=True, help="taco-plus or official TACO checkpoint")
    p.add_argument("--text-weights", metavar="PATH",
                   help="local CLIP weights (open_clip file, or a folder with open_clip_config.json) "
                        "for the checkpoint's text encoder, e.g. offline with an official checkpoint")
    p.add_argument("-o", "--output", help="output file (default: IMAGE with .tacoz)")
    p.set_defaults(func=compress)

    p = subparsers.add_parser("decompress", help="decode a .tacoz file to PNG (no caption needed)")
    p.add_argument("file", help="input .tacoz file")
    p.add_argument("--checkpoint", required=True, help="the checkpoint that encoded the file")
    p.add_argument("-o", "--output", help="output PNG (default: FILE with .png)")
    p.set_defaults(func=decompress)
