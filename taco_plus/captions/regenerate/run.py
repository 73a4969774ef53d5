"""``regenerate(cfg)``: one run from start to report. Collects the images, opens (or resumes)
the journal, captions what is missing (online, through the Batch API, or from result files
made elsewhere) and writes the caption set from the journal. ``dry_run`` estimates the cost
from the image headers alone, ``write_requests`` also writes the Batch API request files;
neither needs a key or the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from taco_plus.captions.checks import caption_problems
from taco_plus.captions.format import CaptionSet, Provenance, build_caption_set, save_caption_set
from taco_plus.captions.prompts import PromptTemplate, load_prompt
from taco_plus.captions.regenerate.batch import BatchRunner, parse_result_lines, write_request_files
from taco_plus.captions.regenerate.config import RegenerateConfig, RegenerateError
from taco_plus.captions.regenerate.cost import CostEstimate, estimate_cost, load_prices
from taco_plus.captions.regenerate.journal import Journal, JournalState, read_journal
from taco_plus.captions.regenerate.online import OnlineRunner
from taco_plus.captions.regenerate.requests import (Job, build_request, collect_jobs, prompt_text, request_signature,
                                                    sent_size)
from taco_plus.captions.regenerate.runner import UNREADABLE, public_base_url, read_api_key
from taco_plus.results.provenance import file_sha256

SOURCE = "regenerated with taco-plus captions regenerate"


@dataclass
class RegenerateReport:
    """What a run did: the caption set written (``out``, None if nothing was captioned or in a
    dry run), images in scope (``total``), ``captioned`` in all, ``already_done`` by earlier
    runs, ``missing`` (image id -> why), retries and tokens of this run; for dry runs the
    ``estimate`` and the ``request_files`` written."""

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
            files = ", ".join(str(p) for p in self.request_files) or "none (--write-requests writes them)"
            text = (f"dry run: {self.estimate.requests:,} requests ({self.already_done:,} of {self.total:,} images "
                    f"already captioned in {self.journal})\n{self.estimate.table()}\nbatch request files: {files}")
            return text + "".join(f"\nskipped {i}: {reason}" for i, reason in self.missing.items())
        lines = [f"captioned {self.captioned}/{self.total} images ({self.already_done} from earlier runs); "
                 f"{self.retried} retries; tokens this run: {self.prompt_tokens:,} in, {self.completion_tokens:,} out",
                 f"caption set: {self.out}" if self.out else "caption set: not written (no captions yet)"]
        if self.missing:
            lines.append(f"{len(self.missing)} images without a caption (re-run with --resume to retry them):")
            lines += [f"  {image_id}: {reason}" for image_id, reason in self.missing.items()]
        return "\n".join(lines)


def regenerate(cfg: RegenerateConfig) -> RegenerateReport:
    """Run caption regeneration as configured by ``cfg`` (see the module docstring)."""
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
    with Journal.open(cfg.journal_path, signature, cfg.resume) as journal:
        state = journal.state
        todo = [j for j in jobs if j.image_id not in state.captions]
        kind = BatchRunner if cfg.results or cfg.mode == "batch" else OnlineRunner
        runner = kind(cfg, journal, prompt, len(todo), api_key)
        try:
            if cfg.results:
                results = {k: v for path in cfg.results for k, v in parse_result_lines(path.read_bytes()).items()}
                runner.merge(results, [j.image_id for j in todo if j.image_id in results], "the result files",
                             results_files=[p.name for p in cfg.results])
            elif todo:
                runner.run(todo)
        finally:
            runner.bar.close()
        caption_set = _caption_set(cfg, prompt, jobs, state, signature)
    report = RegenerateReport(
        out=None, journal=cfg.journal_path, total=len(jobs), already_done=len(jobs) - len(todo),
        captioned=sum(j.image_id in state.captions for j in jobs), retried=runner.retried,
        prompt_tokens=runner.prompt_tokens, completion_tokens=runner.completion_tokens,
        missing={j.image_id: state.failures.get(j.image_id, {}).get("reason", "not attempted")
                 for j in jobs if j.image_id not in state.captions},
    )
    if caption_set is not None:
        save_caption_set(caption_set, cfg.out)
        report.out = cfg.out
    return report


def _caption_set(cfg: RegenerateConfig, prompt: PromptTemplate, jobs: list[Job], state: JournalState,
                 signature: dict) -> Optional[CaptionSet]:
    """The caption set of ``jobs`` from the journal, or None if nothing is captioned."""
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
        source=SOURCE, model=cfg.model, prompt=prompt.provenance(), parameters=parameters,
        origin={"file": cfg.captions.name, "sha256": file_sha256(cfg.captions)} if cfg.captions else None,
        usage={image_id: [r.get("usage")] for image_id, r in records.items()},
        missing_images=[j.image_id for j in jobs if j.image_id not in records],
        notes=[f"per-request details (attempts, response ids) are in {cfg.journal_path.name}"],
    )
    return build_caption_set(cfg.out.stem, {k: [r["caption"]] for k, r in records.items()}, provenance, issues)


def plan(cfg: RegenerateConfig, prompt: PromptTemplate, jobs: list[Job]) -> RegenerateReport:
    """Estimate tokens and cost of the images not captioned yet; with ``write_requests`` also
    write their Batch API request files. No key, no network, no journal written."""
    from PIL import Image

    todo = [j for j in jobs if j.image_id not in read_journal(cfg.journal_path).captions]
    skipped: dict[str, str] = {}
    sized: list[tuple[str, int, int]] = []  # (prompt text, width, height) as sent

    def requests():
        for job in todo:
            try:
                body, size = build_request(job, cfg, prompt)
            except UNREADABLE as err:
                skipped[job.image_id] = f"cannot read image: {err}"
                continue
            sized.append((prompt_text(job, cfg, prompt), *size))
            yield job.image_id, body

    files = []
    if cfg.write_requests:
        for old in cfg.batch_dir.glob("requests-[0-9][0-9][0-9].jsonl"):
            old.unlink()
        files = [path for path, _ in write_request_files(
            requests(), cfg.batch_dir, "requests", cfg.batch_max_requests, cfg.batch_max_bytes,
            on_oversize=lambda i, n: skipped.__setitem__(i, f"request is {n} bytes, over the batch file limit"))]
    else:
        for job in todo:  # the header gives the size: no pixel is decoded
            try:
                with Image.open(job.path) as img:
                    sized.append((prompt_text(job, cfg, prompt), *sent_size(*img.size, cfg.max_side)))
            except UNREADABLE as err:
                skipped[job.image_id] = f"cannot read image: {err}"
    estimate = estimate_cost(cfg.model, sized, cfg.detail, prompt.expected_words(cfg.target_words), cfg.max_tokens,
                             load_prices(cfg.prices))
    return RegenerateReport(out=None, journal=cfg.journal_path, total=len(jobs), already_done=len(jobs) - len(todo),
                            missing=skipped, estimate=estimate, request_files=files)
