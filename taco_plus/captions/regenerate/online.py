"""Online mode: ``concurrency`` workers post chat completions through ``openai.AsyncOpenAI`` (which
retries each HTTP request), within ``image_timeout`` seconds per image (docs/captions.md, "What a run does")."""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from dataclasses import dataclass

from taco_plus.captions.regenerate.runner import (UNREADABLE, FatalAPIError, Job, Runner, build_request,
                                                  parse_completion, redact)


@dataclass
class _Flight:
    """An image being captioned: when it and its HTTP attempt started, attempts so far, what ended the
    previous one (``fresh``: the next request is a new question, not a retry)."""

    image_id: str
    started: float
    since: float = 0.0
    attempts: int = 0
    last_error: str = ""
    fresh: bool = True


# The image the running task is captioning; read by the HTTP hooks, which run in that task.
_flight: contextvars.ContextVar = contextvars.ContextVar("taco_plus_caption_flight", default=None)


class OnlineRunner(Runner):
    """Captions images with concurrent chat-completion requests."""

    def run(self, jobs: list[Job]) -> None:  # returns when each job is journaled as captioned or failed
        asyncio.run(self._run(jobs))

    async def _run(self, jobs: list[Job]) -> None:
        import openai

        hooks = {"request": [self._on_request], "response": [self._on_response]}
        self.client = openai.AsyncOpenAI(api_key=self.api_key, base_url=self.cfg.base_url, timeout=self.cfg.timeout,
                                         max_retries=self.cfg.max_attempts - 1,
                                         http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks))
        self._flights: dict[str, _Flight] = {}
        queue = iter(jobs)

        async def worker() -> None:
            for job in queue:  # shared iterator: each job goes to one worker
                await self._caption(job)

        tasks = [asyncio.create_task(worker()) for _ in range(min(self.cfg.concurrency, len(jobs)))]
        ticker = asyncio.create_task(self._tick())
        try:
            await asyncio.gather(*tasks)
        finally:  # a fatal error in one worker stops the others (their requests are lost, not journaled)
            for task in (*tasks, ticker):
                task.cancel()
            await asyncio.gather(*tasks, ticker, return_exceptions=True)
            await self.client.close()
            self.status = ""

    async def _caption(self, job: Job) -> None:
        flight = self._flights[job.image_id] = _Flight(job.image_id, time.monotonic())
        _flight.set(flight)
        try:
            await asyncio.wait_for(self._ask(job, flight), self.cfg.image_timeout)
        except asyncio.TimeoutError:
            self.fail(job.image_id, f"no caption within --image-timeout {self.cfg.image_timeout:g} s ({flight.attempts} "
                      f"attempts; last: {flight.last_error or 'no answer'})", attempts=flight.attempts)
        finally:
            del self._flights[job.image_id]

    async def _ask(self, job: Job, flight: _Flight) -> None:
        import openai

        try:  # in a thread: re-encoding a large image takes tens of milliseconds
            body = await asyncio.to_thread(build_request, job, self.cfg, self.prompt)
        except UNREADABLE as err:
            self.fail(job.image_id, f"cannot read image: {err}")
            return
        for answers in range(1, self.cfg.max_answer_retries + 2):
            flight.fresh = True
            try:
                answer = parse_completion(json.loads(await self._post(body)))
            except ValueError as err:  # not JSON, not a chat completion, or too large
                problem = f"malformed response: {str(err)[:200]}"
            except openai.APIError as err:
                self.fail(job.image_id, f"gave up after {flight.attempts} attempts; last error: {self._reason(err)}",
                          attempts=flight.attempts)
                return
            else:
                problem = self.accept(job.image_id, answer, attempts=flight.attempts)
                if problem is None:
                    return
            if answers <= self.cfg.max_answer_retries:
                self.retry(f"{job.image_id}: {problem}; asking again")
        self.fail(job.image_id, f"{problem} ({answers} answers rejected)", attempts=flight.attempts)

    async def _post(self, body: dict) -> bytes:
        """The chat completion's body, read up to 1 MiB + 64 bytes per ``max_tokens``; sent as built."""
        import openai

        limit, data = (1 << 20) + 64 * self.cfg.max_tokens, bytearray()
        response = await self.client.post("/chat/completions", cast_to=openai.AsyncAPIResponse[bytes], body=body,
                                          options={"headers": {"X-Stainless-Raw-Response": "stream"}})
        try:
            async for chunk in response.iter_bytes():
                data += chunk
                if len(data) > limit:
                    raise ValueError(f"response body over {limit:,} bytes (max_tokens {self.cfg.max_tokens}); "
                                     "not read further")
        finally:
            await response.close()
        return bytes(data)

    def _reason(self, err: Exception) -> str:
        """Why a request failed for good; raises :class:`FatalAPIError` when the run must stop."""
        import openai

        if isinstance(err, openai.APITimeoutError):
            return "request timed out"
        if isinstance(err, openai.APIConnectionError):
            return f"connection error: {err}"
        if not isinstance(err, openai.APIStatusError):
            raise err
        reason = redact(f"HTTP {err.status_code}: {(getattr(err, 'message', None) or str(err))[:300]}",
                        self.api_key)
        if isinstance(err, openai.RateLimitError) and getattr(err, "code", None) == "insufficient_quota":
            raise FatalAPIError(f"quota exhausted ({reason}); check the account's billing") from None
        if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
            raise FatalAPIError(f"the server rejected the API key ({reason})") from None
        if isinstance(err, openai.NotFoundError):
            raise FatalAPIError(f"model or endpoint not found ({reason}); check --model and --base-url") from None
        return reason

    # -- HTTP hooks: they see every attempt, the SDK's retries included ---------------
    async def _on_request(self, request) -> None:
        if (flight := _flight.get()) is None:
            return
        now = time.monotonic()
        flight.attempts += 1
        if not flight.fresh:
            what = flight.last_error or f"no answer after {now - flight.since:.1f} s (timeout or lost connection)"
            self.retry(f"{flight.image_id}: {what}; retry {flight.attempts - 1} "
                       f"(at most {self.cfg.max_attempts} attempts per request)")
        flight.since, flight.last_error, flight.fresh = now, "", False

    async def _on_response(self, response) -> None:
        if (flight := _flight.get()) is not None and response.status_code >= 400:
            flight.last_error = f"HTTP {response.status_code}"

    async def _tick(self) -> None:
        """Once a second: how many requests wait, and the longest wait."""
        while True:
            await asyncio.sleep(1.0)
            oldest = min(self._flights.values(), key=lambda f: f.started, default=None)
            self.status = oldest and (f"{len(self._flights)} in flight, {oldest.image_id} waiting "
                                      f"{time.monotonic() - oldest.started:.0f} s (attempt {oldest.attempts})")
            self.show()
