"""Token-weight examples for the report, computed by the weighting code itself.

Fits TF-IDF statistics on the human captions of the COCO train2017 sample (the stand-in
for the training captions; ``../shared/data/coco_mini``), runs the ``tfidf``, ``ner``
and ``tfidf_ner`` weightings (max weight 1.5, spaCy's English pipeline) on a few real
captions and stores every CLIP token's weight and reason
(:meth:`taco_plus.weighting.TokenWeighting.explain`) with the TF-IDF corpus's
fingerprint. The examples: Kodak's kodim23 (a number), kodim17 (garbled bytes),
the first captioned image of the COCO sample, and the quickstart's astronaut photo
(a nationality).

Usage::

    python -m taco_plus.experiments token-weights [--data ../shared/data] [--out experiments/results/weighting/token_weights.json]
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from taco_plus.experiments.paths import REPO_ROOT, SHARED_DIR, relative_to_repo
from taco_plus.results.provenance import git_commit

FORMAT = "taco-plus/token-weight-examples"
MAX_WEIGHT = 1.5
TFIDF_CORPUS = "coco_mini/annotations/captions_train2017.json"
# (caption file, relative to the data folder or the repository; image id or None = first id)
EXAMPLES = (
    ("data", "captions/kodak_ofa.json", "kodim23.png"),
    ("data", "captions/kodak_ofa.json", "kodim17.png"),
    ("data", TFIDF_CORPUS, None),
    ("repo", "captions/skimage_quickstart.json", "astronaut.png"),
)
WEIGHTINGS = ("tfidf", "ner", "tfidf_ner")


def compute(data_dir: Path = SHARED_DIR / "data") -> dict[str, Any]:
    """Runs the three weightings on :data:`EXAMPLES`; returns the JSON record."""
    from taco_plus.weighting import NerWeighting, TfidfNerWeighting, TfidfStatistics, TfidfWeighting, load_corpus
    from taco_plus.weighting.corpus import open_caption_source
    from taco_plus.weighting.ner import installed_version

    corpus_path = data_dir / TFIDF_CORPUS
    if not corpus_path.is_file():
        raise FileNotFoundError(f"TF-IDF corpus not found: {corpus_path} (set --data to the folder holding coco_mini/)")
    stats = TfidfStatistics.fit(load_corpus(corpus_path))
    ner = NerWeighting(max_weight=MAX_WEIGHT)
    weightings = {
        "tfidf": TfidfWeighting(stats, max_weight=MAX_WEIGHT),
        "ner": ner,
        "tfidf_ner": TfidfNerWeighting(stats, max_weight=MAX_WEIGHT),
    }
    examples = []
    for root, rel, image_id in EXAMPLES:
        path = (data_dir if root == "data" else REPO_ROOT) / rel
        source = open_caption_source(path)
        image_id = image_id or source.ids()[0]
        caption = source.captions(image_id)[0]
        rows = {
            name: [{"token": r.token, "weight": round(float(r.weight), 4), "reason": r.reason, "special": r.special}
                   for r in w.explain(caption)]
            for name, w in weightings.items()
        }
        examples.append({"source": relative_to_repo(path), "id": image_id, "caption": caption, "weights": rows})
    pipeline = ner.recognizer.pipeline
    return {
        "format": FORMAT,
        "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "command": "python -m taco_plus.experiments token-weights",
        "max_weight": MAX_WEIGHT,
        "mode": "attention",
        "tfidf": {"fitted_on": relative_to_repo(corpus_path), "fingerprint": stats.fingerprint,
                  "num_documents": stats.num_documents},
        "ner": {"pipeline": pipeline, "pipeline_version": installed_version(pipeline)},
        "examples": examples,
    }


def main_token_weights(args: Any) -> int:
    record = compute(Path(args.data))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for ex in record["examples"]:
        print(f"{ex['id']}: {ex['caption'][:70]}")
        for name in WEIGHTINGS:
            boosted = [f"{r['token']}={r['weight']:.2f}" for r in ex["weights"][name] if r["weight"] > 1]
            print(f"  {name:9s} {' '.join(boosted) or '(all 1.0)'}")
    print(f"wrote {out}")
    return 0
