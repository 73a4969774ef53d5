"""The results registry (``experiments/results/<run>/``): :func:`record_run` copies evaluation folders with their
configs and provenance, merged into one curve (docs/experiments.md, "The results registry")."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import yaml

from taco_plus.atomic import file_sha256
from taco_plus.results.format import load_results, merge_results, save_results
from taco_plus.results.per_image import read_per_image_csv
from taco_plus.results.provenance import git_commit

logger = logging.getLogger(__name__)

RESULTS_DIR = Path("experiments/results")  # the registry of this checkout (commands run from its root)
RUN_FORMAT = "taco-plus/recorded-run"
RESERVED = ("bench",)  # registry folders holding measurements, not runs


class RecordError(ValueError):
    """The folder cannot be recorded; the message says what is missing."""


class MissingResultError(FileNotFoundError):
    """A file a table, figure or comparison is made from is missing; the message names it."""


def require(path: Path, made_by: str = "python -m taco_plus.experiments record") -> Path:  # the path, existing
    if not Path(path).is_file():
        raise MissingResultError(f"missing result file: {path}; it is written by `{made_by}`")
    return Path(path)


def relative(path: str | os.PathLike) -> str:  # relative to the working directory (the checkout), POSIX style
    return Path(os.path.relpath(Path(path).resolve())).as_posix()


@dataclass
class RecordedRun:
    """A run of the results registry: its RD curve (seed means) and provenance (per rate point and seed)."""

    name: str
    path: Path
    results: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def dataset(self) -> str:
        return str(self.provenance.get("dataset") or "unknown")

    @property
    def labels(self) -> list[str]:
        """Point labels (the training folders, ``lmbda_<λ>[_seed<S>]``) in bpp order."""
        return [p["label"] for p in sorted(self.provenance["points"], key=lambda p: p["bpp"][0])]

    def seed_curves(self) -> dict[Any, dict[str, Any]]:
        """One curve per training seed, from its points' own results files."""
        by_seed: dict[Any, list] = {}
        for p in self.provenance["points"]:
            by_seed.setdefault(p["seed"], []).append(load_results(self.path / "points" / p["label"] / "results.json"))
        return {seed: merge_results(sources, f"{self.name} seed {seed}") for seed, sources in by_seed.items()}

    def image_ids(self) -> frozenset[str]:
        """The evaluated images (every point's ``per_image.csv``)."""
        return frozenset(r["id"] for label in self.labels
                         for r in read_per_image_csv(self.path / "points" / label / "per_image.csv"))

    def files(self) -> list[Path]:
        """Every file of the run a table reads (the registry's own list, each required to exist)."""
        return [require(self.path / rel) for rel in sorted(self.provenance.get("files", {}))]


def recorded(root: Path = RESULTS_DIR) -> list[str]:  # names of the runs recorded in root, sorted
    return sorted(p.name for p in Path(root).glob("*")
                  if p.is_dir() and p.name not in RESERVED and not p.name.startswith("."))


def load_recorded(name: str, root: Path = RESULTS_DIR) -> RecordedRun:
    """A recorded run; :class:`MissingResultError` naming the file when one is missing."""
    path = Path(root) / name
    if not path.is_dir():
        raise MissingResultError(f"run {name!r} is not recorded ({path} does not exist); record it with "
                                 f"`python -m taco_plus.experiments record RUN_DIR --name {name}`")
    provenance = json.loads(require(path / "provenance.json").read_text(encoding="utf-8"))
    if provenance.get("format") != RUN_FORMAT:
        raise ValueError(f"{path / 'provenance.json'}: not a recorded-run provenance file")
    run = RecordedRun(name, path, load_results(require(path / "results.json")), provenance)
    for label in run.labels:
        require(path / "points" / label / "per_image.csv")
    return run


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def _caption_set(folder: Path, results: dict, configs: dict[str, Optional[dict]], caption_set: Optional[Path]) -> dict:
    """A point's caption set and fingerprint: from its results, ``--caption-set`` or its configs."""
    from hydra.utils import instantiate

    from taco_plus.captions.sources import open_caption_source

    recorded_set = (results.get("meta") or {}).get("caption_set") or {}
    if recorded_set.get("fingerprint"):
        return {"source": recorded_set.get("source"), "fingerprint": recorded_set["fingerprint"], "from": "results meta"}
    if caption_set is not None:
        if not caption_set.is_file():
            raise RecordError(f"caption file not found: {caption_set}")
        return {"source": relative(caption_set), "fingerprint": open_caption_source(caption_set).fingerprint,
                "from": "--caption-set"}
    for where, config in configs.items():
        node = (config or {}).get("captions")
        if isinstance(node, dict) and node.get("_target_"):
            try:
                source = instantiate(node)
            except Exception as err:  # noqa: BLE001 - any failure means: cannot tell
                raise RecordError(f"{folder}: cannot open the caption set of its {where} ({err}); "
                                  "pass --caption-set FILE") from err
            return {"source": repr(source), "fingerprint": source.fingerprint, "from": where}
    raise RecordError(f"{folder}: cannot tell which caption set produced it; pass --caption-set FILE")


def _record_point(folder: Path, dest_root: Path, labels: set[str], caption_set: Optional[Path]) -> dict[str, Any]:
    """Copies one evaluated point into ``dest_root/<label>``; returns its provenance entry."""
    results = load_results(folder / "results.json")
    meta = results.get("meta") or {}
    checkpoint = Path(meta.get("checkpoint") or "")
    if checkpoint.parent.name == "checkpoints" and checkpoint.parent.parent.is_dir():
        train_dir: Optional[Path] = checkpoint.parent.parent  # <run>/checkpoints/x.pt -> <run>
    else:  # the demo keeps training and evaluation in one folder
        train_dir = folder if (folder / "config.yaml").is_file() and (folder / "train_log.csv").is_file() else None
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", train_dir.name if train_dir and train_dir != folder
                   else folder.name).strip("._") or "point"
    label = f"{label}_{folder.name}" if label in labels else label
    eval_config = _yaml(folder / ".hydra" / "config.yaml") or (  # else the one of a run outside Hydra (demo, jobs)
        meta["config"] if isinstance(meta.get("config"), dict) else None)
    train_config = _yaml(train_dir / "config.yaml") if train_dir else None
    if eval_config is None and train_config is None:
        raise RecordError(f"{folder}: no config found (.hydra/config.yaml, config in results.json, "
                          "or the training run's config.yaml)")
    dest = dest_root / label
    dest.mkdir(parents=True)
    read_per_image_csv(folder / "per_image.csv")  # validates (raises naming the file)
    shutil.copy2(folder / "per_image.csv", dest / "per_image.csv")
    save_results(results, dest / "results.json")
    if eval_config is not None:
        (dest / "eval_config.yaml").write_text(yaml.safe_dump(eval_config, sort_keys=False, allow_unicode=True),
                                               encoding="utf-8")
    if train_config is not None:
        shutil.copy2(train_dir / "config.yaml", dest / "train_config.yaml")
        if (train_dir / "train_log.csv").is_file():
            shutil.copy2(train_dir / "train_log.csv", dest / "train_log.csv")
    if (folder / "sensitivity" / "sensitivity.csv").is_file():  # tables, and each mode's CSV and results
        shutil.copytree(folder / "sensitivity", dest / "sensitivity",
                        ignore=shutil.ignore_patterns("bitstreams", "eval_state.json", "fid_state.pt"))
    env = meta.get("environment") or {}
    if env.get("git_commit") is None:
        logger.warning("%s: the results do not say which git commit produced them", folder)
    hydra = _yaml(folder / ".hydra" / "hydra.yaml") or {}
    return {
        "label": label, "source": relative(folder), "lambda": ((train_config or {}).get("loss") or {}).get("lmbda"),
        "seed": ((train_config or {}).get("trainer") or {}).get("seed"),
        "bpp": results["results"]["bpp"], "git_commit": env.get("git_commit"), "evaluated": env.get("created"),
        "device": env.get("device"), "checkpoint": relative(meta["checkpoint"]) if meta.get("checkpoint") else None,
        "checkpoint_sha256": meta.get("checkpoint_sha256"), "model_fingerprint": meta.get("model_fingerprint"),
        "random_init": bool(meta.get("random_init", False)), "caption_mode": meta.get("caption_mode"),
        "caption_set": _caption_set(folder, results, {"evaluation config": eval_config,
                                                      "training config": train_config}, caption_set),
        "dataset": ((hydra.get("hydra") or {}).get("runtime") or {}).get("choices", {}).get("data"),
    }


def record_run(source: str | Path, name: str, root: Path = RESULTS_DIR, *, title: Optional[str] = None,
               dataset: Optional[str] = None, caption_set: Optional[str | Path] = None, force: bool = False,
               command: Optional[str] = None) -> Path:
    """Adds the evaluation folder ``source`` (or a sweep folder of them) to run ``name`` of the registry ``root``
    (concurrent recordings take turns); returns its folder. The arguments are ``record``'s options."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name) or name in RESERVED:
        raise RecordError(f"run name must be lower-case letters, digits and '_' and not one of {RESERVED}: {name!r}")
    source, root = Path(source), Path(root)
    final = root / name
    if not source.is_dir():
        raise RecordError(f"not a folder: {source}")
    folders = [source] if (source / "results.json").is_file() else \
        sorted(p for p in source.iterdir() if (p / "results.json").is_file())
    if not folders:
        raise RecordError(f"no results.json in {source} or its subfolders: is it an evaluation folder?")
    root.mkdir(parents=True, exist_ok=True)
    lock = os.open(root, os.O_RDONLY)  # the registry folder itself is the lock: nothing left behind
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads((final / "provenance.json").read_text(encoding="utf-8")) if final.is_dir() else {}
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            entries: list[dict[str, Any]] = []
            for folder in folders:
                entries.append(_record_point(folder, tmp / "points", {e["label"] for e in entries},
                                             Path(caption_set) if caption_set else None))
            clash = sorted({e["label"] for e in entries} & {e["label"] for e in old.get("points", [])})
            if clash and not force:
                raise RecordError(f"{final}: points {clash} are already recorded; pass --force to replace them")
            datasets = ({dataset} if dataset else {e["dataset"] for e in entries if e["dataset"]}) | \
                ({old["dataset"]} if old else set())
            if len(datasets) != 1:
                raise RecordError(f"the points were evaluated on different datasets {sorted(datasets)}" if datasets
                                  else "cannot tell the evaluation dataset (not a Hydra run); pass --dataset NAME "
                                       "(e.g. kodak)")
            for entry in [e for e in old.get("points", []) if e["label"] not in clash]:  # the points kept
                shutil.copytree(final / "points" / entry["label"], tmp / "points" / entry["label"])
                entries.append(entry)
            entries.sort(key=lambda e: e["bpp"][0])
            sources = [load_results(tmp / "points" / e["label"] / "results.json") for e in entries]
            groups = [f"lmbda_{float(e['lambda'])!r}" if e["lambda"] is not None else e["label"] for e in entries]
            merged = merge_results(sources, title or (old and load_results(final / "results.json")["name"]) or name,
                                   f"recorded from {relative(source)}", groups)  # the seeds of a λ: one point
            save_results(merged, tmp / "results.json")
            provenance = {
                "format": RUN_FORMAT, "format_version": 1, "name": name, "dataset": datasets.pop(),
                "recorded": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "git_commit": git_commit(), "source": relative(source),
                             "command": command or f"python -m taco_plus.experiments record {relative(source)} --name {name}"},
                "git_commits": sorted({e["git_commit"] for e in entries if e["git_commit"]}),
                "caption_set_fingerprints": sorted({e["caption_set"]["fingerprint"] for e in entries}),
                "points": entries,
                "files": {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
            }
            (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        os.close(lock)  # releases the lock
    return final
