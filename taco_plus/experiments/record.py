"""Recording a finished evaluation into the results registry, with its provenance.

``python -m taco_plus.experiments record RUN_DIR --name NAME`` accepts

* an evaluation folder (``results.json`` + ``per_image.csv``, from
  ``python -m taco_plus.evaluate`` or the quickstart demo): one rate point;
* a folder of such folders (``python -m taco_plus.evaluate -m ...`` sweep, one
  subfolder per checkpoint): one point each, merged into one curve sorted by bpp.

For each point it copies the results, the per-image CSV, the caption-sensitivity
tables, the evaluation config (``.hydra/config.yaml`` or the one embedded in
``results.json``), and -- following the evaluated checkpoint back to its training run
folder -- the training config and log. ``provenance.json`` states, per point, the
git commit of the code, the caption set's fingerprint, the checkpoint's path and
sha256 and the model fingerprint, plus the sha256 of every recorded file. A point
whose caption set cannot be determined is refused (``--caption-set FILE`` names it).
The new run folder appears atomically (written beside, then renamed).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import yaml

from taco_plus.experiments.caption_stats import open_caption_file
from taco_plus.experiments.paths import relative_to_repo
from taco_plus.experiments.store import RESERVED, RUN_FORMAT, ResultsRegistry
from taco_plus.results.format import load_results, merge_results, save_results
from taco_plus.results.per_image import read_per_image_csv
from taco_plus.results.provenance import file_sha256, git_commit

logger = logging.getLogger(__name__)

SENSITIVITY_FILES = ("sensitivity.csv", "sensitivity.md")


class RecordError(ValueError):
    """The folder cannot be recorded; the message says what is missing."""


@dataclass
class Point:
    """One evaluated rate point found in the source folder."""

    label: str
    folder: Path
    results: dict[str, Any]
    eval_config: Optional[dict[str, Any]]
    train_dir: Optional[Path]  # the training run folder of the evaluated checkpoint
    hydra_choices: dict[str, str]


def find_points(source: Path) -> list[Point]:
    """The evaluated points in ``source`` (itself, or its immediate subfolders)."""
    if not source.is_dir():
        raise RecordError(f"not a folder: {source}")
    if (source / "results.json").is_file():
        folders = [source]
    else:
        folders = sorted(p for p in source.iterdir() if (p / "results.json").is_file())
    if not folders:
        raise RecordError(f"no results.json in {source} or its subfolders: is it an evaluation folder?")
    points, labels = [], set()
    for folder in folders:
        results = load_results(folder / "results.json")
        meta = results.get("meta") or {}
        train_dir = _train_dir(folder, meta)
        label = _label(train_dir.name if train_dir and train_dir != folder else folder.name)
        if label in labels:
            label = _label(f"{label}_{folder.name}")
        labels.add(label)
        points.append(Point(label, folder, results, _eval_config(folder, meta), train_dir, _choices(folder)))
    return points


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "point"


def _train_dir(folder: Path, meta: dict[str, Any]) -> Optional[Path]:
    """The training run folder: ``<run>/checkpoints/x.pt`` -> ``<run>``; the demo keeps
    training and evaluation in one folder (``config.yaml`` beside ``results.json``)."""
    checkpoint = meta.get("checkpoint")
    if checkpoint:
        path = Path(checkpoint)
        if path.parent.name == "checkpoints" and path.parent.parent.is_dir():
            return path.parent.parent
    if (folder / "config.yaml").is_file() and (folder / "train_log.csv").is_file():
        return folder
    return None


def _eval_config(folder: Path, meta: dict[str, Any]) -> Optional[dict[str, Any]]:
    hydra_config = folder / ".hydra" / "config.yaml"
    if hydra_config.is_file():
        return yaml.safe_load(hydra_config.read_text(encoding="utf-8"))
    config = meta.get("config")
    return config if isinstance(config, dict) else None


def _choices(folder: Path) -> dict[str, str]:
    """Hydra's group choices of the evaluation (``data: kodak``), when it ran under Hydra."""
    path = folder / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in ((data.get("hydra") or {}).get("runtime") or {}).get("choices", {}).items()}


def _caption_set(point: Point, train_config: Optional[dict], caption_set: Optional[Path]) -> dict[str, Any]:
    """Where the evaluation's captions came from and their fingerprint."""
    recorded = (point.results.get("meta") or {}).get("caption_set") or {}
    if recorded.get("fingerprint"):
        return {"source": recorded.get("source"), "fingerprint": recorded["fingerprint"], "from": "results meta"}
    if caption_set is not None:
        if not caption_set.is_file():
            raise RecordError(f"caption file not found: {caption_set}")
        source = open_caption_file(caption_set)
        return {"source": relative_to_repo(caption_set), "fingerprint": source.fingerprint, "from": "--caption-set"}
    for where, config in (("evaluation config", point.eval_config), ("training config", train_config)):
        node = (config or {}).get("captions")
        if isinstance(node, dict) and node.get("_target_"):
            from hydra.utils import instantiate

            try:
                source = instantiate(node)
            except Exception as err:  # noqa: BLE001 - any failure means: cannot tell
                raise RecordError(f"{point.folder}: cannot open the caption set of its {where} ({err}); "
                                  "pass --caption-set FILE") from err
            return {"source": repr(source), "fingerprint": source.fingerprint, "from": where}
    raise RecordError(f"{point.folder}: cannot tell which caption set produced it; pass --caption-set FILE")


def _copy_point(point: Point, dest: Path, caption_set: Optional[Path]) -> dict[str, Any]:
    """Copies one point's files into ``dest``; returns its provenance entry."""
    dest.mkdir(parents=True)
    read_per_image_csv(point.folder / "per_image.csv")  # validates (raises naming the file)
    shutil.copy2(point.folder / "per_image.csv", dest / "per_image.csv")
    save_results(point.results, dest / "results.json")
    if point.eval_config is not None:
        _write_yaml(point.eval_config, dest / "eval_config.yaml")
    train_config = None
    if point.train_dir is not None and (point.train_dir / "config.yaml").is_file():
        train_config = yaml.safe_load((point.train_dir / "config.yaml").read_text(encoding="utf-8"))
        shutil.copy2(point.train_dir / "config.yaml", dest / "train_config.yaml")
        if (point.train_dir / "train_log.csv").is_file():
            shutil.copy2(point.train_dir / "train_log.csv", dest / "train_log.csv")
    if point.eval_config is None and train_config is None:
        raise RecordError(f"{point.folder}: no config found (.hydra/config.yaml, config in results.json, "
                          "or the training run's config.yaml)")
    sensitivity = point.folder / "sensitivity"
    if (sensitivity / "sensitivity.csv").is_file():
        for name in SENSITIVITY_FILES:
            if (sensitivity / name).is_file():
                (dest / "sensitivity").mkdir(exist_ok=True)
                shutil.copy2(sensitivity / name, dest / "sensitivity" / name)
        for mode_dir in sorted(p for p in sensitivity.iterdir() if p.is_dir()):
            for name in ("per_image.csv", "results.json"):
                if (mode_dir / name).is_file():
                    (dest / "sensitivity" / mode_dir.name).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(mode_dir / name, dest / "sensitivity" / mode_dir.name / name)

    meta = point.results.get("meta") or {}
    env = meta.get("environment") or {}
    lmbda = ((train_config or {}).get("loss") or {}).get("lmbda")
    entry = {
        "label": point.label,
        "source": relative_to_repo(point.folder),
        "lambda": lmbda,
        "bpp": point.results["results"]["bpp"],
        "git_commit": env.get("git_commit"),
        "evaluated": env.get("created"),
        "device": env.get("device"),
        "checkpoint": relative_to_repo(meta["checkpoint"]) if meta.get("checkpoint") else None,
        "checkpoint_sha256": meta.get("checkpoint_sha256"),
        "model_fingerprint": meta.get("model_fingerprint"),
        "random_init": bool(meta.get("random_init", False)),
        "caption_mode": meta.get("caption_mode"),
        "caption_set": _caption_set(point, train_config, caption_set),
        "dataset": point.hydra_choices.get("data"),
    }
    if entry["git_commit"] is None:
        logger.warning("%s: the results do not say which git commit produced them", point.folder)
    return entry


def _write_yaml(data: Any, path: Path) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _dataset(points: list[dict[str, Any]], given: Optional[str]) -> str:
    if given:
        return given
    names = {p["dataset"] for p in points if p["dataset"]}
    if len(names) > 1:
        raise RecordError(f"the points were evaluated on different datasets {sorted(names)}")
    if not names:
        raise RecordError("cannot tell the evaluation dataset (not a Hydra run); pass --dataset NAME (e.g. kodak)")
    return names.pop()


def record_run(
    source: str | Path,
    name: str,
    registry: ResultsRegistry,
    *,
    title: Optional[str] = None,
    dataset: Optional[str] = None,
    caption_set: Optional[str | Path] = None,
    force: bool = False,
    command: Optional[str] = None,
) -> Path:
    """Records the evaluation(s) in ``source`` as run ``name``; returns the run folder.

    Args:
        source: an evaluation folder or a sweep folder of them.
        name: run name (a registry entry's name, or any new one).
        registry: the results registry to write into.
        title: curve name in ``results.json`` (default: ``name``).
        dataset: evaluation dataset label (default: Hydra's ``data`` choice).
        caption_set: caption file the points were evaluated with, when the results do
            not record its fingerprint.
        force: replace an existing record of ``name``.
        command: the command line, for the provenance.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name) or name in RESERVED:
        raise RecordError(f"run name must be lower-case letters, digits and '_' and not one of {RESERVED}: {name!r}")
    source = Path(source)
    final = registry.run_dir(name)
    if final.exists() and not force:
        raise RecordError(f"{final} already exists; pass --force to replace it")
    points = find_points(source)
    registry.root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=registry.root))
    try:
        entries = [_copy_point(p, tmp / "points" / p.label, Path(caption_set) if caption_set else None)
                   for p in points]
        merged = merge_results([p.results for p in points], title or name,
                               f"recorded from {relative_to_repo(source)}")
        save_results(merged, tmp / "results.json")
        provenance = {
            "format": RUN_FORMAT,
            "format_version": 1,
            "name": name,
            "dataset": _dataset(entries, dataset),
            "recorded": {
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "git_commit": git_commit(),
                "command": command or f"python -m taco_plus.experiments record {relative_to_repo(source)} --name {name}",
                "source": relative_to_repo(source),
            },
            "git_commits": sorted({e["git_commit"] for e in entries if e["git_commit"]}),
            "caption_set_fingerprints": sorted({e["caption_set"]["fingerprint"] for e in entries}),
            "points": entries,
        }
        provenance["files"] = {
            p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def main_record(args: Any) -> int:
    """``record`` subcommand (argparse namespace from ``taco_plus.experiments.__main__``)."""
    path = record_run(args.run_dir, args.name, ResultsRegistry(args.registry), title=args.title,
                      dataset=args.dataset, caption_set=args.caption_set, force=args.force,
                      command="python -m taco_plus.experiments " + " ".join(sys.argv[1:]))
    provenance = json.loads((path / "provenance.json").read_text(encoding="utf-8"))
    print(f"recorded {len(provenance['points'])} point(s) of {args.name!r} ({provenance['dataset']}) in {path}")
    for p in provenance["points"]:
        print(f"  {p['label']}: bpp {p['bpp'][0]:.4f}, commit {p['git_commit']}, "
              f"captions {p['caption_set']['fingerprint'][:12]}")
    return 0
