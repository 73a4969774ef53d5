"""Batch API files: JSONL request files split under the API's limits, and result lines.

An input line is ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body"}``; the custom id is the image id. A file holds at most 50,000 requests and
200 MB (``batch_max_requests`` / ``batch_max_bytes``); requests are written in order
and a new file starts when the next line would break either limit. Output and error
files hold ``{"custom_id", "response": {"status_code", "body"}, "error"}`` lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from taco_plus.captions.regenerate.request import Answer, MalformedResponse, parse_completion

ENDPOINT = "/v1/chat/completions"


def request_line(custom_id: str, body: dict) -> bytes:
    """One Batch API input line (UTF-8, newline-terminated)."""
    record = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def write_request_files(
    items: Iterable[tuple[str, dict]],
    directory: os.PathLike | str,
    prefix: str,
    max_requests: int,
    max_bytes: int,
    on_oversize: Optional[Callable[[str, int], None]] = None,
) -> Iterator[tuple[Path, list[str]]]:
    """Write ``(custom_id, body)`` requests into ``<prefix>-000.jsonl``, ``-001``, ...

    Files are yielded as soon as they are complete (so they can be uploaded while the
    next one is written); at most one file is open and no request is held in memory.

    Args:
        items: requests, produced lazily.
        directory: output folder (created).
        prefix: file-name prefix.
        max_requests: lines per file.
        max_bytes: bytes per file.
        on_oversize: called with ``(custom_id, size)`` for a request that cannot fit
            in any file (it is skipped); by default such a request raises ValueError.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index, fh, path, ids, size = 0, None, None, [], 0
    try:
        for custom_id, body in items:
            line = request_line(custom_id, body)
            if len(line) > max_bytes:
                if on_oversize is None:
                    raise ValueError(f"request for {custom_id!r} is {len(line)} bytes, over the {max_bytes}-byte file limit")
                on_oversize(custom_id, len(line))
                continue
            if fh is not None and (len(ids) >= max_requests or size + len(line) > max_bytes):
                fh.close()
                yield path, ids
                fh = None
            if fh is None:
                path = directory / f"{prefix}-{index:03d}.jsonl"
                index += 1
                fh, ids, size = open(path, "wb"), [], 0
            fh.write(line)
            ids.append(custom_id)
            size += len(line)
        if fh is not None:
            fh.close()
            fh = None
            yield path, ids
    finally:
        if fh is not None:
            fh.close()


def parse_result_lines(data: bytes) -> dict[str, dict]:
    """custom id -> result object, from a Batch API output or error file."""
    results = {}
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            results[obj["custom_id"]] = obj
        except (ValueError, KeyError, TypeError):
            continue  # an unreadable line names no request; its image stays pending
    return results


def result_answer(result: dict) -> tuple[Optional[Answer], Optional[str]]:
    """``(answer, None)`` for a successful result line, ``(None, reason)`` otherwise."""
    error = result.get("error")
    if error:
        if isinstance(error, dict):
            return None, f"{error.get('code', 'error')}: {error.get('message', '')}"[:300]
        return None, str(error)[:300]
    response = result.get("response") or {}
    status, body = response.get("status_code"), response.get("body")
    if status != 200:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message", "") if isinstance(error, dict) else str(body)
        return None, f"HTTP {status}: {message}"[:300]
    try:
        return parse_completion(body), None
    except MalformedResponse as err:
        return None, f"malformed response: {err}"
