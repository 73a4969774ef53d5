"""``taco-plus weights``: inspect the token weights of a caption, or fit a weighting artefact
(``taco-plus weights fit``; docs/weighting.md). One parser serves both, so ``--help`` lists both."""

from __future__ import annotations

import argparse
import json
from typing import Any

from taco_plus.cli import CLIError

# Each flag sets the keys of the chosen option that it names (an option has at most one of them).
FLAG_KEYS = {"tfidf": ("artefact", "tfidf_artefact"), "ner_cache": ("cache", "ner_cache"),
             "pipeline": ("pipeline",), "max_weight": ("max_weight",)}


def _max_tokens(value: str) -> Any:
    if value not in ("38", "77", "chunked"):
        raise argparse.ArgumentTypeError(f"must be 38, 77 or chunked, not {value!r}")
    return value if value == "chunked" else int(value)


def _build_weighting(args: argparse.Namespace, kind: str) -> Any:
    """The option ``weighting=<kind>`` composed as training composes it, the flags set on it."""
    from taco_plus.checkpoint import instantiate_stored
    from taco_plus.schemas import compose, to_container

    node = compose([f"+weighting={kind}"], config_name=None).weighting
    for flag, keys in FLAG_KEYS.items():
        for key in (k for k in keys if k in node):
            if getattr(args, flag) is not None:
                node[key] = getattr(args, flag)
            elif flag == "tfidf":
                raise CLIError(f"--weighting {kind} needs --tfidf ARTEFACT "
                               "(build one with `taco-plus weights fit --captions SET.json --out tfidf.json`)")
    return instantiate_stored(to_container(node), "weighting_config")


def inspect(args: argparse.Namespace) -> int:
    """Prints one row per CLIP token of the caption: token, weight, reason."""
    from taco_plus.text.tokenizer import tokenize
    from taco_plus.weighting import ArtefactError, PipelineNotInstalledError

    if args.captions or args.out:
        raise CLIError("--captions and --out belong to `taco-plus weights fit`")
    try:
        weighting = _build_weighting(args, args.weighting or "ner")
        layout = tokenize(args.caption, args.max_tokens)
        rows = weighting.layout_rows(layout, args.caption)
    except (ArtefactError, PipelineNotInstalledError, ValueError) as err:
        raise CLIError(str(err)) from err
    if args.json:
        fields = ("token", "weight", "special", "reason", "start", "end")
        print(json.dumps([{"position": i} | {f: getattr(r, f) for f in fields} for i, r in enumerate(rows)],
                         ensure_ascii=False, indent=1))
        return 0
    width = max(len(r.token) for r in rows)
    print(f"{'pos':>4}  {'token':<{width}}  weight  why")
    for i, r in enumerate(rows):
        print(f"{i:>4}  {r.token:<{width}}  {r.weight:6.3f}  {r.reason}".rstrip())
    note = f", {layout.truncated} BPE pieces truncated" if layout.truncated else ""
    print(f"# {weighting!r}; {len(rows)} tokens (max_tokens={args.max_tokens}){note}")
    return 0


def fit(args: argparse.Namespace) -> int:
    """Fits a TF-IDF artefact or builds an NER cache over a caption set."""
    from taco_plus.captions.format import CaptionFormatError
    from taco_plus.weighting import PipelineNotInstalledError, TfidfStatistics, load_corpus

    kind = args.weighting or "tfidf"
    if kind not in ("tfidf", "ner"):
        raise CLIError(f"fit builds a tfidf or ner artefact, not {kind!r}")
    if not args.captions or not args.out:
        raise CLIError("fit needs --captions SET.json and --out FILE")
    try:
        corpus = load_corpus(args.captions)
        try:
            if kind == "tfidf":
                stats = TfidfStatistics.fit(corpus)
                stats.save(args.out)
                what = f"{len(stats.idf)} terms"
            else:
                ner = _build_weighting(argparse.Namespace(**{**vars(args), "ner_cache": None}), "ner")
                ner.save_cache(args.out, corpus)
                what = f"entities of {len(set(corpus.captions))} distinct captions ({ner.pipeline})"
        except OSError as err:  # a failed write: name the output, not its temporary file
            raise CLIError(f"cannot write {args.out}: {err.strerror or err}") from None
    except (FileNotFoundError, CaptionFormatError, PipelineNotInstalledError, ValueError) as err:
        raise CLIError(str(err)) from err
    print(f"{args.out}: {kind} artefact, {what} from {len(corpus.captions)} captions "
          f"(caption set {corpus.fingerprint[:16]}…)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.caption is None:
        raise CLIError("give a caption to inspect, or `fit` to fit an artefact (see --help)")
    return fit(args) if args.caption == "fit" else inspect(args)


def register(subparsers: Any) -> None:
    from taco_plus.schemas import options

    p = subparsers.add_parser(
        "weights", help="inspect a caption's token weights, or fit a tf-idf/NER artefact",
        description="Inspect: taco-plus weights [options] CAPTION prints one row per CLIP token (token, weight, "
                    "why), with the weighting option as training composes it. Fit: taco-plus weights fit --captions "
                    "SET.json --out FILE [--weighting tfidf|ner]. A caption that is exactly 'fit' selects fitting.",
    )
    p.add_argument("caption", nargs="?", help="the caption to inspect, or 'fit'")
    p.add_argument("--weighting", choices=options("weighting"), default=None,
                   help="weighting option to inspect (default ner) or artefact to fit (tfidf or ner; default tfidf)")
    p.add_argument("--tfidf", metavar="ARTEFACT", help="tf-idf artefact (the options with one: tfidf, tfidf_ner ...)")
    p.add_argument("--ner-cache", metavar="FILE", help="NER cache artefact (optional)")
    p.add_argument("--pipeline", help="spaCy pipeline (default: the option's)")
    p.add_argument("--max-weight", type=float, help="largest weight (default: the option's)")
    p.add_argument("--max-tokens", type=_max_tokens, default=38, metavar="{38,77,chunked}",
                   help="token layout, as the text encoder uses it (default 38, TACO's)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per token")
    p.add_argument("--captions", metavar="SET.json", help="fit: caption set, plain mapping or COCO file")
    p.add_argument("--out", metavar="FILE", help="fit: where to write the artefact")
    p.set_defaults(func=run)
