"""Loopback servers for the caption tests (127.0.0.1, port 0; never point real traffic here).

* :class:`FakeOpenAIServer`: just enough of the OpenAI API for caption regeneration --
  chat completions with an image, file upload/download and the Batch API -- with faults
  queued by :meth:`~FakeOpenAIServer.add_faults` and consumed one per chat request (or
  batch line): ``"429"``, ``"500"`` (both with a short ``retry-after-ms``), ``"hang"``
  (answers after ``hang_seconds``), ``"malformed"`` (invalid JSON), ``"refusal"`` (the
  API's field), ``"refusal_text"`` ("I'm sorry..."), ``"empty"``, ``"short"``, ``"400"``,
  ``"401"`` (echoes the key it received, like a careless server), ``"quota"``, ``"echo_key"``
  (a 200 answer quoting the ``Authorization`` header it received), ``"huge"`` (a 200 KB
  caption, far beyond any ``max_tokens``) and ``"flood"`` (a 64 MiB body, sent until the
  client hangs up; ``flood_sent`` counts its bytes). Answers
  name the size of the image received, so tests can match each caption to its image.
* :func:`run_batch`: what ``vllm run-batch -i requests.jsonl -o results.jsonl`` does with a
  request file, with this server as the model.
* :func:`silent_server`: accepts connections, reads them, never answers.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import socket
import threading
import time
import urllib.request
from collections import deque
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Optional

from PIL import Image

from taco_plus.captions.regenerate.run import image_tokens

CAPTION = ("A test photograph of {w}x{h} pixels with soft daylight from the left, a textured wooden surface, "
           "muted green and brown tones, fine grain, sharp edges in the foreground and a gently blurred "
           "background behind the subject, seen at eye level.")


def inspect_request(body: dict) -> tuple[str, Optional[tuple[int, int]], str]:
    """Prompt text, decoded image size and ``detail`` of a chat-completions request body."""
    prompt, size, detail = "", None, "auto"
    for message in body.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else [{"type": "text", "text": content or ""}]:
            if part.get("type") == "text":
                prompt += part.get("text", "")
            elif part.get("type") == "image_url":
                detail = part["image_url"].get("detail", "auto")
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                with Image.open(io.BytesIO(data)) as img:  # reads the header only
                    size = img.size
    return prompt, size, detail


def chat_completion(body: dict, text: Optional[str], refusal: Optional[str] = None, n: int = 0) -> dict:
    """A chat-completion response to ``body`` with usage counted like gpt-4o's."""
    prompt, size, detail = inspect_request(body)
    prompt_tokens = len(prompt) // 4 + (image_tokens(*size, detail) if size else 0)
    completion_tokens = round(len((text or refusal or "").split()) / 0.75)
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "local"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": refusal},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def caption_for(body: dict) -> str:
    """The caption the server answers: it names the image size, so tests can match it to its image."""
    size = inspect_request(body)[1] or (0, 0)
    return CAPTION.format(w=size[0], h=size[1])


def _error(message: str, code: Optional[str]) -> dict:
    return {"error": {"message": message, "type": "fake_error", "param": None, "code": code}}


class FakeOpenAIServer:
    """The server; use as a context manager.

    Args:
        latency: seconds each chat completion takes.
        api_key: if set, requests must carry ``Authorization: Bearer <api_key>``.
        batch_polls: status polls before a batch completes.
        hang_seconds: how long a ``"hang"`` fault stalls.
        retry_after: seconds advertised by error responses.
    """

    def __init__(self, latency: float = 0.0, api_key: Optional[str] = None, batch_polls: int = 1,
                 hang_seconds: float = 5.0, retry_after: float = 0.02) -> None:
        self.latency, self.api_key, self.batch_polls = latency, api_key, batch_polls
        self.hang_seconds, self.retry_after = hang_seconds, retry_after
        self.last_authorization = ""  # the Authorization header of the latest request
        self.flood_sent = 0
        self.expire_next_batches = 0  # that many batches end "expired" with half their results
        self.lock = threading.Lock()
        self.faults: deque[str] = deque()
        self.chat_requests: list[dict] = []  # {"time", "prompt", "size", "detail", "fault"}
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._httpd: Optional[ThreadingHTTPServer] = None

    def add_faults(self, *faults: str) -> None:
        with self.lock:
            self.faults.extend(faults)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAIServer":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"fake": self}))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()  # wakes hung handlers
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    def pop_fault(self) -> Optional[str]:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    def complete(self, body: dict, fault: Optional[str]) -> tuple[int, dict, object]:
        """(status, extra headers, JSON payload or raw bytes) for one chat request."""
        prompt, size, detail = inspect_request(body)
        with self.lock:
            self.chat_requests.append({"time": time.monotonic(), "prompt": prompt, "size": size, "detail": detail,
                                       "fault": fault})
        wait = {"retry-after-ms": str(int(self.retry_after * 1000))}
        errors = {"429": (429, "Rate limit reached for requests", "rate_limit_exceeded"),
                  "quota": (429, "You exceeded your current quota", "insufficient_quota"),
                  "500": (500, "The server had an error while processing your request", None),
                  "400": (400, "Invalid image", "invalid_image")}
        if fault in errors:
            status, message, code = errors[fault]
            return status, wait, _error(message, code)
        if fault == "malformed":
            return 200, {}, b'{"id": "chatcmpl-broken", "choices": [{"message": '
        echo = f" (request sent with Authorization: {self.last_authorization})"
        text = {"refusal": None, "refusal_text": "I'm sorry, I can't help with describing this image.",
                "empty": "", "short": "A photo.", "echo_key": caption_for(body) + echo,
                "huge": caption_for(body) + " Fine grain." * 20_000}.get(fault, caption_for(body))
        refusal = "I'm sorry, but I can't help with that request." if fault == "refusal" else None
        payload = chat_completion(body, text, refusal, next(self._ids))
        if fault == "echo_key":
            payload["id"] += echo
        return 200, {}, payload

    def run_batch(self, batch: dict, expire: bool) -> None:
        """Answer every line of a batch's input file and attach output/error files."""
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["data"].splitlines() if x.strip()]
        lines = lines[: len(lines) // 2] if expire else lines
        output, errors = [], []
        for line in lines:
            fault = self.pop_fault()
            if fault == "hang":  # lost in the batch: no result line at all
                continue
            status, _, payload = self.complete(line["body"], fault)
            if isinstance(payload, bytes):  # a malformed body inside an output line
                payload = {"unexpected": payload.decode()}
            record = {"id": self.next_id("batch_req"), "custom_id": line["custom_id"],
                      "response": {"status_code": status, "request_id": self.next_id("req"), "body": payload},
                      "error": None}
            (output if status == 200 else errors).append(json.dumps(record))
        for kind, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = self.next_id("file")
                self.files[file_id] = {"data": ("\n".join(records) + "\n").encode(), "purpose": "batch_output",
                                       "filename": f"{batch['id']}_{kind}.jsonl"}
                batch[kind] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}
        batch["status"] = "expired" if expire else "completed"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeOpenAIServer

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, payload: object, headers: Optional[dict] = None,
              ctype: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            for key, value in {"Content-Type": ctype, "Content-Length": str(len(data)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _send_flood(self) -> None:
        chunk = b"x" * 65536
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(1024 * len(chunk)))
        self.end_headers()
        try:
            for _ in range(1024):
                self.wfile.write(chunk)
                self.fake.flood_sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _authorised(self) -> bool:
        given = self.fake.last_authorization = self.headers.get("Authorization", "")
        if self.fake.api_key is None or given == f"Bearer {self.fake.api_key}":
            return True
        self._send(401, _error(f"Incorrect API key provided: {given.removeprefix('Bearer ')}", "invalid_api_key"))
        return False

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self._authorised():
            return
        fake, path = self.fake, self.path.split("?")[0]
        if path == "/v1/chat/completions":
            fault = fake.pop_fault()
            if fault == "401":
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                return self._send(401, _error(f"Incorrect API key provided: {given}", "invalid_api_key"))
            if fault == "flood":
                return self._send_flood()
            fake._stop.wait(fake.latency + (fake.hang_seconds if fault == "hang" else 0))
            status, headers, payload = fake.complete(json.loads(body), fault)
            self._send(status, payload, headers)
        elif path == "/v1/files":
            msg = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            fields = {p.get_param("name", header="content-disposition"): (p.get_filename(), p.get_payload(decode=True))
                      for p in msg.iter_parts()}
            file_id = fake.next_id("file")
            fake.files[file_id] = {"data": fields["file"][1], "purpose": fields["purpose"][1].decode(),
                                   "filename": fields["file"][0]}
            self._send(200, _file_object(file_id, fake.files[file_id]))
        elif path == "/v1/batches":
            request = json.loads(body)
            if request.get("input_file_id") not in fake.files:
                return self._send(400, _error("unknown input file", "invalid_request"))
            batch_id = fake.next_id("batch")
            fake.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"],
                "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
                "status": "validating", "created_at": int(time.time()), "output_file_id": None,
                "error_file_id": None, "metadata": request.get("metadata"), "errors": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0}, "_polls": 0,
            }
            self._send(200, _public(fake.batches[batch_id]))
        else:
            self._send(404, _error(f"no route {path}", None))

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        fake, parts = self.fake, self.path.split("?")[0].strip("/").split("/")
        if parts == ["v1", "batches"]:
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
            if parts[3:] == ["content"]:
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


def run_batch(requests: Path, results: Path, base_url: str, api_key: str) -> None:
    """Run a Batch API request file through ``base_url`` line by line and write the result
    file, as ``vllm run-batch`` does: its input schema (exactly ``custom_id``, ``method``,
    ``url``, ``body``; POST to /v1/chat/completions) is enforced, its output format written."""
    out = []
    for line in requests.read_text(encoding="utf-8").splitlines():
        request = json.loads(line)
        assert set(request) == {"custom_id", "method", "url", "body"}, request.keys()
        assert request["method"] == "POST" and request["url"] == "/v1/chat/completions", request
        assert isinstance(request["custom_id"], str) and {"model", "messages"} <= set(request["body"])
        http = urllib.request.Request(base_url + "/chat/completions", json.dumps(request["body"]).encode(),
                                      {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
        with urllib.request.urlopen(http, timeout=30) as response:
            body = json.loads(response.read())
        out.append({"id": f"vllm-{len(out)}", "custom_id": request["custom_id"],
                    "response": {"status_code": 200, "request_id": f"vllm-batch-{len(out)}", "body": body},
                    "error": None})
    results.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")


@contextmanager
def silent_server() -> Iterator[str]:
    """A server that accepts connections and reads requests but never answers; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop, connections = threading.Event(), []

    def drain(conn: socket.socket) -> None:
        conn.settimeout(0.05)
        while not stop.is_set():
            try:
                if not conn.recv(1 << 16):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:  # closed
                return
            connections.append(conn)
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        for conn in connections:
            conn.close()
        listener.close()
