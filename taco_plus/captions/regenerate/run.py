"""``regenerate(cfg)``: one caption-regeneration run from start to report.

Collects the images, opens (or resumes) the journal, captions what is missing in
online or batch mode, then writes the caption set atomically from the journal. With
``dry_run`` it instead writes the batch request files and estimates tokens and cost,
using no key and no network.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from taco_plus.captions.checks import caption_problems
from taco_plus.captions.convert import file_sha256
from taco_plus.captions.format import CaptionSet, Provenance, build_caption_set, save_caption_set
from taco_plus.captions.prompts import PromptTemplate, load_prompt
from taco_plus.captions.regenerate.batch import BatchRunner
from taco_plus.captions.regenerate.batch_files import write_request_files
from taco_plus.captions.regenerate.client import (
    Redactor,
    make_async_client,
    make_client,
    public_base_url,
    read_api_key,
)
from taco_plus.captions.regenerate.config import RegenerateConfig
from taco_plus.captions.regenerate.cost import CostEstimate, estimate_cost, load_prices
from taco_plus.captions.regenerate.jobs import (
    Job,
    collect_jobs,
    job_request,
    originals_fingerprint,
    request_signature,
)
from taco_plus.captions.regenerate.journal import Journal, JournalState, read_journal
from taco_plus.captions.regenerate.online import OnlineRunner
from taco_plus.captions.regenerate.progress import Progress

SOURCE = "regenerated with taco-plus captions regenerate"


class RegenerateError(RuntimeError):
    """A run that cannot start as asked (the message says why)."""


@dataclass
class RegenerateReport:
    """What a run did.

    Args:
        out: the caption set written (None when nothing was captioned, or in a dry run).
        journal: the journal file.
        total: images in this run's scope.
        captioned: images with a caption in the journal (this run and earlier ones).
        already_done: images captioned by earlier runs and skipped.
        missing: image id -> why it has no caption.
        retried: retried requests (online) or re-queued images (batch).
        prompt_tokens, completion_tokens: tokens billed in this run, retries included.
        estimate: dry run only: the token and cost estimate.
        request_files: dry run only: the batch JSONL files written.
    """

    out: Optional[Path]
    journal: Path
    total: int
    captioned: int = 0
    already_done: int = 0
    missing: dict = field(default_factory=dict)
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimate: Optional[CostEstimate] = None
    request_files: list = field(default_factory=list)

    def summary(self) -> str:
        if self.estimate is not None:
            files = ", ".join(str(p) for p in self.request_files) or "none"
            text = (
                f"dry run: {self.estimate.requests} requests ({self.already_done} of {self.total} images "
                f"already captioned in {self.journal})\n{self.estimate.table()}\nbatch request files: {files}"
            )
            return text + "".join(f"\nskipped {i}: {reason}" for i, reason in self.missing.items())
        lines = [
            f"captioned {self.captioned}/{self.total} images ({self.already_done} from earlier runs); "
            f"{self.retried} retries; tokens this run: {self.prompt_tokens:,} in, {self.completion_tokens:,} out",
            f"caption set: {self.out}" if self.out else "caption set: not written (no captions yet)",
        ]
        if self.missing:
            lines.append(f"{len(self.missing)} images without a caption (re-run with --resume to retry them):")
            lines += [f"  {image_id}: {reason}" for image_id, reason in self.missing.items()]
        return "\n".join(lines)


def regenerate(cfg: RegenerateConfig) -> RegenerateReport:
    """Run caption regeneration as configured by ``cfg`` (see the module docstring)."""
    prompt = load_prompt(cfg.prompt)
    all_jobs = collect_jobs(cfg)
    originals = originals_fingerprint(all_jobs) if cfg.with_original else None
    jobs = all_jobs[: cfg.limit] if cfg.limit is not None else all_jobs
    signature = request_signature(cfg, prompt, originals)
    if prompt.expected_words(cfg.target_words) < cfg.min_words:
        raise RegenerateError(
            f"the prompt asks for about {prompt.expected_words(cfg.target_words)} words but answers under "
            f"--min-words {cfg.min_words} are rejected; lower --min-words"
        )
    if cfg.dry_run:
        return dry_run(cfg, prompt, jobs)

    api_key = read_api_key(cfg.api_key_env)
    redact = Redactor(api_key)
    if cfg.out.exists() and not cfg.journal_path.exists():
        raise RegenerateError(f"{cfg.out} exists and has no journal beside it; refusing to overwrite it")
    with Journal.open(cfg.journal_path, signature, cfg.resume) as journal:
        todo = [j for j in jobs if j.image_id not in journal.state.captions]
        progress = Progress(len(todo), enabled=cfg.progress, desc=f"captions ({cfg.mode})")
        rng = random.Random(cfg.seed)
        try:
            if todo and cfg.mode == "online":
                asyncio.run(_run_online(cfg, api_key, journal, prompt, progress, redact, rng, todo))
            elif todo:
                client = make_client(api_key, cfg.base_url, cfg.timeout)
                try:
                    BatchRunner(cfg, client, journal, prompt, progress, redact, rng).run(todo)
                finally:
                    client.close()
        finally:
            progress.close()
        report = RegenerateReport(
            out=None,
            journal=cfg.journal_path,
            total=len(jobs),
            already_done=len(jobs) - len(todo),
            retried=progress.retried,
            prompt_tokens=progress.prompt_tokens,
            completion_tokens=progress.completion_tokens,
        )
        caption_set = _caption_set(cfg, prompt, jobs, journal.state, signature)
    report.captioned = sum(1 for j in jobs if j.image_id in journal.state.captions)
    report.missing = {
        j.image_id: journal.state.failures.get(j.image_id, {}).get("reason", "not attempted")
        for j in jobs
        if j.image_id not in journal.state.captions
    }
    if caption_set is not None:
        save_caption_set(caption_set, cfg.out)
        report.out = cfg.out
    return report


async def _run_online(cfg, api_key, journal, prompt, progress, redact, rng, todo) -> None:
    client = make_async_client(api_key, cfg.base_url, cfg.timeout)
    try:
        await OnlineRunner(cfg, client, journal, prompt, progress, redact, rng).run(todo)
    finally:
        await client.close()


def _caption_set(
    cfg: RegenerateConfig, prompt: PromptTemplate, jobs: list[Job], state: JournalState, signature: dict
) -> Optional[CaptionSet]:
    """The caption set for ``jobs`` from the journal, or None if nothing is captioned."""
    records = {j.image_id: state.captions[j.image_id] for j in jobs if j.image_id in state.captions}
    if not records:
        return None
    issues = {}
    for image_id, record in records.items():
        found = caption_problems(record["caption"])
        if record.get("finish_reason") == "length":
            found.append("answer cut off at max_tokens (finish_reason=length)")
        if found:
            issues[image_id] = found
    parameters = {k: v for k, v in signature.items() if k not in ("model", "prompt_sha256")}
    parameters["modes"] = sorted({r.get("mode", "online") for r in records.values()})
    parameters["base_url"] = public_base_url(cfg.base_url) or "https://api.openai.com/v1"
    provenance = Provenance(
        source=SOURCE,
        model=cfg.model,
        prompt=prompt.provenance(),
        parameters=parameters,
        origin={"file": cfg.captions.name, "sha256": file_sha256(cfg.captions)} if cfg.captions else None,
        usage={image_id: [r.get("usage")] for image_id, r in records.items()},
        missing_images=[j.image_id for j in jobs if j.image_id not in records],
        notes=[f"per-request details (attempts, response ids) are in {cfg.journal_path.name}"],
    )
    return build_caption_set(cfg.out.stem, {k: [r["caption"]] for k, r in records.items()}, provenance, issues)


def dry_run(cfg: RegenerateConfig, prompt: PromptTemplate, jobs: list[Job]) -> RegenerateReport:
    """Write the batch request files and estimate tokens and cost; no key, no network."""
    state = read_journal(cfg.journal_path)
    todo = [j for j in jobs if j.image_id not in state.captions]
    for old in cfg.batch_dir.glob("dryrun-requests-*.jsonl"):
        old.unlink()
    unreadable: dict[str, str] = {}
    sized: list[tuple[str, int, int]] = []

    def items():
        for job in todo:
            try:
                body, image, text = job_request(job, cfg, prompt)
            except OSError as err:
                unreadable[job.image_id] = f"cannot read image: {err}"
                continue
            sized.append((text, image.width, image.height))
            yield job.image_id, body

    files = [
        path
        for path, _ in write_request_files(
            items(), cfg.batch_dir, "dryrun-requests", cfg.batch_max_requests, cfg.batch_max_bytes,
            on_oversize=lambda i, n: unreadable.__setitem__(i, f"request is {n} bytes, over the batch file limit"),
        )
    ]
    estimate = estimate_cost(
        cfg.model, sized, cfg.detail, prompt.expected_words(cfg.target_words), cfg.max_tokens, load_prices(cfg.prices)
    )
    return RegenerateReport(
        out=None,
        journal=cfg.journal_path,
        total=len(jobs),
        already_done=len(jobs) - len(todo),
        missing=unreadable,
        estimate=estimate,
        request_files=files,
    )
