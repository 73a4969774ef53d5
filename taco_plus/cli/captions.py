"""``taco-plus captions``: convert, inspect and regenerate caption sets.

Subcommands::

    taco-plus captions convert ofa  kodak_ofa.json --out captions/kodak_ofa.json
    taco-plus captions convert coco captions_val2017.json --image-dir val2017 --out coco_val.json
    taco-plus captions stats captions/kodak_ofa.json
    taco-plus captions regenerate --images kodak/ --out kodak_gpt4o.json --dry-run
    taco-plus captions export-skimage data/skimage

Only ``regenerate`` (without ``--dry-run``) uses the network.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from taco_plus.cli import CLIError


def _default(name: str):
    from taco_plus.captions.regenerate.config import RegenerateConfig

    return {f.name: f.default for f in fields(RegenerateConfig)}[name]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("captions", help="convert, inspect and regenerate caption sets")
    sub = parser.add_subparsers(dest="captions_command", metavar="ACTION")
    sub.required = True

    convert = sub.add_parser("convert", help="convert original caption files to the caption-set format")
    kinds = convert.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    ofa = kinds.add_parser("ofa", help='TACO\'s OFA files or any {"file.png": "caption"} JSON')
    ofa.add_argument("input", type=Path)
    ofa.add_argument("--source", help="provenance source text (default: TACO's OFA captions)")
    ofa.add_argument("--model", help='captioning model (default "OFA"; "none" for human captions)')
    coco = kinds.add_parser("coco", help="an official COCO captions_{train,val}2017.json")
    coco.add_argument("input", type=Path)
    coco.add_argument("--image-dir", type=Path, help="the split's images: report those without captions")
    for p in (ofa, coco):
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

    _add_regenerate(sub)


def _add_regenerate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "regenerate",
        help="caption images with GPT-4o or any OpenAI-compatible vision model",
        description="Caption images with a vision chat model. The API key is read from the environment "
        "(--api-key-env, default OPENAI_API_KEY). Progress is journaled: re-run with --resume after "
        "an interruption.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    what = p.add_argument_group("what to caption")
    what.add_argument("--images", "--image-root", dest="image_root", metavar="DIR", type=Path, required=True,
                      help="image folder; image ids are paths relative to it")
    what.add_argument("--captions", type=Path, help="caption set naming the images (and holding the originals)")
    what.add_argument("--out", type=Path, required=True, help="caption set to write")
    what.add_argument("--limit", type=int, help="only the first N images")
    ask = p.add_argument_group("request")
    ask.add_argument("--model", default=_default("model"))
    ask.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM)")
    ask.add_argument("--api-key-env", default=_default("api_key_env"), help="environment variable with the key")
    ask.add_argument("--prompt", help="prompt file, or a name in taco_plus/captions/prompts/ (default detailed_scene_v1.txt)")
    ask.add_argument("--target-words", type=int, help="answer length for length-controlled prompts")
    ask.add_argument("--with-original", action="store_true", help="give the original caption as context")
    ask.add_argument("--temperature", type=float, default=_default("temperature"))
    ask.add_argument("--max-tokens", type=int, default=_default("max_tokens"))
    ask.add_argument("--detail", choices=("low", "high", "auto"), default=_default("detail"))
    ask.add_argument("--max-side", type=int, default=_default("max_side"), help="downscale images to this longest side")
    ask.add_argument("--min-words", type=int, default=_default("min_words"), help="shorter answers are retried")
    run = p.add_argument_group("execution")
    run.add_argument("--mode", choices=("online", "batch"), default=_default("mode"))
    run.add_argument("--concurrency", type=int, default=_default("concurrency"))
    run.add_argument("--timeout", type=float, default=_default("timeout"), help="seconds per HTTP request")
    run.add_argument("--image-timeout", type=float, default=_default("image_timeout"),
                     help="seconds per image in online mode, retries and waits included; then it counts as failed")
    run.add_argument("--max-attempts", type=int, default=_default("max_attempts"),
                     help="HTTP attempts per request (the openai SDK retries 408/409/429/5xx and timeouts)")
    run.add_argument("--max-answer-retries", type=int, default=_default("max_answer_retries"),
                     help="new requests after a refusal, empty, short or malformed answer")
    run.add_argument("--poll-interval", type=float, default=_default("poll_interval"), help="batch polling (s)")
    run.add_argument("--batch-max-requests", type=int, default=_default("batch_max_requests"))
    run.add_argument("--batch-max-bytes", type=int, default=_default("batch_max_bytes"))
    run.add_argument("--journal", type=Path, help="journal file (default <out stem>.journal.jsonl)")
    run.add_argument("--resume", action="store_true", help="continue the run recorded in the journal")
    run.add_argument("--dry-run", action="store_true", help="estimate requests, tokens and cost; no key, no network")
    run.add_argument("--write-requests", action="store_true",
                     help="write the Batch API request files (<out stem>.batch/requests-NNN.jsonl) and stop")
    run.add_argument("--results", type=Path, nargs="+", default=[],
                     help="merge Batch API result files (OpenAI's, or vllm run-batch's) instead of sending requests")
    run.add_argument("--prices", type=Path, help="price table JSON (default: the bundled prices.json)")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=_regenerate)


def _convert(args: argparse.Namespace) -> int:
    from taco_plus.captions.convert import convert_coco, convert_ofa
    from taco_plus.captions.format import CaptionFormatError, save_caption_set

    try:
        if args.kind == "ofa":
            kwargs = {}
            if args.source:
                kwargs["source"] = args.source
            if args.model:
                kwargs["model"] = None if args.model.lower() == "none" else args.model
            result = convert_ofa(args.input, name=args.name, drop_bad=args.drop_bad, **kwargs)
        else:
            result = convert_coco(args.input, name=args.name, image_dir=args.image_dir, drop_bad=args.drop_bad)
    except (CaptionFormatError, FileNotFoundError, NotADirectoryError, ValueError) as err:
        raise CLIError(str(err)) from None
    save_caption_set(result.caption_set, args.out)
    print(result.report())
    print(f"wrote {args.out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from taco_plus.captions.checks import find_problems
    from taco_plus.captions.format import CaptionFormatError, read_json
    from taco_plus.captions.sources import CaptionSetSource, CocoCaptionsSource
    from taco_plus.captions.stats import caption_stats, format_stats

    try:
        data = read_json(args.path)
        coco = isinstance(data, dict) and "annotations" in data and "images" in data
        source = CocoCaptionsSource(args.path) if coco else CaptionSetSource(args.path)
    except (CaptionFormatError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    captions = {i: source.captions(i) for i in source.ids()}
    stats = caption_stats(captions)
    stored = getattr(source, "caption_set", None)
    kind = "COCO captions file" if coco else (f"caption set {stored.name!r}" if stored else "plain caption file")
    print(f"{args.path}: {kind}; "
          f"fingerprint {source.fingerprint[:16]}")
    print(format_stats(stats))
    if stored is not None and {k: stored.stats.get(k) for k in stats} != stats:
        print("warning: the statistics stored in the file differ from the recomputed ones", file=sys.stderr)
    for image_id, problems in find_problems(captions).items():
        print(f"suspicious caption: {image_id}: {'; '.join(problems)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from taco_plus.captions.skimage_photos import export_skimage_photos

    for path in export_skimage_photos(args.out_dir):
        print(path)
    return 0


def _regenerate(args: argparse.Namespace) -> int:
    from taco_plus.captions.format import CaptionFormatError
    from taco_plus.captions.prompts import PromptError
    from taco_plus.captions.regenerate import RegenerateConfig, RegenerateError, regenerate
    from taco_plus.captions.regenerate.journal import JournalError
    from taco_plus.captions.regenerate.requests import JobError
    from taco_plus.captions.regenerate.runner import FatalAPIError, MissingAPIKeyError

    try:
        settings = {f.name: getattr(args, f.name) for f in fields(RegenerateConfig) if hasattr(args, f.name)}
        report = regenerate(RegenerateConfig(**settings))
    except FatalAPIError as err:
        raise CLIError(f"stopped: {err}. Finished captions are kept in the journal; fix the problem and "
                       "re-run with --resume") from None
    except (MissingAPIKeyError, JournalError, JobError, RegenerateError, PromptError, CaptionFormatError,
            FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from None
    except KeyboardInterrupt:
        print("\ninterrupted: finished captions are in the journal (batches keep running on the server); "
              "re-run with --resume to continue", file=sys.stderr)
        return 130
    print(report.summary())
    return 1 if report.missing and not (args.dry_run or args.write_requests) else 0
