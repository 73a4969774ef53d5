"""``taco-plus captions``: convert, inspect and regenerate caption sets (docs/captions.md).
Only ``regenerate`` (without ``--dry-run``) uses the network."""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from taco_plus.cli import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    from taco_plus.captions.regenerate.config import RegenerateConfig

    parser = subparsers.add_parser("captions", help="convert, inspect and regenerate caption sets")
    sub = parser.add_subparsers(dest="captions_command", metavar="ACTION", required=True)

    convert = sub.add_parser("convert", help="convert original caption files to the caption-set format")
    kinds = convert.add_subparsers(dest="kind", metavar="KIND", required=True)
    ofa = kinds.add_parser("ofa", help='TACO\'s OFA files or any {"file.png": "caption"} JSON')
    ofa.add_argument("--source", help="provenance source text (default: TACO's OFA captions)")
    ofa.add_argument("--model", default="OFA", help='captioning model ("none" for human captions)')
    coco = kinds.add_parser("coco", help="an official COCO captions_{train,val}2014.json (2017 alike)")
    coco.add_argument("--image-dir", type=Path, help="the split's images: report those without captions")
    for p in (ofa, coco):
        p.add_argument("input", type=Path)
        p.add_argument("--out", type=Path, required=True, help="caption set to write")
        p.add_argument("--name", help="set name (default: from the input file name)")
        p.add_argument("--drop-bad", action="store_true", help="drop images with broken captions (default: flag them)")
        p.set_defaults(func=_convert)

    stats = sub.add_parser("stats", help="validate a caption file and print its statistics")
    stats.add_argument("path", type=Path, help="caption set, plain JSON mapping, or COCO captions file")
    stats.set_defaults(func=_stats)

    export = sub.add_parser("export-skimage", help="write scikit-image's bundled photos as PNGs (quickstart)")
    export.add_argument("out_dir", type=Path)
    export.set_defaults(func=_export)

    regenerate = sub.add_parser(
        "regenerate", help="caption images with GPT-4o or any OpenAI-compatible vision model",
        description="Caption images with a vision chat model. The API key is read from the environment "
        "(--api-key-env, default OPENAI_API_KEY). Progress is journaled: re-run with --resume after an interruption.")
    group = regenerate
    for f in fields(RegenerateConfig):  # each field is an option (config.py)
        kwargs = {k: v for k, v in f.metadata.items() if k not in ("flags", "group")}
        if isinstance(f.default, bool):  # a flag: its help says what it does
            kwargs["action"] = "store_false" if f.default else "store_true"
        elif f.default not in (None, MISSING):
            kwargs.update(type=kwargs.get("type", type(f.default)), default=f.default)
            if "(default" not in kwargs.get("help", ""):
                kwargs["help"] = kwargs.get("help", "") + " (default: %(default)s)"
        group = regenerate.add_argument_group(f.metadata["group"]) if "group" in f.metadata else group
        group.add_argument(*f.metadata.get("flags", ["--" + f.name.replace("_", "-")]), dest=f.name, **kwargs)
    regenerate.set_defaults(func=_regenerate)


def _convert(args: argparse.Namespace) -> None:
    from taco_plus.captions.convert import convert_coco, convert_ofa
    from taco_plus.captions.format import save_caption_set

    try:
        if args.kind == "ofa":
            model = None if args.model.lower() == "none" else args.model
            cs = convert_ofa(args.input, name=args.name, source=args.source, model=model, drop_bad=args.drop_bad)
        else:
            cs = convert_coco(args.input, name=args.name, image_dir=args.image_dir, drop_bad=args.drop_bad)
    except ValueError as err:  # CaptionFormatError included
        raise CLIError(str(err)) from None
    save_caption_set(cs, args.out)
    lines = [f"{cs.name}: {len(cs.captions)} images, {cs.stats['num_captions']} captions", *cs.provenance.notes]
    lines += [f"suspicious caption (kept, flagged in issues): {i}: {'; '.join(p)}" for i, p in cs.issues.items()]
    if missing := cs.provenance.missing_images:
        lines.append(f"{len(missing)} images without captions: {', '.join(missing[:5])}{' ...' * (len(missing) > 5)}")
    print("\n".join(lines + [f"wrote {args.out}"]))


def _stats(args: argparse.Namespace) -> None:
    from taco_plus.captions.checks import find_problems
    from taco_plus.captions.format import CaptionFormatError, caption_stats
    from taco_plus.captions.sources import open_caption_source

    try:
        source = open_caption_source(args.path)
    except CaptionFormatError as err:
        raise CLIError(str(err)) from None
    captions = {i: source.captions(i) for i in source.ids()}
    stats, stored = caption_stats(captions), getattr(source, "caption_set", None)
    kind = f"caption set {stored.name!r}" if stored else "plain caption file" if hasattr(source, "caption_set") \
        else "COCO captions file"
    print(f"{args.path}: {kind}; fingerprint {source.fingerprint[:16]}\n"
          f"images: {stats['num_images']}  captions: {stats['num_captions']}")
    for label, s in (("words per caption:      ", stats["words_per_caption"]),
                     ("CLIP tokens per caption:", stats["clip_tokens_per_caption"])):
        print(f"{label} mean {s['mean']}  median {s['median']}  p95 {s['p95']}  range {s['min']}-{s['max']}")
    print(f"over 38 tokens (TACO's text length): {100 * stats['share_over_38_tokens']:.1f}%   "
          f"over 77 (CLIP's context): {100 * stats['share_over_77_tokens']:.1f}%")
    if stored is not None and {k: stored.stats.get(k) for k in stats} != stats:
        print("warning: the statistics stored in the file differ from the recomputed ones", file=sys.stderr)
    for image_id, problems in find_problems(captions).items():
        print(f"suspicious caption: {image_id}: {'; '.join(problems)}")


def _export(args: argparse.Namespace) -> None:
    from taco_plus.captions.skimage_photos import export_skimage_photos

    print(*export_skimage_photos(args.out_dir), sep="\n")


def _regenerate(args: argparse.Namespace) -> int:
    from taco_plus.captions.regenerate import RegenerateConfig, regenerate
    from taco_plus.captions.regenerate.runner import FatalAPIError

    try:
        report = regenerate(RegenerateConfig(**{f.name: getattr(args, f.name) for f in fields(RegenerateConfig)}))
    except FatalAPIError as err:
        raise CLIError(f"stopped: {err}. Finished captions are kept in the journal; fix the problem and "
                       "re-run with --resume") from None
    except ValueError as err:  # RegenerateError, CaptionFormatError, bad settings
        raise CLIError(str(err)) from None
    except KeyboardInterrupt:
        print("\ninterrupted: finished captions are in the journal (batches keep running on the server); "
              "re-run with --resume to continue", file=sys.stderr)
        return 130
    print(report.summary())
    return 1 if report.missing and not (args.dry_run or args.write_requests) else 0
