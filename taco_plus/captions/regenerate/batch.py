"""Batch mode: the OpenAI Batch API (half the online price, results within 24 h).

One round writes the pending requests to JSONL files under the API's limits, uploads
each (files endpoint, purpose ``"batch"``), creates a batch per file, polls until the
batches end, downloads their output and error files, and merges the answers into the
journal. Images whose answer was rejected (refusal, empty, too short) or missing go
into the next round, up to ``1 + max_answer_retries`` rounds.

Every upload and batch id is journaled the moment it exists. A run that is killed
while batches run resumes by collecting those batches (nothing is submitted twice);
an upload journaled without its batch id is matched against the account's batches
before a new batch is created.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Iterator

from taco_plus.captions.format import utc_now
from taco_plus.captions.prompts import PromptTemplate
from taco_plus.captions.regenerate.batch_files import (
    ENDPOINT,
    parse_result_lines,
    result_answer,
    write_request_files,
)
from taco_plus.captions.regenerate.config import RegenerateConfig
from taco_plus.captions.regenerate.jobs import Job, job_request
from taco_plus.captions.regenerate.journal import Journal
from taco_plus.captions.regenerate.progress import Progress
from taco_plus.captions.regenerate.request import answer_problem, clean_caption
from taco_plus.captions.regenerate.retry import RetryPolicy, call_with_retries

TERMINAL = {"completed", "failed", "expired", "cancelled"}


class BatchRunner:
    """Captions images through the Batch API with ``openai.OpenAI``.

    Args:
        cfg: run settings (batch limits, poll interval, retries).
        client: an ``openai.OpenAI`` with ``max_retries=0``.
        journal: the open run journal.
        prompt: the prompt template.
        progress: counters and bar.
        redact: scrubs the API key from messages.
        rng: random source for backoff jitter.
        sleep: wait function (tests may speed it up).
    """

    def __init__(
        self,
        cfg: RegenerateConfig,
        client,
        journal: Journal,
        prompt: PromptTemplate,
        progress: Progress,
        redact: Callable[[object], str],
        rng: random.Random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.journal = journal
        self.prompt = prompt
        self.progress = progress
        self.redact = redact
        self.rng = rng
        self.sleep = sleep
        self.policy = RetryPolicy(cfg.max_attempts, cfg.backoff_base, cfg.backoff_max, cfg.max_retry_after)
        self._given_up: set[str] = set()  # images that no further round can help

    def _call(self, what: str, fn):
        return call_with_retries(fn, self.policy, self.redact, self.rng, what, self.sleep)

    def run(self, jobs: list[Job]) -> None:
        """Caption every job not yet in the journal, collecting earlier batches first."""
        state = self.journal.state
        for upload in state.uploads_without_batch():
            self._create_batch(upload["file_id"], look_for_existing=True)
        self._wait_and_merge([b["batch_id"] for b in state.open_batches()], last_round=False)
        rounds = 1 + self.cfg.max_answer_retries
        for round_index in range(rounds):
            pending = [j for j in jobs if j.image_id not in state.captions and j.image_id not in self._given_up]
            if not pending:
                break
            batch_ids = [self._create_batch(fid) for fid in self._upload(pending, round_index)]
            self._wait_and_merge(batch_ids, last_round=round_index == rounds - 1)

    # -- submitting ---------------------------------------------------------------
    def _requests(self, jobs: list[Job]) -> Iterator[tuple[str, dict]]:
        for job in jobs:
            try:
                body, _, _ = job_request(job, self.cfg, self.prompt)
            except OSError as err:
                self._fail(job.image_id, f"cannot read image: {err}", final=True)
                continue
            yield job.image_id, body

    def _upload(self, jobs: list[Job], round_index: int) -> Iterator[str]:
        """Write, upload and journal the request files; yields input file ids."""
        files = write_request_files(
            self._requests(jobs),
            self.cfg.batch_dir,
            f"requests-{utc_now().replace(':', '')[:17]}-r{round_index}",
            self.cfg.batch_max_requests,
            self.cfg.batch_max_bytes,
            on_oversize=lambda i, n: self._fail(i, f"request is {n} bytes, over the batch file limit", final=True),
        )
        for path, ids in files:
            def upload(path=path):
                with open(path, "rb") as fh:
                    return self.client.files.create(file=fh, purpose="batch")

            uploaded = self._call(f"uploading {path.name}", upload)
            self.journal.append(
                {"type": "upload", "file_id": uploaded.id, "file": path.name, "image_ids": ids, "time": utc_now()}
            )
            yield uploaded.id

    def _create_batch(self, file_id: str, look_for_existing: bool = False) -> str:
        batch = self._find_batch(file_id) if look_for_existing else None
        if batch is None:
            batch = self._call(
                f"creating a batch for {file_id}",
                lambda: self.client.batches.create(
                    input_file_id=file_id,
                    endpoint=ENDPOINT,
                    completion_window="24h",
                    metadata={"created_by": "taco-plus captions regenerate"},
                ),
            )
        self.journal.append({"type": "batch", "batch_id": batch.id, "input_file_id": file_id, "time": utc_now()})
        return batch.id

    def _find_batch(self, file_id: str):
        """A batch an interrupted run created for ``file_id`` but did not journal."""
        for i, batch in enumerate(self._call("listing batches", lambda: self.client.batches.list(limit=100))):
            if batch.input_file_id == file_id:
                return batch
            if i >= 1000:
                break
        return None

    # -- collecting ---------------------------------------------------------------
    def _wait_and_merge(self, batch_ids: list[str], last_round: bool) -> None:
        waiting = list(batch_ids)
        while waiting:
            for batch_id in list(waiting):
                batch = self._call(f"polling {batch_id}", lambda: self.client.batches.retrieve(batch_id))
                counts = getattr(batch, "request_counts", None)
                done = f" {counts.completed}/{counts.total}" if counts is not None else ""
                self.progress.note(f"batch {batch_id}: {batch.status}{done}")
                if batch.status in TERMINAL:
                    self._merge(batch, last_round)
                    waiting.remove(batch_id)
            if waiting:
                self.sleep(self.cfg.poll_interval)

    def _download(self, file_id: str, name: str) -> bytes:
        data = self._call(f"downloading {file_id}", lambda: self.client.files.content(file_id)).content
        self.cfg.batch_dir.mkdir(parents=True, exist_ok=True)
        (self.cfg.batch_dir / name).write_bytes(data)  # kept for inspection
        return data

    def _merge(self, batch, last_round: bool) -> None:
        results = {}
        for file_id, kind in ((batch.error_file_id, "errors"), (batch.output_file_id, "output")):
            if file_id:
                results.update(parse_result_lines(self._download(file_id, f"{kind}-{batch.id}.jsonl")))
        upload = self.journal.state.uploads.get(batch.input_file_id, {})
        for image_id in upload.get("image_ids", []):
            if image_id in self.journal.state.captions:
                continue  # merged before an interruption
            result = results.get(image_id)
            if result is None:
                self._fail(image_id, f"no result in batch {batch.id} ({_status_text(batch)})", last_round)
                continue
            answer, reason = result_answer(result)
            if answer is not None:
                self.progress.add_usage(answer.usage)
                reason = answer_problem(answer, self.cfg.min_words)
            if reason is not None:
                self._fail(image_id, reason, last_round)
                continue
            self.journal.append(
                {"type": "caption", "image_id": image_id, "caption": clean_caption(answer.text),
                 "usage": answer.usage, "attempts": 1, "mode": "batch", "batch_id": batch.id,
                 "finish_reason": answer.finish_reason, "response_id": answer.response_id, "time": utc_now()}
            )
            self.progress.caption_done()
        self.journal.append({"type": "batch_done", "batch_id": batch.id, "status": batch.status, "time": utc_now()})

    def _fail(self, image_id: str, reason: str, final: bool) -> None:
        if image_id in self._given_up:
            return
        self.journal.append(
            {"type": "failure", "image_id": image_id, "reason": self.redact(reason), "mode": "batch", "time": utc_now()}
        )
        if final:
            self._given_up.add(image_id)
            self.progress.caption_failed()
        else:
            self.progress.retry()


def _status_text(batch) -> str:
    """``status`` plus the batch's first error message, if any."""
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    first = getattr(errors[0], "message", None) if errors else None
    return f"status {batch.status}" + (f": {first}" if first else "")
