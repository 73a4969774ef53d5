"""``regenerate(cfg)``: collect the images, open (or resume) the journal, caption what is missing, write the
caption set from the journal; or estimate the cost from the image headers (docs/captions.md)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from taco_plus.atomic import file_sha256
from taco_plus.captions.checks import find_problems
from taco_plus.captions.format import Provenance, build_caption_set, save_caption_set
from taco_plus.captions.regenerate.batch import BatchRunner, parse_results, write_request_files
from taco_plus.captions.regenerate.config import PromptTemplate, RegenerateConfig, RegenerateError, load_prompt
from taco_plus.captions.regenerate.journal import open_journal, read_journal
from taco_plus.captions.regenerate.online import OnlineRunner
from taco_plus.captions.regenerate.runner import (UNREADABLE, Job, build_request, collect_jobs, prompt_text,
                                                  public_base_url, read_api_key, request_signature)

SOURCE = "regenerated with taco-plus captions regenerate"
PRICES_FILE = Path(__file__).with_name("prices.json")


@dataclass
class RegenerateReport:
    """What a run did (``missing``: image id -> why), or a dry run's ``estimate`` and ``request_files``."""

    out: Optional[Path]
    journal: Path
    total: int
    captioned: int = 0
    already_done: int = 0
    missing: dict = field(default_factory=dict)
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimate: Optional[dict] = None
    request_files: list = field(default_factory=list)

    def summary(self) -> str:
        if self.estimate is not None:
            e, files = self.estimate, ", ".join(map(str, self.request_files)) or "none (--write-requests writes them)"
            lines = [f"dry run: {e['requests']:,} requests ({self.already_done:,} of {self.total:,} images already "
                     f"captioned in {self.journal})", f"requests:              {e['requests']:,}",
                     f"input tokens (est.):   {e['input_tokens']:,}",
                     f"output tokens (est.):  {e['output_tokens']:,} expected, at most {e['max_output_tokens']:,}"]
            usd = [f"cost {mode:6} ({e['model']}): ${expected:,.2f} expected, at most ${most:,.2f}"
                   for mode, (expected, most) in e["usd"].items()]
            lines += usd or [f"cost: no price for model {e['model']!r} (add it to a --prices file)"]
            lines += [f"batch request files: {files}"] + [f"skipped {i}: {why}" for i, why in self.missing.items()]
            return "\n".join(lines)
        lines = [f"captioned {self.captioned}/{self.total} images ({self.already_done} from earlier runs); "
                 f"{self.retried} retries; tokens this run: {self.prompt_tokens:,} in, {self.completion_tokens:,} out",
                 f"caption set: {self.out}" if self.out else "caption set: not written (no captions yet)"]
        if self.missing:
            lines += [f"{len(self.missing)} images without a caption (re-run with --resume to retry them):",
                      *(f"  {image_id}: {reason}" for image_id, reason in self.missing.items())]
        return "\n".join(lines)


def regenerate(cfg: RegenerateConfig) -> RegenerateReport:
    """Runs caption regeneration as configured by ``cfg`` (see the module docstring)."""
    prompt = load_prompt(cfg.prompt)
    all_jobs = collect_jobs(cfg)
    signature = request_signature(cfg, prompt, all_jobs)
    jobs = all_jobs[: cfg.limit]
    if prompt.expected_words(cfg.target_words) < cfg.min_words:
        raise RegenerateError(f"the prompt asks for about {prompt.expected_words(cfg.target_words)} words but "
                              f"answers under --min-words {cfg.min_words} are rejected; lower --min-words")
    if cfg.dry_run or cfg.write_requests:
        return plan(cfg, prompt, jobs)
    api_key = None if cfg.results else read_api_key(cfg.api_key_env)
    if cfg.out.exists() and not cfg.journal_path.exists():
        raise RegenerateError(f"{cfg.out} exists and has no journal beside it; refusing to overwrite it")
    with open_journal(cfg.journal_path, signature, cfg.resume) as journal:
        todo = [j for j in jobs if j.image_id not in journal.captions]
        kind = BatchRunner if cfg.results or cfg.mode == "batch" else OnlineRunner
        runner = kind(cfg, journal, prompt, len(todo), api_key)
        try:
            if cfg.results:
                results = {k: v for path in cfg.results for k, v in parse_results(path.read_bytes()).items()}
                runner.merge(results, [j.image_id for j in todo if j.image_id in results], "the result files",
                             results_files=[p.name for p in cfg.results])
            elif todo:
                runner.run(todo)
        finally:
            runner.bar.close()
    report = RegenerateReport(
        out=None, journal=cfg.journal_path, total=len(jobs), already_done=len(jobs) - len(todo),
        captioned=sum(j.image_id in journal.captions for j in jobs), retried=runner.retried,
        prompt_tokens=runner.prompt_tokens, completion_tokens=runner.completion_tokens,
        missing={j.image_id: journal.failures.get(j.image_id, {}).get("reason", "not attempted")
                 for j in jobs if j.image_id not in journal.captions})
    records = {j.image_id: journal.captions[j.image_id] for j in jobs if j.image_id in journal.captions}
    if records:  # the caption set, from the journal
        issues = find_problems({k: [r["caption"]] for k, r in records.items()})
        for image_id in (k for k, r in records.items() if r.get("finish_reason") == "length"):
            issues.setdefault(image_id, []).append("answer cut off at max_tokens (finish_reason=length)")
        parameters = {k: v for k, v in signature.items() if k not in ("model", "prompt_sha256")}
        parameters["modes"] = sorted({r.get("mode", "online") for r in records.values()})
        parameters["base_url"] = public_base_url(cfg.base_url) or "https://api.openai.com/v1"
        provenance = Provenance(
            source=SOURCE, model=cfg.model, parameters=parameters, prompt={
                "file": prompt.path.name, "sha256": prompt.sha256, "name": prompt.meta.get("name", prompt.path.stem),
                "version": prompt.meta.get("version", "0")},
            origin={"file": cfg.captions.name, "sha256": file_sha256(cfg.captions)} if cfg.captions else None,
            usage={image_id: [r.get("usage")] for image_id, r in records.items()}, missing_images=list(report.missing),
            notes=[f"per-request details (attempts, response ids) are in {cfg.journal_path.name}"])
        captions = {k: [r["caption"]] for k, r in records.items()}
        save_caption_set(build_caption_set(cfg.out.stem, captions, provenance, issues), cfg.out)
        report.out = cfg.out
    return report


def image_tokens(width: int, height: int, detail: str, base_tokens: int = 85, tile_tokens: int = 170) -> int:
    """Input tokens billed for one image, by OpenAI's rule for gpt-4o (docs/captions.md, "Dry run and cost")."""
    if detail == "low":
        return base_tokens
    w, h = width, height
    for limit, side in ((2048, max), (768, min)):
        if side(w, h) > limit:
            scale = limit / side(w, h)
            w, h = int(w * scale), int(h * scale)
    return base_tokens + tile_tokens * math.ceil(w / 512) * math.ceil(h / 512)


def load_prices(path: Optional[Path] = None) -> dict:
    """The price table: ``{"batch_discount": 0.5, "models": {name: {"input_per_1m", ...}}}``."""
    path = Path(path or PRICES_FILE)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data.get("models"), dict):
        raise ValueError(f"{path}: a price table needs a \"models\" object")
    for name, entry in data["models"].items():
        for key in ("input_per_1m", "output_per_1m"):
            if not isinstance(entry.get(key), (int, float)):
                raise ValueError(f"{path}: models[{name!r}] needs a number {key!r} (USD per 1M tokens)")
    return data


def plan(cfg: RegenerateConfig, prompt: PromptTemplate, jobs: list[Job]) -> RegenerateReport:
    """The dry run of ``jobs`` not captioned yet: requests, tokens, ``usd[mode] = [expected, at most]``."""
    from PIL import Image

    todo = [j for j in jobs if j.image_id not in read_journal(cfg.journal_path).captions]
    skipped, sizes = {}, {}  # image id -> why / (width, height) as sent
    for job in todo:  # the header gives the size: no pixel is decoded
        try:
            with Image.open(job.path) as img:
                scale = min(1.0, cfg.max_side / max(img.size))
                sizes[job.image_id] = [max(1, round(side * scale)) for side in img.size]
        except UNREADABLE as err:
            skipped[job.image_id] = f"cannot read image: {err}"

    def bodies() -> Iterator[tuple[str, dict]]:
        for job in (j for j in todo if j.image_id in sizes):
            try:
                body = build_request(job, cfg, prompt)
            except UNREADABLE as err:  # a readable header, broken pixels
                skipped[job.image_id] = f"cannot read image: {err}"
                del sizes[job.image_id]
                continue
            yield job.image_id, body

    files = []
    if cfg.write_requests:
        for old in cfg.batch_dir.glob("requests-[0-9][0-9][0-9].jsonl"):
            old.unlink()
        files = [path for path, _ in write_request_files(
            bodies(), cfg.batch_dir, "requests", cfg.batch_max_requests, cfg.batch_max_bytes,
            on_oversize=skipped.__setitem__)]
    prices = load_prices(cfg.prices)
    price = prices["models"].get(cfg.model)
    tiles = (price or {}).get("image_base_tokens", 85), (price or {}).get("image_tile_tokens", 170)
    input_tokens = sum(math.ceil(len(prompt_text(j, cfg, prompt)) / 4) + 7  # 4 characters a token, chat framing
                       + image_tokens(*sizes[j.image_id], cfg.detail, *tiles) for j in todo if j.image_id in sizes)
    expected = min(cfg.max_tokens, math.ceil(prompt.expected_words(cfg.target_words) / 0.75))  # 0.75 words a token
    outputs = len(sizes) * expected, len(sizes) * cfg.max_tokens
    discounts = {"online": 1.0, "batch": float(prices.get("batch_discount", 0.5))} if price else {}
    usd = {mode: [f * (input_tokens * price["input_per_1m"] + out * price["output_per_1m"]) / 1e6 for out in outputs]
           for mode, f in discounts.items()}
    estimate = {"model": cfg.model, "requests": len(sizes), "input_tokens": input_tokens, "output_tokens": outputs[0],
                "max_output_tokens": outputs[1], "usd": usd}
    return RegenerateReport(out=None, journal=cfg.journal_path, total=len(jobs), already_done=len(jobs) - len(todo),
                            missing=skipped, estimate=estimate, request_files=files)
