"""A local HTTP server that speaks Anthropic's Messages API (POST /v1/messages), for
testing the real ``anthropic`` SDK: replies are scripted, requests are recorded."""

from __future__ import annotations

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
        self._lock = threading.Lock()

    def next_reply(self) -> Reply:
        with self._lock:
            return self.script.pop(0) if self.script else error(500, "no scripted reply left")


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
            reply = fake.next_reply()
        return reply.status, reply.body, reply.headers

    with serve_json(route) as fake.url:
        yield fake
