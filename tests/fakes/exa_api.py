"""A local HTTP server that speaks the part of Exa's API the web search uses
(POST /search with contents), for testing the real ``exa-py`` client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.fakes.json_http import serve_json


class FakeExa:
    """``requests`` holds every request body; ``status`` makes the next searches fail."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.url = ""

    def results(self, query: str, n: int) -> list[dict[str, Any]]:
        slug = "-".join(query.lower().split()[:4])
        return [{"id": f"https://example.org/{slug}/{i}", "url": f"https://example.org/{slug}/{i}",
                 "title": f"Result {i} for {query[:40]}", "score": 0.9 - i / 10,
                 "publishedDate": "2026-01-01", "author": "Example",
                 "text": f"Evidence about {query} from page {i}."} for i in range(1, n + 1)]


@contextmanager
def serve() -> Iterator[FakeExa]:
    """Run the fake on a free loopback port; ``fake.url`` is its base URL."""
    fake = FakeExa()

    def route(path: str, body: dict[str, Any], headers: dict[str, str]
              ) -> tuple[int, Any, dict[str, str]]:
        fake.requests.append(body)
        fake.headers.append(headers)
        if fake.status != 200:
            return fake.status, {"error": "scripted failure"}, {}
        if path != "/search":
            return 404, {"error": f"no route {path}"}, {}
        return 200, {"requestId": "req-fake", "resolvedSearchType": "neural",
                     "results": fake.results(body["query"], body.get("numResults", 3))}, {}

    with serve_json(route) as fake.url:
        yield fake
