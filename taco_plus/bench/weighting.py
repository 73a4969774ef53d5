"""Token-weighting throughput: captions per second for ner, tfidf and tfidf_ner.

``python -m taco_plus.bench.weighting`` weights every caption of the COCO debugging
subset (``../shared/data/coco_mini/annotations/captions_*.json``, 795 captions) and
prints a table. Each row starts cold: the BPE-alignment cache is cleared and a new
weighting is built, so spaCy runs on every caption; "ner (cache)" reads entities
from an NER cache artefact, as training does. The TF-IDF artefact is fitted on the
same captions in a temporary folder (fitting time is reported separately). Layouts
(``taco_plus.text.tokenizer.tokenize``) are built before timing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from taco_plus.weighting import (
    CaptionCorpus,
    NerWeighting,
    TfidfNerWeighting,
    TfidfStatistics,
    TfidfWeighting,
    TokenWeighting,
    load_corpus,
)
from taco_plus.weighting.alignment import align
from taco_plus.weighting.ner import EntityRecognizer

DEFAULT_GLOB = "captions_*.json"
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco_mini" / "annotations"


def merged_corpus(paths: Sequence[Path]) -> CaptionCorpus:
    """All captions of several caption files (fingerprints joined)."""
    corpora = [load_corpus(p) for p in paths]
    return CaptionCorpus(
        tuple(c for corpus in corpora for c in corpus.captions),
        "+".join(c.fingerprint for c in corpora),
        ", ".join(str(p) for p in paths),
    )


def time_weighting(
    build: Callable[[], TokenWeighting], captions: Sequence[str], max_tokens: object, batch_size: int
) -> float:
    """Seconds to weight every caption in batches, starting from cold caches."""
    from taco_plus.text.tokenizer import tokenize

    layouts = [tokenize(c, max_tokens) for c in captions]
    align.cache_clear()
    weighting = build()  # loads artefacts and the spaCy pipeline: not the per-caption cost
    if isinstance(weighting, (NerWeighting, TfidfNerWeighting)):
        ner = weighting if isinstance(weighting, NerWeighting) else weighting.ner
        ner.recognizer.nlp  # noqa: B018 - load the pipeline before timing
    start = time.perf_counter()
    for i in range(0, len(captions), batch_size):
        weighting.weights(layouts[i : i + batch_size], captions[i : i + batch_size])
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captions", nargs="*", type=Path, help="caption files (default: the COCO subset)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", default="77", help="38, 77 or chunked")
    args = parser.parse_args(argv)
    max_tokens = args.max_tokens if args.max_tokens == "chunked" else int(args.max_tokens)
    paths = args.captions or sorted(DEFAULT_DIR.glob(DEFAULT_GLOB))
    if not paths:
        parser.error(f"no caption files given and none found in {DEFAULT_DIR}")
    corpus = merged_corpus(paths)
    captions = list(corpus.captions)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stats = TfidfStatistics.fit(corpus)
        fit_s = time.perf_counter() - t0
        tfidf_path, ner_path = Path(tmp) / "tfidf.json", Path(tmp) / "ner.json"
        stats.save(tfidf_path)
        t0 = time.perf_counter()
        EntityRecognizer().save_cache(ner_path, corpus)
        cache_s = time.perf_counter() - t0

        rows = {
            "tfidf": lambda: TfidfWeighting(tfidf_path),
            "ner": lambda: NerWeighting(),
            "tfidf_ner": lambda: TfidfNerWeighting(tfidf_path),
            "ner (cache)": lambda: NerWeighting(cache=ner_path),
            "tfidf_ner (cache)": lambda: TfidfNerWeighting(tfidf_path, ner_cache=ner_path),
        }
        print(f"{len(captions)} captions from {len(paths)} file(s); max_tokens={max_tokens}, "
              f"batch {args.batch_size}")
        print(f"tf-idf fit: {fit_s:.2f} s ({len(stats.idf)} terms); NER cache build: {cache_s:.2f} s")
        print(f"| {'weighting':<18} | {'seconds':>8} | {'captions/s':>10} |")
        print(f"|{'-' * 20}|{'-' * 9}:|{'-' * 11}:|")
        for name, build in rows.items():
            seconds = time_weighting(build, captions, max_tokens, args.batch_size)
            print(f"| {name:<18} | {seconds:8.3f} | {len(captions) / seconds:10.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
