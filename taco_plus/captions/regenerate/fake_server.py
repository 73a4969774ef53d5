"""A loopback OpenAI-compatible server with injectable faults, for tests and benchmarks.

It implements just enough of the API for caption regeneration -- chat completions
with an image, file upload/download and the Batch API -- on ``127.0.0.1`` (port 0,
stdlib ``http.server`` in a thread), so the real ``openai`` client can be exercised
offline. Its answers describe the image it received (``"A test photograph of WxH
pixels ..."``), which lets tests check that each caption belongs to its image.

Faults are queued with :meth:`FakeOpenAIServer.add_faults` and consumed one per
chat request (or per batch line): ``"429"`` (with ``Retry-After``), ``"500"``,
``"hang"`` (answers only after ``hang_seconds``), ``"malformed"`` (invalid JSON),
``"refusal"`` (the API's ``refusal`` field), ``"refusal_text"`` (an "I'm sorry..."
answer), ``"empty"``, ``"short"``, ``"400"``, ``"401"`` (echoes the key it received,
like a careless server) and ``"quota"`` (429 insufficient_quota).

Never point real traffic at it; it exists to test the client side.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import threading
import time
from collections import deque
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from taco_plus.captions.regenerate.cost import image_tokens

_FILLER = (
    "with soft daylight from the left, a textured wooden surface, muted green and brown tones, "
    "fine grain, sharp edges in the foreground and a gently blurred background behind the subject"
).split()


class FakeOpenAIServer:
    """The server; use as a context manager (``with FakeOpenAIServer() as server:``).

    Args:
        latency: seconds each chat completion takes (the benchmark uses 0.2).
        api_key: if set, requests must carry ``Authorization: Bearer <api_key>``.
        caption_words: words per answer.
        batch_polls: batch status polls before a batch completes.
        hang_seconds: how long a ``"hang"`` fault stalls.
        retry_after: seconds advertised by ``"429"`` faults.
    """

    def __init__(
        self,
        latency: float = 0.0,
        api_key: Optional[str] = None,
        caption_words: int = 40,
        batch_polls: int = 1,
        hang_seconds: float = 5.0,
        retry_after: float = 0.05,
    ) -> None:
        self.latency = latency
        self.api_key = api_key
        self.caption_words = caption_words
        self.batch_polls = batch_polls
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.expire_next_batches = 0  # that many batches end "expired" with half their results
        self.lock = threading.Lock()
        self.faults: deque[str] = deque()
        self.chat_requests: list[dict] = []  # {"time", "prompt", "size", "detail", "fault"}
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._httpd: Optional[ThreadingHTTPServer] = None

    # -- control --------------------------------------------------------------------
    def add_faults(self, *faults: str) -> None:
        with self.lock:
            self.faults.extend(faults)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "FakeOpenAIServer":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes hung handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- behaviour --------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    def _pop_fault(self) -> Optional[str]:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    def complete(self, body: dict, fault: Optional[str]) -> tuple[int, dict, object]:
        """(status, extra headers, JSON payload or raw bytes) for one chat request."""
        prompt, size, detail = _inspect(body)
        with self.lock:
            self.chat_requests.append(
                {"time": time.monotonic(), "prompt": prompt, "size": size, "detail": detail, "fault": fault}
            )
        if fault == "429":
            headers = {"retry-after-ms": str(int(self.retry_after * 1000)), "retry-after": str(math.ceil(self.retry_after))}
            return 429, headers, _error("Rate limit reached for requests", "rate_limit_exceeded")
        if fault == "quota":
            return 429, {}, _error("You exceeded your current quota", "insufficient_quota")
        if fault == "500":
            return 500, {}, _error("The server had an error while processing your request", None)
        if fault == "400":
            return 400, {}, _error("Invalid image", "invalid_image")
        if fault == "malformed":
            return 200, {}, b'{"id": "chatcmpl-broken", "choices": [{"message": '
        text, refusal = self._caption(size), None
        if fault == "refusal":
            text, refusal = None, "I'm sorry, but I can't help with that request."
        elif fault == "refusal_text":
            text = "I'm sorry, I can't help with describing this image."
        elif fault == "empty":
            text = ""
        elif fault == "short":
            text = "A photo."
        prompt_tokens = len(prompt) // 4 + (image_tokens(*size, detail) if size else 0)
        completion_tokens = math.ceil(len((text or refusal).split()) / 0.75)
        return 200, {}, {
            "id": self._next_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text, "refusal": refusal},
                 "finish_reason": "stop", "logprobs": None}
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _caption(self, size: Optional[tuple[int, int]]) -> str:
        head = f"A test photograph of {size[0]}x{size[1]} pixels" if size else "A test photograph"
        words = head.split()
        filler = itertools.cycle(_FILLER)
        while len(words) < self.caption_words:
            words.append(next(filler))
        return " ".join(words) + "."

    def run_batch(self, batch: dict, expire: bool) -> None:
        """Answer every line of a batch's input file and attach output/error files."""
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["data"].splitlines() if x.strip()]
        if expire:
            lines = lines[: len(lines) // 2]
        output, errors = [], []
        for line in lines:
            fault = self._pop_fault()
            if fault == "hang":  # lost in the batch: no result line at all
                continue
            status, _, payload = self.complete(line["body"], fault)
            if isinstance(payload, bytes):  # a malformed body inside an output line
                payload = {"unexpected": payload.decode()}
            record = {"id": self._next_id("batch_req"), "custom_id": line["custom_id"],
                      "response": {"status_code": status, "request_id": self._next_id("req"), "body": payload},
                      "error": None}
            (output if status == 200 else errors).append(json.dumps(record))
        for kind, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = self._next_id("file")
                self.files[file_id] = {"data": ("\n".join(records) + "\n").encode(), "purpose": "batch_output",
                                       "filename": f"{batch['id']}_{kind}.jsonl"}
                batch[kind] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}
        batch["status"] = "expired" if expire else "completed"


def _error(message: str, code: Optional[str]) -> dict:
    return {"error": {"message": message, "type": "fake_error", "param": None, "code": code}}


def _inspect(body: dict) -> tuple[str, Optional[tuple[int, int]], str]:
    """Prompt text, decoded image size and detail of a chat request."""
    from PIL import Image

    prompt, size, detail = "", None, "auto"
    for message in body.get("messages", []):
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        for part in parts:
            if part.get("type") == "text":
                prompt += part.get("text", "")
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"]
                detail = part["image_url"].get("detail", "auto")
                with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
                    size = img.size
    return prompt, size, detail


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeOpenAIServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: object, headers: Optional[dict] = None, ctype: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _authorised(self) -> bool:
        key = self.fake.api_key
        given = self.headers.get("Authorization", "")
        if key is None or given == f"Bearer {key}":
            return True
        self._send(401, _error(f"Incorrect API key provided: {given.removeprefix('Bearer ')}", "invalid_api_key"))
        return False

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self._body()
        if not self._authorised():
            return
        fake, path = self.fake, self.path.split("?")[0]
        if path == "/v1/chat/completions":
            fault = fake._pop_fault()
            if fault == "401":
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                self._send(401, _error(f"Incorrect API key provided: {given}", "invalid_api_key"))
                return
            if fake.latency:
                fake._stop.wait(fake.latency)
            if fault == "hang":
                fake._stop.wait(fake.hang_seconds)
            status, headers, payload = fake.complete(json.loads(body), fault)
            self._send(status, payload, headers)
        elif path == "/v1/files":
            msg = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
            )
            fields = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                fields[name] = (part.get_filename(), part.get_payload(decode=True))
            file_id = fake._next_id("file")
            fake.files[file_id] = {"data": fields["file"][1], "purpose": fields["purpose"][1].decode(),
                                   "filename": fields["file"][0]}
            self._send(200, _file_object(file_id, fake.files[file_id]))
        elif path == "/v1/batches":
            request = json.loads(body)
            if request.get("input_file_id") not in fake.files:
                self._send(400, _error("unknown input file", "invalid_request"))
                return
            batch_id = fake._next_id("batch")
            fake.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"],
                "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
                "status": "validating", "created_at": int(time.time()), "output_file_id": None,
                "error_file_id": None, "metadata": request.get("metadata"), "errors": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0}, "_polls": 0,
            }
            self._send(200, _public(fake.batches[batch_id]))
        elif path.startswith("/v1/batches/") and path.endswith("/cancel"):
            batch = fake.batches[path.split("/")[3]]
            batch["status"] = "cancelled"
            self._send(200, _public(batch))
        else:
            self._send(404, _error(f"no route {path}", None))

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        fake, parts = self.fake, self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["v1", "batches"] and len(parts) == 2:
            data = [_public(b) for b in reversed(list(fake.batches.values()))]
            self._send(200, {"object": "list", "data": data, "has_more": False,
                             "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})
        elif parts[:2] == ["v1", "batches"] and len(parts) == 3 and parts[2] in fake.batches:
            expire = None
            with fake.lock:
                batch = fake.batches[parts[2]]
                batch["_polls"] += 1
                if batch["status"] in ("validating", "in_progress"):
                    batch["status"] = "in_progress"
                    if batch["_polls"] >= fake.batch_polls:
                        batch["status"] = "finalizing"  # claimed: later polls will not run it again
                        expire = fake.expire_next_batches > 0
                        fake.expire_next_batches -= int(expire)
            if expire is not None:
                fake.run_batch(batch, expire)
            self._send(200, _public(batch))
        elif parts[:2] == ["v1", "files"] and len(parts) >= 3 and parts[2] in fake.files:
            entry = fake.files[parts[2]]
            if len(parts) == 4 and parts[3] == "content":
                self._send(200, entry["data"], ctype="application/octet-stream")
            else:
                self._send(200, _file_object(parts[2], entry))
        else:
            self._send(404, _error(f"no route {self.path}", None))


def _file_object(file_id: str, entry: dict) -> dict:
    return {"id": file_id, "object": "file", "bytes": len(entry["data"]), "created_at": int(time.time()),
            "filename": entry["filename"], "purpose": entry["purpose"], "status": "processed"}


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}
