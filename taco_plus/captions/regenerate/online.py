"""Online mode: concurrent chat-completion requests with our own retry policy.

``concurrency`` workers share a queue of images. Each image is retried on transient
errors with exponential backoff and jitter (``Retry-After`` wins when the server
sends one, and then pauses every worker, since a 429 is about the whole account),
and re-asked a bounded number of times when the answer is a refusal, empty or too
short. Each accepted caption is journaled (fsync, grouped with captions finishing at
the same moment) as soon as it arrives.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from typing import Callable

from taco_plus.captions.format import utc_now
from taco_plus.captions.prompts import PromptTemplate
from taco_plus.captions.regenerate.config import RegenerateConfig
from taco_plus.captions.regenerate.jobs import Job, job_request
from taco_plus.captions.regenerate.journal import Journal
from taco_plus.captions.regenerate.progress import Progress
from taco_plus.captions.regenerate.request import answer_problem, clean_caption, parse_completion
from taco_plus.captions.regenerate.retry import FatalAPIError, RetryPolicy, classify_error


class GroupCommit:
    """Journal appends from many workers, one ``fsync`` per group, off the event loop.

    An fsync costs milliseconds; done inline it would stall every worker, and done per
    record it caps throughput. Records arriving while a write is in progress are
    written together next. :meth:`append` returns once its record is durable.

    Args:
        journal: the open journal.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def append(self, record: dict) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await asyncio.shield(future)  # a cancelled worker still gets its record written

    async def _write(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self.journal.append_many, [record for record, _ in group])
            except BaseException as err:  # noqa: BLE001 - handed to every waiting worker
                for _, future in group:
                    if not future.done():
                        future.set_exception(err)
                raise
            for _, future in group:
                if not future.done():
                    future.set_result(None)

    async def drain(self) -> None:
        """Wait for every pending record to be written."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


class OnlineRunner:
    """Captions images with ``openai.AsyncOpenAI`` chat completions.

    Args:
        cfg: run settings (concurrency, retries, timeouts, sampling).
        client: an ``openai.AsyncOpenAI`` with ``max_retries=0``.
        journal: the open run journal.
        prompt: the prompt template.
        progress: counters and bar.
        redact: scrubs the API key from messages.
        rng: random source for backoff jitter.
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
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.journal = journal
        self.prompt = prompt
        self.progress = progress
        self.redact = redact
        self.rng = rng
        self.policy = RetryPolicy(cfg.max_attempts, cfg.backoff_base, cfg.backoff_max, cfg.max_retry_after)
        self._pause_until = 0.0  # loop time before which no worker sends (Retry-After)
        self._commit: GroupCommit | None = None

    async def run(self, jobs: list[Job]) -> None:
        """Caption every job; returns when all are journaled as captioned or failed."""
        queue = deque(jobs)
        self._commit = GroupCommit(self.journal)

        async def worker() -> None:
            while queue:
                await self._caption(queue.popleft())

        tasks = [asyncio.create_task(worker()) for _ in range(min(self.cfg.concurrency, len(jobs)))]
        try:
            await asyncio.gather(*tasks)
        finally:  # a fatal error in one worker stops the others (their requests are lost, not journaled)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._commit.drain()

    async def _fail(self, job: Job, reason: str, attempts: int) -> None:
        await self._commit.append(
            {"type": "failure", "image_id": job.image_id, "reason": self.redact(reason),
             "attempts": attempts, "mode": "online", "time": utc_now()}
        )
        self.progress.caption_failed()

    async def _wait_for_pause(self) -> None:
        loop = asyncio.get_running_loop()
        while (delay := self._pause_until - loop.time()) > 0:
            await asyncio.sleep(delay)

    async def _caption(self, job: Job) -> None:
        try:
            body, _, _ = await asyncio.to_thread(job_request, job, self.cfg, self.prompt)
        except OSError as err:  # unreadable or not an image (PIL raises OSError subclasses)
            await self._fail(job, f"cannot read image: {err}", 0)
            return
        attempts = transport_failures = bad_answers = 0
        while True:
            await self._wait_for_pause()
            attempts += 1
            try:
                raw = await self.client.chat.completions.with_raw_response.create(**body)
                answer = parse_completion(json.loads(raw.text))
            except Exception as err:  # noqa: BLE001 - classify_error re-raises unknown errors
                decision = classify_error(err)
                reason = self.redact(decision.reason)
                if decision.kind == "fatal":
                    raise FatalAPIError(reason) from None
                if decision.kind == "skip":
                    await self._fail(job, reason, attempts)
                    return
                transport_failures += 1
                if transport_failures >= self.policy.max_attempts:
                    await self._fail(job, f"gave up after {attempts} attempts; last error: {reason}", attempts)
                    return
                if decision.retry_after is not None:
                    delay = min(decision.retry_after, self.policy.max_retry_after)
                    loop = asyncio.get_running_loop()
                    self._pause_until = max(self._pause_until, loop.time() + delay)
                else:
                    delay = self.policy.backoff(transport_failures - 1, self.rng)
                self.progress.retry()
                await asyncio.sleep(delay)
                continue
            self.progress.add_usage(answer.usage)
            problem = answer_problem(answer, self.cfg.min_words)
            if problem is None:
                await self._commit.append(
                    {"type": "caption", "image_id": job.image_id, "caption": clean_caption(answer.text),
                     "usage": answer.usage, "attempts": attempts, "mode": "online",
                     "finish_reason": answer.finish_reason, "response_id": answer.response_id,
                     "time": utc_now()}
                )
                self.progress.caption_done()
                return
            bad_answers += 1
            if bad_answers > self.cfg.max_answer_retries:
                await self._fail(job, f"{problem} ({bad_answers} answers rejected)", attempts)
                return
            self.progress.retry()
