"""A local HTTP server speaking the GitHub REST endpoints the GitHub tracker uses,
for tests and benchmarks of the real PyGithub client.

Endpoints (GitHub REST API v3 shapes, trimmed to the fields PyGithub reads):
``GET /repos/{o}/{r}``; issues (list, create, get); repository labels (get,
create); issue labels (list, add, remove); issue comments (list, create);
collaborator permission; pulls (list with ``head``/``base``, create — the head
branch must exist in the bare git repository given as ``remote``).

Authentication is ``Authorization: token <TOKEN>``; anything else is 401 "Bad
credentials". :meth:`FakeGitHub.fail_next` injects one fault for the next
matching request: ``drop`` (do the request, then close the connection without a
response — a crash after the effect), ``rate_limit`` (403 primary rate limit with
``x-ratelimit-*`` headers), ``secondary`` (429 with ``retry-after``) or any status.
Every request is logged in :attr:`FakeGitHub.requests`.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

BOT = "orchestrator-bot"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    """One injected failure: the next request matching ``method`` and ``path`` (regex)."""

    method: str
    path: str
    kind: str  # drop | rate_limit | secondary | status
    status: int = 500
    message: str = ""
    seconds: int = 1


@dataclass
class Logged:
    """One request the server answered (or dropped)."""

    at: float
    method: str
    path: str
    status: int


@dataclass
class FakeGitHub:
    """State of the fake GitHub: one repository, its issues, labels, comments, pulls."""

    owner: str = "octo"
    name: str = "shop"
    token: str = "test-token"
    remote: Path | None = None
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    permissions: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Logged] = field(default_factory=list)
    url: str = ""
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    # -- helpers for tests -------------------------------------------------
    def fail_next(self, method: str, path: str, kind: str, **params: Any) -> None:
        """Inject a fault for the next ``method`` request whose path matches ``path``."""
        with self._lock:
            self.faults.append(Fault(method, path, kind, **params))

    def add_comment(self, number: int, login: str, body: str) -> dict[str, Any]:
        """A person comments on issue ``number``."""
        with self._lock:
            return self._comment(number, login, body)

    def issue_labels(self, number: int) -> list[str]:
        """Label names of an issue."""
        return [label["name"] for label in self.issues[number]["labels"]]

    def set_issue_labels(self, number: int, names: list[str]) -> None:
        """A person edits the issue's labels by hand (labels are created as needed)."""
        with self._lock:
            self.issues[number]["labels"] = [self._label(n) for n in names]

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments if c["issue"] == number]

    # -- internals ---------------------------------------------------------
    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _user(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": abs(hash(login)) % 10**6, "type": "User",
                "url": f"{self.url}/users/{login}"}

    def _label(self, name: str, color: str = "ededed", description: str = "") -> dict[str, Any]:
        if name not in self.labels:
            self.labels[name] = {"id": self._id(), "name": name, "color": color,
                                 "description": description,
                                 "url": f"{self.url}/repos/{self.full_name}/labels/{name}"}
        return self.labels[name]

    def _comment(self, number: int, login: str, body: str) -> dict[str, Any]:
        cid = self._id()
        comment = {"id": cid, "issue": number, "body": body, "user": self._user(login),
                   "created_at": _now(), "updated_at": _now(),
                   "html_url": f"https://github.example/{self.full_name}/issues/{number}"
                               f"#issuecomment-{cid}",
                   "url": f"{self.url}/repos/{self.full_name}/issues/comments/{cid}"}
        self.comments.append(comment)
        return comment

    def _issue_json(self, issue: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in issue.items()}


def _route(gh: FakeGitHub, method: str, path: str, query: dict[str, list[str]],
           body: Any) -> tuple[int, Any]:
    """Answer one request: (status, JSON body)."""
    repo_prefix = f"/repos/{gh.full_name}"
    if not path.startswith("/repos/"):
        return 404, {"message": "Not Found"}
    parts = path.split("/")
    if f"/repos/{parts[2]}/{parts[3]}" != repo_prefix:
        return 404, {"message": "Not Found"}
    rest = "/" + "/".join(parts[4:]) if len(parts) > 4 else ""
    q = {k: v[0] for k, v in query.items()}
    base = f"{gh.url}{repo_prefix}"
    if rest == "" and method == "GET":
        return 200, {"id": 1, "name": gh.name, "full_name": gh.full_name, "url": base,
                     "html_url": f"https://github.example/{gh.full_name}",
                     "owner": gh._user(gh.owner), "default_branch": "main"}
    if rest == "/issues" and method == "GET":
        issues = sorted(gh.issues.values(), key=lambda i: i["number"],
                        reverse=q.get("direction", "desc") == "desc")
        if q.get("state", "open") != "all":
            issues = [i for i in issues if i["state"] == q.get("state", "open")]
        return 200, [gh._issue_json(i) for i in issues][: int(q.get("per_page", 30))]
    if rest == "/issues" and method == "POST":
        number = max([*gh.issues, *(p["number"] for p in gh.pulls)], default=0) + 1
        issue = {"id": gh._id(), "number": number, "title": body["title"],
                 "body": body.get("body", ""), "state": "open", "labels": [],
                 "user": gh._user(BOT), "url": f"{base}/issues/{number}",
                 "html_url": f"https://github.example/{gh.full_name}/issues/{number}",
                 "created_at": _now(), "updated_at": _now(), "comments": 0}
        gh.issues[number] = issue
        return 201, gh._issue_json(issue)
    m = re.fullmatch(r"/labels/(.+)", rest)
    if m and method == "GET":
        name = unquote(m.group(1))
        return (200, gh.labels[name]) if name in gh.labels else (404, {"message": "Not Found"})
    if rest == "/labels" and method == "POST":
        if body["name"] in gh.labels:
            return 422, {"message": "Validation Failed",
                         "errors": [{"resource": "Label", "code": "already_exists"}]}
        return 201, gh._label(body["name"], body.get("color", "ededed"),
                              body.get("description", ""))
    m = re.fullmatch(r"/issues/(\d+)(/.*)?", rest)
    if m:
        number, sub = int(m.group(1)), m.group(2) or ""
        issue = gh.issues.get(number)
        if issue is None:
            return 404, {"message": "Not Found"}
        if sub == "" and method == "GET":
            return 200, gh._issue_json(issue)
        if sub == "/labels" and method == "GET":
            return 200, issue["labels"]
        if sub == "/labels" and method == "POST":
            names = body["labels"] if isinstance(body, dict) else body
            for name in names:
                if name not in [label["name"] for label in issue["labels"]]:
                    issue["labels"].append(gh._label(name))
            return 200, issue["labels"]
        lm = re.fullmatch(r"/labels/(.+)", sub)
        if lm and method == "DELETE":
            name = unquote(lm.group(1))
            if name not in [label["name"] for label in issue["labels"]]:
                return 404, {"message": "Label does not exist"}
            issue["labels"] = [label for label in issue["labels"] if label["name"] != name]
            return 200, issue["labels"]
        if sub == "/comments" and method == "GET":
            return 200, gh.comments_on(number)
        if sub == "/comments" and method == "POST":
            return 201, gh._comment(number, BOT, body["body"])
    m = re.fullmatch(r"/collaborators/([^/]+)/permission", rest)
    if m and method == "GET":
        login = unquote(m.group(1))
        if login not in gh.permissions:
            return 404, {"message": "Not Found"}
        return 200, {"permission": gh.permissions[login], "user": gh._user(login)}
    if rest == "/pulls" and method == "GET":
        pulls = gh.pulls
        if "head" in q:
            pulls = [p for p in pulls if f"{gh.owner}:{p['head']['ref']}" == q["head"]]
        if "base" in q:
            pulls = [p for p in pulls if p["base"]["ref"] == q["base"]]
        return 200, pulls
    if rest == "/pulls" and method == "POST":
        head, base_ref = body["head"], body["base"]
        if any(p["head"]["ref"] == head and p["state"] == "open" for p in gh.pulls):
            return 422, {"message": "Validation Failed", "errors": [
                {"message": f"A pull request already exists for {gh.owner}:{head}."}]}
        if gh.remote is not None and subprocess.run(
                ["git", "rev-parse", "--verify", "-q", f"refs/heads/{head}"], cwd=gh.remote,
                capture_output=True).returncode != 0:
            return 422, {"message": "Validation Failed",
                         "errors": [{"field": "head", "code": "invalid"}]}
        number = max([*gh.issues, *(p["number"] for p in gh.pulls)], default=0) + 1
        pull = {"id": gh._id(), "number": number, "title": body.get("title", ""),
                "body": body.get("body", ""), "state": "open",
                "head": {"ref": head, "label": f"{gh.owner}:{head}"},
                "base": {"ref": base_ref, "label": f"{gh.owner}:{base_ref}"},
                "url": f"{base}/pulls/{number}",
                "html_url": f"https://github.example/{gh.full_name}/pull/{number}",
                "user": gh._user(BOT), "created_at": _now()}
        gh.pulls.append(pull)
        return 201, pull
    return 404, {"message": "Not Found"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()  # no Nagle: headers and body go out at once (no 40 ms delayed ACK)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        gh = self.server.gh
        url = urlsplit(self.path)
        path = url.path.removeprefix("/api/v3")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with gh._lock:
            fault = next((f for f in gh.faults if f.method == self.command
                          and re.search(f.path, path)), None)
            if fault is not None:
                gh.faults.remove(fault)
            headers: dict[str, str] = {"x-ratelimit-limit": "5000",
                                       "x-ratelimit-remaining": "4999",
                                       "x-ratelimit-reset": str(int(time.time()) + 3600)}
            auth = self.headers.get("Authorization", "")
            if auth not in (f"token {gh.token}", f"Bearer {gh.token}"):
                status, payload = 401, {"message": "Bad credentials"}
            elif fault is not None and fault.kind == "rate_limit":
                status = 403
                payload = {"message": f"API rate limit exceeded for user ID 1. {fault.message}"}
                headers.update({"x-ratelimit-remaining": "0",
                                "x-ratelimit-reset": str(int(time.time()) + fault.seconds)})
            elif fault is not None and fault.kind == "secondary":
                status = 429
                payload = {"message": "You have exceeded a secondary rate limit. Please wait "
                                      "a few minutes before you try again."}
                headers["retry-after"] = str(fault.seconds)
            elif fault is not None and fault.kind == "status":
                status, payload = fault.status, {"message": fault.message or "Error"}
            else:
                status, payload = _route(gh, self.command, path, parse_qs(url.query), body)
            gh.requests.append(Logged(time.time(), self.command, path, status))
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)  # the effect happened; the client never hears
            return
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    gh: FakeGitHub


class GitHubServer:
    """Run a :class:`FakeGitHub` on a free local port in a thread (a context manager).

    ``api_url`` is the base URL to give PyGithub (``/api/v3`` style, like Enterprise).
    """

    def __init__(self, gh: FakeGitHub | None = None) -> None:
        self.gh = gh or FakeGitHub()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.gh = self.gh
        self.api_url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v3"
        self.gh.url = self.api_url
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> GitHubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
