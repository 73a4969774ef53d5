"""Batch mode: request files in the OpenAI Batch API format (``vllm run-batch`` reads it too), uploaded,
polled, downloaded and merged, each id journaled at once (docs/captions.md, "What a run does")."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from taco_plus.captions.format import json_bytes, utc_now
from taco_plus.captions.regenerate.runner import Answer, FatalAPIError, Job, Runner, parse_completion, redact

ENDPOINT = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def write_request_files(items: Iterable[tuple[str, dict]], directory: Path, prefix: str, max_requests: int,
                        max_bytes: int, on_oversize: Callable[[str, str], None]) -> Iterator[tuple[Path, list[str]]]:
    """Writes ``(custom_id, body)`` requests to ``<prefix>-000.jsonl``, ``-001``, ..., yielding ``(path, ids)`` as
    each file completes; a request over ``max_bytes`` is skipped with ``on_oversize(custom_id, why)``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    fh, ids, count = None, [], 0
    for custom_id, body in items:
        line = json_bytes({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body})
        if len(line) > max_bytes:
            on_oversize(custom_id, f"request is {len(line)} bytes, over the batch file limit")
            continue
        if fh is not None and (len(ids) >= max_requests or fh.tell() + len(line) > max_bytes):
            fh.close()
            yield Path(fh.name), ids
            fh = None
        if fh is None:
            fh, ids, count = open(Path(directory) / f"{prefix}-{count:03d}.jsonl", "wb"), [], count + 1
        fh.write(line)
        ids.append(custom_id)
    if fh is not None:
        fh.close()
        yield Path(fh.name), ids


def parse_results(data: bytes) -> dict[str, tuple[Optional[Answer], Optional[str]]]:
    """custom id -> ``(answer, None)`` or ``(None, why not)``, from a Batch API output or error file."""
    results = {}
    for line in data.splitlines():
        try:
            result = json.loads(line)
            custom_id, response, error = result["custom_id"], result.get("response") or {}, result.get("error")
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a blank or unreadable line names no request; its image stays pending
        body, status = response.get("body"), response.get("status_code")
        if error and status in (None, 200):
            message = f"{error.get('code', 'error')}: {error.get('message', '')}" if isinstance(error, dict) else error
            results[custom_id] = None, str(message)[:300]
        elif status != 200:
            detail = body.get("error") if isinstance(body, dict) else None
            message = detail.get("message", "") if isinstance(detail, dict) else str(error or body)
            results[custom_id] = None, f"HTTP {status}: {message}"[:300]
        else:
            try:
                results[custom_id] = parse_completion(body), None
            except ValueError as err:
                results[custom_id] = None, f"malformed response: {err}"
    return results


class BatchRunner(Runner):
    """Captions images through the Batch API, or merges result files made elsewhere."""

    mode = "batch"

    def run(self, jobs: list[Job]) -> None:  # every job not yet in the journal
        import openai

        try:  # the SDK has retried what a retry can fix
            with openai.OpenAI(api_key=self.api_key, base_url=self.cfg.base_url, timeout=self.cfg.timeout,
                               max_retries=self.cfg.max_attempts - 1) as self.client:
                self._run(jobs)
        except openai.APIError as err:
            what = f"{err.request.method} {err.request.url.path}"
            raise FatalAPIError(redact(f"{what} failed: {err}", self.api_key)) from None

    def _run(self, jobs: list[Job]) -> None:
        for file_id in self.journal.uploads_without_batch():
            self._create_batch(file_id, look_for_existing=True)
        rounds = 1 + self.cfg.max_answer_retries
        for round_index in range(rounds):
            busy = self.journal.in_open_batches()
            pending = [j for j in jobs if j.image_id not in self.journal.captions
                       and j.image_id not in self.given_up and j.image_id not in busy]
            requests = ((j.image_id, body) for j in pending if (body := self.request(j)) is not None)
            prefix = f"requests-{utc_now().replace(':', '')[:17]}-r{round_index}"
            for path, ids in write_request_files(requests, self.cfg.batch_dir, prefix, self.cfg.batch_max_requests,
                                                 self.cfg.batch_max_bytes, on_oversize=self.fail):
                with open(path, "rb") as fh:
                    file_id = self.client.files.create(file=fh, purpose="batch").id
                self.journal.append({"type": "upload", "file_id": file_id, "file": path.name, "image_ids": ids,
                                     "time": utc_now()}, sync=True)
                path.unlink()  # the server holds it now (up to 200 MB each; --write-requests keeps them)
                self._create_batch(file_id)
            if not self.journal.open_batches():
                break
            self._wait_and_merge(last_round=round_index == rounds - 1)

    def _create_batch(self, file_id: str, look_for_existing: bool = False) -> None:
        batch = None
        if look_for_existing:  # created by a run that died before journaling it? (newest 1,000 batches)
            found = itertools.islice(self.client.batches.list(limit=100), 1000)
            batch = next((b for b in found if b.input_file_id == file_id), None)
        if batch is None:
            batch = self.client.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h",
                                               metadata={"created_by": "taco-plus captions regenerate"})
        self.journal.append({"type": "batch", "batch_id": batch.id, "input_file_id": file_id, "time": utc_now()},
                            sync=True)

    def _wait_and_merge(self, last_round: bool) -> None:
        waiting = self.journal.open_batches()
        while waiting:
            for batch_id in list(waiting):
                batch = self.client.batches.retrieve(batch_id)
                counts = batch.request_counts
                self.status = f"{batch_id}: {batch.status}" + (f" {counts.completed}/{counts.total}" if counts else "")
                self.show()
                if batch.status not in TERMINAL:
                    continue
                results = {}
                for file_id, kind in ((batch.error_file_id, "errors"), (batch.output_file_id, "output")):
                    if file_id:
                        data = self.client.files.content(file_id).content
                        kept = redact(data.decode("utf-8", "replace"), self.api_key)  # kept for inspection
                        (self.cfg.batch_dir / f"{kind}-{batch.id}.jsonl").write_text(kept, encoding="utf-8")
                        results.update(parse_results(data))
                first = next((e.message for e in (batch.errors.data or [])), None) if batch.errors else None
                source = f"batch {batch.id} (status {batch.status}" + (f": {first})" if first else ")")
                ids = self.journal.uploads.get(batch.input_file_id, {}).get("image_ids", [])
                self.merge(results, ids, source, last_round, batch_id=batch.id)
                self.journal.append({"type": "batch_done", "batch_id": batch.id, "status": batch.status,
                                     "time": utc_now()}, sync=True)
                waiting.remove(batch_id)
            if waiting:
                time.sleep(self.cfg.poll_interval)

    def merge(self, results: dict[str, tuple], image_ids: Iterable[str], source: str, last_round: bool = True,
              **extra) -> None:
        """Journal the answers in ``results`` (:func:`parse_results`) for ``image_ids``."""
        for image_id in image_ids:
            if image_id in self.journal.captions or image_id in self.given_up:
                continue  # merged before an interruption
            answer, reason = results.get(image_id, (None, f"no result in {source}"))
            if answer is not None:
                reason = self.accept(image_id, answer, attempts=1, **extra)
            if reason is not None:
                self.fail(image_id, reason, final=last_round)
