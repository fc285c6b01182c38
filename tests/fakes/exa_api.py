"""A local HTTP server that speaks the part of Exa's API the web search uses
(POST /search with contents), for testing the real ``exa-py`` client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            fake.requests.append(body)
            fake.headers.append({k.lower(): v for k, v in self.headers.items()})
            if fake.status != 200:
                status, payload = fake.status, {"error": "scripted failure"}
            elif self.path != "/search":
                status, payload = 404, {"error": f"no route {self.path}"}
            else:
                status, payload = 200, {"requestId": "req-fake", "resolvedSearchType": "neural",
                                        "results": fake.results(body["query"],
                                                                body.get("numResults", 3))}
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
