"""A local HTTP server that speaks Anthropic's Messages API (POST /v1/messages), for
testing the real ``anthropic`` SDK: replies are scripted, requests are recorded.

Prompt caching (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching)
is checked and simulated: every ``cache_control`` must be ``{"type": "ephemeral"}``
(optionally with ``ttl`` ``5m`` or ``1h``) on a non-empty block, at most 4 per
request, else the request is refused with a 400 as the API does. The prefix up to
each breakpoint (tools, then system, then messages) is the cache key: the first
request with a prefix reports it as ``cache_creation_input_tokens``, later ones as
``cache_read_input_tokens`` (4 characters a token), unless the scripted reply set
cache usage itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.json_http import serve_json

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


@dataclass
class Reply:
    """One scripted HTTP reply."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def message(content: list[dict[str, Any]], *, model: str = "claude-sonnet-4-6",
            input_tokens: int = 100, output_tokens: int = 50, cache_creation: int = 0,
            cache_read: int = 0) -> Reply:
    """A 200 reply holding a Messages API ``message``."""
    stop = "tool_use" if any(c["type"] == "tool_use" for c in content) else "end_turn"
    return Reply(200, {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_creation_input_tokens": cache_creation,
                  "cache_read_input_tokens": cache_read},
    })


def tool_use(data: dict[str, Any], name: str = "respond", **usage: Any) -> Reply:
    """A reply calling tool ``name`` with ``data``."""
    return message([{"type": "tool_use", "id": "toolu_fake", "name": name, "input": data}],
                   **usage)


def text(answer: str, **usage: Any) -> Reply:
    """A reply with one text block."""
    return message([{"type": "text", "text": answer}], **usage)


def error(status: int, msg: str = "scripted error", **headers: str) -> Reply:
    """An API error reply in Anthropic's error shape."""
    return Reply(status, {"type": "error", "error": {
        "type": ERROR_TYPES.get(status, "api_error"), "message": msg}},
        {k.replace("_", "-"): v for k, v in headers.items()})


class FakeAnthropic:
    """The server's state: ``script`` is consumed one reply per request (an empty
    script answers 500); ``requests`` holds every request body, oldest first."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""
        self.cache: dict[str, int] = {}  # cached prefix -> its tokens
        self.cache_events: list[tuple[str, int]] = []  # ("write" | "read", tokens)
        self._lock = threading.Lock()

    def next_reply(self) -> Reply:
        with self._lock:
            return self.script.pop(0) if self.script else error(500, "no scripted reply left")


def _blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's cacheable parts in prefix order: tools, system, message blocks."""
    system = body.get("system", [])
    parts = list(body.get("tools", []))
    parts += [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
    for msg in body.get("messages", []):
        content = msg.get("content", "")
        parts += [{"type": "text", "text": content}] if isinstance(content, str) else \
            list(content)
    return parts


def cache_problem(body: dict[str, Any]) -> str | None:
    """Why the request's ``cache_control`` fields are invalid, or None."""
    marked = [b for b in _blocks(body) if "cache_control" in b]
    if len(marked) > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {len(marked)}."
    for block in marked:
        control = block["cache_control"]
        if not isinstance(control, dict) or control.get("type") != "ephemeral" or \
                set(control) - {"type", "ttl"} or control.get("ttl", "5m") not in ("5m", "1h"):
            return f"cache_control: invalid value {control!r}"
        if block.get("type") == "text" and not block.get("text", "").strip():
            return "cache_control cannot be set for empty text blocks"
    return None


def simulate_cache(fake: FakeAnthropic, body: dict[str, Any], reply: Reply) -> None:
    """Fill the reply's cache usage from the request's breakpoints (see the module
    docstring); the uncached rest stays ``input_tokens``."""
    usage = reply.body.get("usage")
    if usage is None or usage.get("cache_creation_input_tokens") or \
            usage.get("cache_read_input_tokens"):
        return
    parts = _blocks(body)
    last = max((i for i, b in enumerate(parts) if "cache_control" in b), default=None)
    if last is None:
        return
    prefix = json.dumps(parts[:last + 1], sort_keys=True)
    tokens = len(prefix) // 4
    with fake._lock:
        kind = "read" if prefix in fake.cache else "write"
        fake.cache[prefix] = tokens
        fake.cache_events.append((kind, tokens))
    reply.body = {**reply.body, "usage": {
        **usage, f"cache_{'read' if kind == 'read' else 'creation'}_input_tokens": tokens}}


@contextmanager
def serve() -> Iterator[FakeAnthropic]:
    """Run the fake on a free loopback port; ``fake.url`` is its base URL."""
    fake = FakeAnthropic()

    def route(path: str, body: dict[str, Any], headers: dict[str, str]
              ) -> tuple[int, Any, dict[str, str]]:
        if path.split("?")[0] != "/v1/messages":
            reply = error(404, f"no route {path}")
        else:
            fake.requests.append(body)
            fake.headers.append(headers)
            if problem := cache_problem(body):
                reply = error(400, problem)
            else:
                reply = fake.next_reply()
                simulate_cache(fake, body, reply)
        return reply.status, reply.body, reply.headers

    with serve_json(route) as fake.url:
        yield fake
