"""Token-weighting throughput: captions per second of tfidf, ner and tfidf_ner, from cold caches.

``python -m taco_plus.bench.weighting [CAPTION_FILES]`` (default: ``$TACO_DATA/coco_mini/annotations/
captions_*.json``, 795 captions); what each row measures: docs/weighting.md, "Throughput".
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from taco_plus.text.tokenizer import tokenize
from taco_plus.weighting import (CaptionCorpus, NerWeighting, TfidfNerWeighting, TfidfStatistics,
                                 TfidfWeighting, TokenWeighting, align, load_corpus)

DEFAULT_DIR = Path(os.environ.get("TACO_DATA", "data")) / "coco_mini" / "annotations"


def time_weighting(build: Callable[[], TokenWeighting], captions: Sequence[str], max_tokens: object,
                   batch_size: int) -> float:
    """Seconds to weight every caption in batches, starting from cold caches (layouts built before)."""
    layouts = [tokenize(c, max_tokens) for c in captions]
    align.cache_clear()
    weighting = build()  # loads artefacts and the spaCy pipeline: not the per-caption cost
    for part in (weighting, getattr(weighting, "ner", None)):
        if isinstance(part, NerWeighting):
            part.nlp  # noqa: B018 - load the pipeline before timing
    start = time.perf_counter()
    for i in range(0, len(captions), batch_size):
        weighting.weights(layouts[i : i + batch_size], captions[i : i + batch_size])
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captions", nargs="*", type=Path,
                        help=f"caption files (default: {DEFAULT_DIR}/captions_*.json)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", default="77", help="38, 77 or chunked")
    args = parser.parse_args(argv)
    max_tokens = args.max_tokens if args.max_tokens == "chunked" else int(args.max_tokens)
    paths = args.captions or sorted(DEFAULT_DIR.glob("captions_*.json"))
    if not paths:
        parser.error(f"no caption files given and none found in {DEFAULT_DIR} (set TACO_DATA)")
    corpora = [load_corpus(p) for p in paths]
    corpus = CaptionCorpus(tuple(c for k in corpora for c in k.captions),
                           "+".join(k.fingerprint for k in corpora), ", ".join(map(str, paths)))

    with tempfile.TemporaryDirectory() as tmp:
        tfidf, ner = Path(tmp) / "tfidf.json", Path(tmp) / "ner.json"
        t0 = time.perf_counter()
        stats = TfidfStatistics.fit(corpus)
        fit_s = time.perf_counter() - t0
        stats.save(tfidf)
        t0 = time.perf_counter()
        NerWeighting().save_cache(ner, corpus)
        cache_s = time.perf_counter() - t0
        rows = {"tfidf": lambda: TfidfWeighting(tfidf), "ner": lambda: NerWeighting(),
                "tfidf_ner": lambda: TfidfNerWeighting(tfidf), "ner (cache)": lambda: NerWeighting(cache=ner),
                "tfidf_ner (cache)": lambda: TfidfNerWeighting(tfidf, ner_cache=ner)}
        print(f"{len(corpus.captions)} captions from {len(paths)} file(s); max_tokens={max_tokens}, "
              f"batch {args.batch_size}")
        print(f"tf-idf fit: {fit_s:.2f} s ({len(stats.idf)} terms); NER cache build: {cache_s:.2f} s")
        print(f"| {'weighting':<18} | {'seconds':>8} | {'captions/s':>10} |")
        print(f"|{'-' * 20}|{'-' * 9}:|{'-' * 11}:|")
        for name, build in rows.items():
            seconds = time_weighting(build, corpus.captions, max_tokens, args.batch_size)
            print(f"| {name:<18} | {seconds:8.3f} | {len(corpus.captions) / seconds:10.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
