"""Reading a request body the way every endpoint of ours must: bounded in size and time, JSON
parsed strictly into what Postgres's jsonb can hold faithfully."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import request

# Deeper than any real event (5 levels) by far; stops stack-hungry bodies before json.dumps/Postgres.
MAX_JSON_DEPTH = 64
_READ_CHUNK = 64 * 1024


class BadBody(Exception):
    """The body is not a JSON object we can store; the message is safe to return."""


def _reject_constant(name: str) -> float:
    raise BadBody(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadBody("a number is too large")
    return value


def _check_storable(value: Any) -> None:
    """Refuse what jsonb cannot hold faithfully: NUL characters, lone surrogates, absurd nesting."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadBody(f"the body is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise BadBody("strings must not contain NUL (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody("strings must not contain unpaired surrogates") from None


def parse_body(raw: bytes) -> dict[str, Any]:
    """Strict JSON → dict, or BadBody. UTF-8 only, no NaN/Infinity, no non-finite numbers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the body is not valid UTF-8") from None
    try:
        parsed = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadBody(f"the body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as exc:  # JSONDecodeError, and int() of a >4300-digit integer
        raise BadBody(f"the body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(parsed, dict):
        raise BadBody("the body must be a JSON object")
    _check_storable(parsed)
    return parsed


class SlowBody(Exception):
    """The client did not send its body within the body timeout."""


def read_limited(limit: int, timeout_s: float) -> bytes | None:
    """The body, or None when it is over ``limit``; never reads more than ``limit + 1`` bytes, and
    raises ``SlowBody`` when it has not all arrived within ``timeout_s`` (a stalled client must not
    hold its connection forever)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    stream = request.stream  # chunked bodies (no Content-Length) arrive here too under gunicorn
    # Under gunicorn the client's socket is at hand; a deadline on it bounds every read.
    sock = request.environ.get("gunicorn.socket")
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= limit:
            if sock is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SlowBody
                sock.settimeout(remaining)
            chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except (TimeoutError, OSError) as exc:
        raise SlowBody from exc
    finally:
        if sock is not None:
            sock.settimeout(None)
    return None if total > limit else b"".join(chunks)


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    mimetype, _, params = content_type.partition(";")
    if mimetype.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False  # we only decode UTF-8 (RFC 8259); another charset would be misread
    return True
