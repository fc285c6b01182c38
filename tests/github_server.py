"""A local HTTP server speaking the GitHub REST endpoints the GitHub tracker uses,
for tests and benchmarks of the real PyGithub client, held to GitHub's published
OpenAPI description.

Endpoints: ``GET /repos/{o}/{r}``; issues (list with ``state``, ``creator``,
``since``, ``sort``, ``direction``; create; get) where the list includes pull
requests as issues with a ``pull_request`` key, as GitHub's does; repository
labels (get, create); issue labels (list, add, remove); issue comments (list with
``since``, create); collaborator permission; pulls (list with ``state``, ``head``,
``base``; create — the head branch must exist in the bare git repository given as
``remote``). Every list is paginated at the requested ``per_page`` (default 30,
at most 100) with a ``Link`` header, like GitHub's.

**Contract.** With ``contract=True`` (the default) every request is validated
against GitHub's OpenAPI description (``tests/contract/``) before it is answered,
and every answer the description documents is validated too. A request outside
the description is answered ``422`` and recorded in
:attr:`FakeGitHub.violations`, as is an answer outside it; :class:`GitHubServer`
raises ``AssertionError`` on exit when there were any, so the test fails.
Path segments are routed as GitHub routes them: percent-encoded, one segment per
parameter (``labels/a%2Fb`` is the label ``a/b``; ``labels/a/b`` is no route).

Authentication is ``Authorization: token <TOKEN>``; anything else is 401 "Bad
credentials". :meth:`FakeGitHub.fail_next` injects one fault for the next
matching request: ``drop`` (do the request, then close the connection without a
response — a crash after the effect), ``rate_limit`` (403 primary rate limit with
``x-ratelimit-*`` headers), ``secondary`` (429 with ``retry-after``),
``secondary_403`` (403 naming the secondary rate limit, no ``retry-after``),
``abuse`` (403 naming abuse detection, no ``retry-after``, no "rate limit" text) or
any ``status``. Every request is logged in :attr:`FakeGitHub.requests`.
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
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tests.contract.github_contract import GitHubContract, skeleton

BOT = "orchestrator-bot"
DOCS = "https://docs.github.com/rest"
MAX_PER_PAGE = 100


def stamp(at: datetime | None = None) -> str:
    """GitHub's timestamp format (UTC, whole seconds): ``2026-01-02T03:04:05Z``."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    """One injected failure: the next request matching ``method`` and ``path`` (regex)."""

    method: str
    path: str
    kind: str  # drop | rate_limit | secondary | secondary_403 | abuse | status
    status: int = 500
    message: str = ""
    seconds: int = 1


@dataclass
class Logged:
    """One request the server answered (or dropped); ``path`` is percent-decoded,
    ``query`` the query string's last value of each parameter."""

    at: float
    method: str
    path: str
    status: int
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeGitHub:
    """State of the fake GitHub: one repository, its issues, labels, comments, pulls.

    ``issues`` and ``pulls`` hold the API JSON of each (issues by number); they share
    one number sequence, as on GitHub. Comments are kept per issue number.
    """

    owner: str = "octo"
    name: str = "shop"
    token: str = "test-token"
    remote: Path | None = None
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    permissions: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Logged] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    url: str = ""
    _comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _next_id: int = 1000
    _next_number: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def html(self) -> str:
        return f"https://github.example/{self.full_name}"

    @property
    def base(self) -> str:
        return f"{self.url}/repos/{self.full_name}"

    # -- helpers for tests -------------------------------------------------
    def fail_next(self, method: str, path: str, kind: str, **params: Any) -> None:
        """Inject a fault for the next ``method`` request whose path matches ``path``."""
        with self._lock:
            self.faults.append(Fault(method, path, kind, **params))

    def add_issue(self, title: str, body: str = "", login: str = "someone",
                  at: datetime | None = None) -> dict[str, Any]:
        """A person opens an issue (``at``: its creation time; default now)."""
        with self._lock:
            return self._issue(title, body, login, stamp(at))

    def add_pull(self, head: str, base: str = "main", body: str = "", state: str = "open",
                 login: str = "someone", at: datetime | None = None) -> dict[str, Any]:
        """A person opens (``state="closed"``: opened and closed) a pull request."""
        with self._lock:
            return self._pull(head, base, "A pull request", body, login, stamp(at), state)

    def add_comment(self, number: int, login: str, body: str,
                    at: datetime | None = None) -> dict[str, Any]:
        """A person comments on issue ``number`` (``at``: when; default now)."""
        with self._lock:
            return self._comment(number, login, body, stamp(at))

    def issue_labels(self, number: int) -> list[str]:
        """Label names of an issue."""
        return [label["name"] for label in self.issues[number]["labels"]]

    def set_issue_labels(self, number: int, names: list[str]) -> None:
        """A person edits the issue's labels by hand (labels are created as needed)."""
        with self._lock:
            self.issues[number]["labels"] = [self._label(n) for n in names]

    def delete_label(self, name: str) -> None:
        """A person deletes a label from the repository (GitHub removes it from every
        issue too)."""
        with self._lock:
            self.labels.pop(name, None)
            for issue in self.issues.values():
                issue["labels"] = [label for label in issue["labels"] if label["name"] != name]

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        """The comments of issue ``number``, oldest first."""
        return list(self._comments.get(number, []))

    def count(self, method: str | None = None, path: str = "") -> int:
        """How many requests were answered (of ``method``, whose path matches ``path``)."""
        return sum(1 for r in self.requests if (method is None or r.method == method)
                   and re.search(path, r.path))

    # -- internals ---------------------------------------------------------
    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _number(self) -> int:
        self._next_number += 1
        return self._next_number

    def user(self, login: str, schema: str = "simple-user") -> dict[str, Any]:
        """The JSON of ``login`` in ``schema`` (``simple-user`` or ``nullable-collaborator``)."""
        return skeleton(schema, login=login, id=sum(map(ord, login)) * 7919 % 10**6,
                        type="User", url=f"{self.url}/users/{login}",
                        html_url=f"https://github.example/{login}")

    def _label(self, name: str, color: str = "ededed", description: str = "") -> dict[str, Any]:
        if name not in self.labels:
            self.labels[name] = skeleton(
                "label", id=self._id(), name=name, color=color, description=description,
                url=f"{self.base}/labels/{name}")
        return self.labels[name]

    def _issue(self, title: str, body: str, login: str, at: str) -> dict[str, Any]:
        number = self._number()
        issue = skeleton(
            "issue", id=self._id(), number=number, title=title, body=body, state="open",
            labels=[], user=self.user(login), url=f"{self.base}/issues/{number}",
            repository_url=self.base, comments_url=f"{self.base}/issues/{number}/comments",
            labels_url=f"{self.base}/issues/{number}/labels{{/name}}",
            events_url=f"{self.base}/issues/{number}/events",
            html_url=f"{self.html}/issues/{number}", created_at=at, updated_at=at,
            comments=0, author_association="OWNER")
        self.issues[number] = issue
        return issue

    def _pull(self, head: str, base_ref: str, title: str, body: str, login: str, at: str,
              state: str = "open") -> dict[str, Any]:
        number = self._number()
        url = f"{self.base}/pulls/{number}"

        def ref(name: str) -> dict[str, Any]:
            return {"label": f"{self.owner}:{name}", "ref": name, "sha": "0" * 40,
                    "user": self.user(self.owner),
                    "repo": skeleton("repository", id=1, name=self.name,
                                     full_name=self.full_name, owner=self.user(self.owner),
                                     url=self.base, html_url=self.html)}

        pull = skeleton(
            "pull-request", id=self._id(), number=number, title=title, body=body,
            state=state, head=ref(head), base=ref(base_ref), user=self.user(login), url=url,
            html_url=f"{self.html}/pull/{number}", issue_url=f"{self.base}/issues/{number}",
            created_at=at, updated_at=at, closed_at=None if state == "open" else at,
            labels=[], author_association="OWNER")
        self.pulls.append(pull)
        return pull

    def _comment(self, number: int, login: str, body: str, at: str) -> dict[str, Any]:
        cid = self._id()
        comment = skeleton(
            "issue-comment", id=cid, body=body, user=self.user(login), created_at=at,
            updated_at=at, html_url=f"{self.html}/issues/{number}#issuecomment-{cid}",
            issue_url=f"{self.base}/issues/{number}",
            url=f"{self.base}/issues/comments/{cid}", author_association="NONE")
        self._comments.setdefault(number, []).append(comment)
        if number in self.issues:
            self.issues[number]["comments"] += 1
            self.issues[number]["updated_at"] = max(self.issues[number]["updated_at"], at)
        return comment

    def _pull_as_issue(self, pull: dict[str, Any]) -> dict[str, Any]:
        number = pull["number"]
        return skeleton(
            "issue", id=pull["id"], number=number, title=pull["title"], body=pull["body"],
            state=pull["state"], labels=pull["labels"], user=pull["user"],
            url=f"{self.base}/issues/{number}", repository_url=self.base,
            comments_url=f"{self.base}/issues/{number}/comments",
            labels_url=f"{self.base}/issues/{number}/labels{{/name}}",
            events_url=f"{self.base}/issues/{number}/events", html_url=pull["html_url"],
            created_at=pull["created_at"], updated_at=pull["updated_at"],
            closed_at=pull["closed_at"], comments=0, author_association="OWNER",
            pull_request={"url": pull["url"], "html_url": pull["html_url"],
                          "diff_url": pull["html_url"] + ".diff",
                          "patch_url": pull["html_url"] + ".patch", "merged_at": None})

    def _simple_pull(self, pull: dict[str, Any]) -> dict[str, Any]:
        simple = skeleton("pull-request-simple")
        return {k: pull.get(k, v) for k, v in simple.items()}

    def page(self, path: str, query: dict[str, str],
             items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """One page of ``items`` at the request's ``per_page``/``page``, and its ``Link``
        header (GitHub's ``rel="next"``, ``"last"``, ``"first"``, ``"prev"``)."""
        per_page = min(int(query.get("per_page", 30)), MAX_PER_PAGE)
        number = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        links = []

        def link(n: int, rel: str) -> str:
            return f'<{self.url}{path}?{urlencode({**query, "page": n})}>; rel="{rel}"'

        if number < last:
            links += [link(number + 1, "next"), link(last, "last")]
        if number > 1:
            links += [link(1, "first"), link(number - 1, "prev")]
        chunk = items[(number - 1) * per_page: number * per_page]
        return chunk, ({"Link": ", ".join(links)} if links else {})


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _error(status: int, message: str, **extra: Any) -> tuple[int, Any, dict[str, str]]:
    return status, {"message": message, "documentation_url": DOCS, **extra}, {}


def _route(gh: FakeGitHub, method: str, raw_path: str, query: dict[str, str],
           body: Any) -> tuple[int, Any, dict[str, str]]:
    """Answer one request: (status, JSON body, extra headers)."""
    parts = [unquote(p) for p in raw_path.split("/")]
    if len(parts) < 4 or parts[1] != "repos" or f"{parts[2]}/{parts[3]}" != gh.full_name:
        return _error(404, "Not Found")
    rest = parts[4:]
    if rest == [] and method == "GET":
        return 200, skeleton(
            "full-repository", id=1, name=gh.name, full_name=gh.full_name, url=gh.base,
            html_url=gh.html, owner=gh.user(gh.owner), default_branch="main",
            has_issues=True), {}
    if rest == ["issues"] and method == "GET":
        # issues and pulls have the fields filtered on; a pull is rendered as an issue
        # only when it is on the page
        items = [*gh.issues.values(), *gh.pulls]
        state = query.get("state", "open")
        if state != "all":
            items = [i for i in items if i["state"] == state]
        if "creator" in query:
            items = [i for i in items if i["user"]["login"] == query["creator"]]
        if "since" in query:
            since = stamp(_at(query["since"]))  # one format: compare as text
            items = [i for i in items if i["updated_at"] >= since]
        key = {"created": "number", "updated": "updated_at",
               "comments": "comments"}[query.get("sort", "created")]
        items.sort(key=lambda i: (i[key], i["number"]),
                   reverse=query.get("direction", "desc") == "desc")
        page, links = gh.page(raw_path, query, items)
        return 200, [i if i["number"] in gh.issues else gh._pull_as_issue(i)
                     for i in page], links
    if rest == ["issues"] and method == "POST":
        return 201, gh._issue(body["title"], body.get("body") or "", BOT, stamp()), {}
    if len(rest) == 2 and rest[0] == "labels" and method == "GET":
        label = gh.labels.get(rest[1])
        return (200, label, {}) if label else _error(404, "Not Found")
    if rest == ["labels"] and method == "POST":
        if body["name"] in gh.labels:
            return _error(422, "Validation Failed",
                          errors=[{"resource": "Label", "code": "already_exists",
                                   "field": "name"}])
        return 201, gh._label(body["name"], body.get("color", "ededed"),
                              body.get("description", "")), {}
    if len(rest) >= 2 and rest[0] == "issues" and rest[1].isdigit():
        number, sub = int(rest[1]), rest[2:]
        issue = gh.issues.get(number)
        pull = next((p for p in gh.pulls if p["number"] == number), None)
        if sub == [] and method == "GET" and pull is not None:
            return 200, gh._pull_as_issue(pull), {}
        if issue is None:
            return _error(404, "Not Found")
        if sub == [] and method == "GET":
            return 200, issue, {}
        if sub == ["labels"] and method == "GET":
            return 200, *gh.page(raw_path, query, issue["labels"])
        if sub == ["labels"] and method == "POST":
            for name in body["labels"]:
                if name not in [label["name"] for label in issue["labels"]]:
                    issue["labels"].append(gh._label(name))
            return 200, issue["labels"], {}
        if len(sub) == 2 and sub[0] == "labels" and method == "DELETE":
            if sub[1] not in [label["name"] for label in issue["labels"]]:
                return _error(404, "Label does not exist")
            issue["labels"] = [label for label in issue["labels"] if label["name"] != sub[1]]
            return 200, issue["labels"], {}
        if sub == ["comments"] and method == "GET":
            items = gh.comments_on(number)
            if "since" in query:
                since = stamp(_at(query["since"]))
                items = [c for c in items if c["updated_at"] >= since]
            return 200, *gh.page(raw_path, query, items)
        if sub == ["comments"] and method == "POST":
            return 201, gh._comment(number, BOT, body["body"], stamp()), {}
    if len(rest) == 3 and rest[0] == "collaborators" and rest[2] == "permission" \
            and method == "GET":
        login = rest[1]
        if login not in gh.permissions:
            return _error(404, f"{login} is not a user")
        permission = gh.permissions[login]
        return 200, skeleton("repository-collaborator-permission", permission=permission,
                             role_name=permission,
                             user=gh.user(login, "nullable-collaborator")), {}
    if rest == ["pulls"] and method == "GET":
        pulls = gh.pulls
        if query.get("state", "open") != "all":
            pulls = [p for p in pulls if p["state"] == query.get("state", "open")]
        if "head" in query:
            pulls = [p for p in pulls if p["head"]["label"] == query["head"]]
        if "base" in query:
            pulls = [p for p in pulls if p["base"]["ref"] == query["base"]]
        pulls = sorted(pulls, key=lambda p: p["number"],
                       reverse=query.get("direction", "desc") == "desc")
        page, links = gh.page(raw_path, query, pulls)
        return 200, [gh._simple_pull(p) for p in page], links
    if rest == ["pulls"] and method == "POST":
        head, base_ref = body["head"], body["base"]
        if any(p["head"]["ref"] == head and p["base"]["ref"] == base_ref
               and p["state"] == "open" for p in gh.pulls):
            return _error(422, "Validation Failed", errors=[
                {"resource": "PullRequest", "code": "custom",
                 "message": f"A pull request already exists for {gh.owner}:{head}."}])
        if gh.remote is not None and subprocess.run(
                ["git", "rev-parse", "--verify", "-q", f"refs/heads/{head}"], cwd=gh.remote,
                capture_output=True).returncode != 0:
            return _error(422, "Validation Failed",
                          errors=[{"resource": "PullRequest", "field": "head",
                                   "code": "invalid"}])
        return 201, gh._pull(head, base_ref, body.get("title", ""), body.get("body") or "",
                             BOT, stamp()), {}
    return _error(404, "Not Found")


_FAULT_ANSWERS = {
    "secondary": (429, "You have exceeded a secondary rate limit. Please wait a few minutes "
                       "before you try again."),
    "secondary_403": (403, "You have exceeded a secondary rate limit. Please wait a few "
                           "minutes before you try again. If you reach out to GitHub Support "
                           "for help, please include the request ID."),
    "abuse": (403, "You have triggered an abuse detection mechanism. Please wait a few "
                   "minutes before you try again."),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()  # no Nagle: headers and body go out at once (no 40 ms delayed ACK)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, raw_path: str, query: dict[str, list[str]], raw: bytes,
                fault: Fault | None) -> tuple[int, Any, dict[str, str], bool]:
        """(status, payload, headers, validate the answer) of one request."""
        gh, contract = self.server.gh, self.server.contract
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999",
                   "x-ratelimit-reset": str(int(time.time()) + 3600)}
        auth = self.headers.get("Authorization", "")
        if auth not in (f"token {gh.token}", f"Bearer {gh.token}"):
            return 401, {"message": "Bad credentials", "documentation_url": DOCS}, headers, False
        if contract is not None:
            errors = contract.request_errors(self.command, raw_path, query, raw)
            if errors:
                gh.violations += errors
                return 422, {"message": "request outside GitHub's OpenAPI description: "
                                        + "; ".join(errors)}, headers, False
        if fault is not None and fault.kind == "rate_limit":
            headers.update({"x-ratelimit-remaining": "0",
                            "x-ratelimit-reset": str(int(time.time()) + fault.seconds)})
            return 403, {"message": f"API rate limit exceeded for user ID 1. {fault.message}",
                         "documentation_url": DOCS}, headers, False
        if fault is not None and fault.kind in _FAULT_ANSWERS:
            status, message = _FAULT_ANSWERS[fault.kind]
            if fault.kind == "secondary":
                headers["retry-after"] = str(fault.seconds)
            return status, {"message": message, "documentation_url": DOCS}, headers, False
        if fault is not None and fault.kind == "status":
            return fault.status, {"message": fault.message or "Error",
                                  "documentation_url": DOCS}, headers, False
        body = json.loads(raw) if raw else None
        status, payload, extra = _route(gh, self.command, raw_path,
                                        {k: v[-1] for k, v in query.items()}, body)
        return status, payload, {**headers, **extra}, True

    def _handle(self) -> None:
        gh, contract = self.server.gh, self.server.contract
        url = urlsplit(self.path)
        raw_path = url.path.removeprefix("/api/v3")
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with gh._lock:
            fault = next((f for f in gh.faults if f.method == self.command
                          and re.search(f.path, unquote(raw_path))), None)
            if fault is not None:
                gh.faults.remove(fault)
            try:
                status, payload, headers, check = self._answer(raw_path, query, raw, fault)
            except Exception as err:  # a request the fake cannot answer is a failed test
                gh.violations.append(f"{self.command} {raw_path}: the fake failed: {err!r}")
                status, payload, headers, check = 500, {"message": repr(err)}, {}, False
            data = json.dumps(payload).encode()
            if check and contract is not None:
                gh.violations += contract.response_errors(self.command, raw_path, query, raw,
                                                          status, data)
            gh.requests.append(Logged(time.time(), self.command, unquote(raw_path), status,
                                      {k: v[-1] for k, v in query.items()}))
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)  # the effect happened; the client never hears
            return
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
    contract: GitHubContract | None


_CONTRACT: list[GitHubContract] = []  # built once per process: loading takes ~0.5 s


def _contract() -> GitHubContract:
    if not _CONTRACT:
        _CONTRACT.append(GitHubContract())
    return _CONTRACT[0]


class GitHubServer:
    """Run a :class:`FakeGitHub` on a free local port in a thread (a context manager).

    ``api_url`` is the base URL to give PyGithub (``/api/v3`` style, like Enterprise).
    ``contract``: validate requests and answers against GitHub's OpenAPI description
    (see the module docstring); leaving the block raises ``AssertionError`` listing
    the violations, if any.
    """

    def __init__(self, gh: FakeGitHub | None = None, *, contract: bool = True) -> None:
        self.gh = gh or FakeGitHub()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.gh = self.gh
        self._server.contract = _contract() if contract else None
        self.api_url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v3"
        self.gh.url = self.api_url
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> GitHubServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if exc_type is None and self.gh.violations:
            raise AssertionError("the GitHub client left GitHub's OpenAPI description:\n"
                                 + "\n".join(self.gh.violations[:20]))
