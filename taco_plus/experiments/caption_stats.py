"""Caption-set statistics for the report: original captions vs regenerated ones.

Computes :func:`taco_plus.captions.stats.caption_stats` (words and CLIP tokens per
caption, share over TACO's 38 and CLIP's 77 tokens) of the original caption files --
TACO's OFA captions of Kodak and CLIC, the human COCO captions of the COCO sample --
read from ``../shared/data`` (never copied into the repository), and of every
regenerated caption set the ablation configs name, when it exists. A set that does
not exist is recorded as not run, with the command that makes it. The registry keeps
the statistics, file sha256 and caption fingerprint, not the captions.

Usage::

    python -m taco_plus.experiments caption-stats [--data ../shared/data] [--out experiments/results/captions/caption_stats.json]
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from taco_plus.experiments.paths import REPO_ROOT, SHARED_DIR, relative_to_repo
from taco_plus.results.provenance import file_sha256, git_commit

FORMAT = "taco-plus/caption-stats"

# (key, label, path under the data folder, kind)
ORIGINALS = (
    ("kodak_ofa", "Kodak, OFA (TACO)", "captions/kodak_ofa.json", "original"),
    ("clic_ofa", "CLIC 2020, OFA (TACO)", "captions/clic_ofa.json", "original"),
    ("coco_train2017_sample", "COCO train2017 sample, human", "coco_mini/annotations/captions_train2017.json", "original"),
    ("coco_val2017_sample", "COCO val2017 sample, human", "coco_mini/annotations/captions_val2017.json", "original"),
)
# Regenerated sets named by configs/captions/*_detailed_v1.yaml, and how to make them.
REGENERATED = (
    ("kodak_detailed_v1", "Kodak, GPT-4o detailed_scene_v1", "captions/regenerated/kodak_detailed_v1.json",
     "taco-plus captions regenerate --images $TACO_DATA/kodak --out captions/regenerated/kodak_detailed_v1.json"),
    ("coco_train2014_detailed_v1", "COCO train2014, GPT-4o detailed_scene_v1",
     "captions/regenerated/coco_train2014_detailed_v1.json",
     "taco-plus captions regenerate --images $TACO_DATA/coco/train2014 --mode batch "
     "--out captions/regenerated/coco_train2014_detailed_v1.json"),
)
NOT_RUN_REASON = "not run: needs the OpenAI API (caption regeneration)"


def open_caption_file(path: Path):
    """A caption set or plain caption JSON (``CaptionSetSource``), or an official COCO
    captions file (``CocoCaptionsSource``), told apart by its keys."""
    from taco_plus.captions.format import read_json
    from taco_plus.captions.sources import CaptionSetSource, CocoCaptionsSource

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    data = read_json(path)
    is_coco = isinstance(data, dict) and "annotations" in data and "images" in data
    return CocoCaptionsSource(path) if is_coco else CaptionSetSource(path)


def set_stats(path: Path) -> dict[str, Any]:
    """Statistics, sha256 and caption fingerprint of one caption file (any accepted format)."""
    from taco_plus.captions.stats import caption_stats

    source = open_caption_file(path)
    captions = {i: source.captions(i) for i in source.ids()}
    return {
        "path": relative_to_repo(path),
        "sha256": file_sha256(path),
        "fingerprint": source.fingerprint,
        "stats": caption_stats(captions),
    }


def compute(data_dir: Path = SHARED_DIR / "data", repo_root: Path = REPO_ROOT) -> dict[str, Any]:
    """Statistics of every original set found under ``data_dir`` and every regenerated set."""
    sets: dict[str, Any] = {}
    for key, label, rel, kind in ORIGINALS:
        path = data_dir / rel
        if not path.is_file():
            raise FileNotFoundError(f"original caption file not found: {path} (set --data to the folder with "
                                    "captions/kodak_ofa.json, captions/clic_ofa.json and coco_mini/)")
        sets[key] = {"label": label, "kind": kind, "status": "ok", **set_stats(path)}
    for key, label, rel, command in REGENERATED:
        path = repo_root / rel
        entry: dict[str, Any] = {"label": label, "kind": "regenerated", "path": rel, "command": command}
        if path.is_file():
            entry.update(status="ok", **set_stats(path))
        else:
            entry.update(status="not_run", reason=NOT_RUN_REASON)
        sets[key] = entry
    return {
        "format": FORMAT,
        "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "command": "python -m taco_plus.experiments caption-stats",
        "data_dir": relative_to_repo(data_dir),
        "sets": sets,
    }


def write(record: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def main_caption_stats(args: Any) -> int:
    record = compute(Path(args.data))
    out = write(record, Path(args.out))
    for key, s in record["sets"].items():
        if s["status"] == "ok":
            t = s["stats"]
            print(f"{key:28s} {t['num_captions']:5d} captions, {t['clip_tokens_per_caption']['mean']:6.1f} tokens, "
                  f">38: {100 * t['share_over_38_tokens']:5.1f}%, >77: {100 * t['share_over_77_tokens']:5.1f}%")
        else:
            print(f"{key:28s} {s['reason']}")
    print(f"wrote {out}")
    return 0
