"""GitHub as the issue tracker (PyGithub): the tracking issue, phase labels, comment
commands and the pull request.

Configured by GITHUB_TOKEN, GITHUB_REPOSITORY (``owner/name``) and GITHUB_API_URL
(GitHub Enterprise: ``https://HOST/api/v3``). PyGithub's own retries and request
pacing are off: every failure becomes an ``ApplicationError`` that Temporal retries
or not (:func:`github_call`):

* 401 and 403 (not a rate limit): non-retryable, naming the token permission needed;
* 404: non-retryable, naming the repository (or issue) that was not found;
* rate limits (see :func:`rate_limit_delay`): retryable after the wait GitHub asks
  for, via ``next_retry_delay``;
* 408, 409, 5xx and network errors: retryable with the activity's backoff;
* other 4xx: non-retryable with GitHub's message.

Requests go through PyGithub's requester with the JSON GitHub answered, in the
shapes of GitHub's OpenAPI description (``tests/contract/`` checks them): list
responses are read as returned (a PyGithub object would fetch an issue again to
read a key the list left out, such as ``pull_request``), label names are escaped
as one path segment, labels are added as ``{"labels": [...]}``, and every list is
narrowed by ``since`` so its cost does not grow with the repository's history.

GitHub has no idempotency keys, so each write carries a hidden marker
(``<!-- durable-orchestrator:KIND=VALUE -->``) that a retried attempt looks for
before writing again.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from github import Auth, Github, GithubException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.git import git, git_env, require_repo
from activities.issues import PHASE_LABEL_PREFIX, IssueTracker, phase_label, phase_labels
from activities.processes import run_sync
from models.common import Verdict, text_size_problem
from models.issues import (
    CommentCommand,
    CommentInput,
    CommentPoll,
    CommentPollInput,
    PullRequestInput,
    PullRequestRef,
)
from models.sdlc import IssueRef, OpenIssueInput, PhaseLabelInput, SdlcPhase

DEFAULT_API_URL = "https://api.github.com"
REQUEST_TIMEOUT = 20  # seconds per HTTP request; inside the activity's start-to-close
PUSH_TIMEOUT = 30  # seconds for git push; inside the activity's start-to-close
PER_PAGE = 100  # GitHub's maximum page size
# git credential helper of a push to GitHub: answers `get` with the token from the
# GITHUB_TOKEN variable of the push's own environment (GitHub takes any user name
# with a token); it is text in argv, the token is not
CREDENTIAL_HELPER = ('!f() { test "$1" = get || exit 0; echo username=x-access-token; '
                     'echo "password=$GITHUB_TOKEN"; }; f')
# GitHub's clock against the Temporal server's: an issue this run made is searched among
# those created since the run's start less this margin
CLOCK_SKEW = timedelta(minutes=5)
# a comment poll re-reads this much before the newest comment it saw: GitHub may show a
# comment created a moment earlier only after a later one (IDs keep the reads exact)
COMMENT_OVERLAP = timedelta(minutes=1)
# secondary rate limits without retry-after: GitHub asks to "wait at least one minute"
# and to wait "an exponentially increasing amount of time" when hit again
SECONDARY_RATE_LIMIT_WAIT = timedelta(minutes=1)
SECONDARY_RATE_LIMIT_MAX_WAIT = timedelta(minutes=30)
ALLOWED_PERMISSIONS = ("admin", "maintain", "write")
_COMMAND = re.compile(r"^/(approve|reject|revise)(?=\s|$)\s*(.*)\Z", re.S)
_SECONDARY = re.compile(r"secondary rate limit|abuse detection|rate limit", re.I)
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')

# colour (hex, no #) and description of each phase label
LABEL_STYLE: dict[SdlcPhase, tuple[str, str]] = {
    SdlcPhase.IDLE: ("ededed", "SDLC: not started"),
    SdlcPhase.PHASE_1: ("c5def5", "SDLC: setting up issue, branch and worktree"),
    SdlcPhase.PHASE_2: ("1d76db", "SDLC: the agent is writing the spec"),
    SdlcPhase.GATE_1: ("fbca04", "SDLC: waiting for review (/approve, /reject, /revise)"),
    SdlcPhase.DONE: ("0e8a16", "SDLC: spec approved, pull request opened"),
    SdlcPhase.FAILED: ("b60205", "SDLC: run failed"),
    SdlcPhase.CANCELED: ("5a5a5a", "SDLC: run canceled"),
}


def marker(kind: str, value: str | int) -> str:
    """The hidden marker ``<!-- durable-orchestrator:KIND=VALUE -->`` put in issue and
    comment bodies to find them again."""
    return f"<!-- durable-orchestrator:{kind}={value} -->"


def parse_command(body: str) -> tuple[Verdict, str] | None:
    """The gate command a comment gives, or None.

    ``"/revise name the columns"`` -> ``(Verdict.REVISE, "name the columns")``. The
    command must start the comment; ``/approved`` is not a command.
    """
    match = _COMMAND.match((body or "").strip())
    if not match:
        return None
    return Verdict(match.group(1)), match.group(2).strip()


def github_time(at: datetime) -> str:
    """A time as GitHub's ``since`` takes it (ISO 8601, UTC, whole seconds, ``Z``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_github_time(text: str) -> datetime:
    """GitHub's ``2026-01-02T03:04:05Z`` as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rate_limit_delay(status: int, headers: dict[str, str], message: str,
                     now: float | None = None, attempt: int = 1) -> timedelta | None:
    """How long to wait before retrying, when a response is a rate limit; else None.

    ``headers`` keys are lower case; ``attempt`` is the activity attempt (1 = first).
    Source: GitHub REST docs, "Rate limits for the REST API", "Exceeding the rate
    limit" and "Handle rate limit errors appropriately", in this order:

    1. ``retry-after`` present: that many seconds;
    2. ``x-ratelimit-remaining`` is 0: until ``x-ratelimit-reset`` (epoch seconds);
    3. a secondary rate limit — 429, or a 403 whose message names a secondary rate
       limit, abuse detection or a rate limit, without those headers: at least one
       minute, doubling with each further attempt (1, 2, 4 ... min), at most
       ``SECONDARY_RATE_LIMIT_MAX_WAIT``.

    Any other 403 (a missing permission) is no rate limit: None.
    """
    if status not in (403, 429):
        return None
    if "retry-after" in headers:
        return timedelta(seconds=max(1, int(headers["retry-after"])))
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        left = int(headers["x-ratelimit-reset"]) - (time.time() if now is None else now)
        return timedelta(seconds=max(1, round(left)))
    if status == 429 or _SECONDARY.search(message):
        wait = SECONDARY_RATE_LIMIT_WAIT * 2 ** min(max(0, attempt - 1), 16)
        return min(wait, SECONDARY_RATE_LIMIT_MAX_WAIT)
    return None


def _attempt() -> int:
    return activity.info().attempt if activity.in_activity() else 1


@contextmanager
def github_call(what: str, permission: str, missing: str = "") -> Iterator[None]:
    """Turn PyGithub and network failures inside the block into ApplicationErrors
    (see the module docstring).

    Args:
        what: what the block does, as a verb phrase ("create the issue").
        permission: the fine-grained token permission it needs ("Issues: read and write").
        missing: what a 404 means ("issue #3 in o/r"); empty = a generic message.

    Raises:
        ApplicationError: always, when the block raised.
    """
    try:
        yield
    except GithubException as err:
        headers = {k.lower(): str(v) for k, v in (err.headers or {}).items()}
        message = err.message or (err.data.get("message", "") if isinstance(err.data, dict)
                                  else str(err.data or ""))
        delay = rate_limit_delay(err.status, headers, message, attempt=_attempt())
        if delay is not None:
            raise ApplicationError(
                f"GitHub rate limit hit trying to {what} ({err.status} {message}); "
                f"retrying in {delay.total_seconds():.0f} s",
                type="GitHubRateLimited", next_retry_delay=delay) from None
        if err.status == 401:
            raise ApplicationError(
                f"GitHub refused GITHUB_TOKEN trying to {what} (401 {message}): set "
                f"GITHUB_TOKEN to a valid token with the {permission} permission",
                type="GitHubUnauthorized", non_retryable=True) from None
        if err.status == 403:
            raise ApplicationError(
                f"GITHUB_TOKEN may not {what} (403 {message}): give the token the "
                f"{permission} permission on the repository",
                type="GitHubForbidden", non_retryable=True) from None
        if err.status == 404:
            raise ApplicationError(
                f"cannot {what}: {missing or 'not found'} (404); check GITHUB_REPOSITORY "
                "and that GITHUB_TOKEN can see the repository",
                type="GitHubNotFound", non_retryable=True) from None
        retryable = err.status in (408, 409) or err.status >= 500
        raise ApplicationError(f"GitHub failed to {what}: {err.status} {message}",
                               type="GitHubError", non_retryable=not retryable) from None
    except requests.RequestException as err:
        raise ApplicationError(f"cannot reach GitHub to {what}: {err}",
                               type="GitHubUnavailable") from None


def github_client(token: str, api_url: str = DEFAULT_API_URL) -> Github:
    """A PyGithub client with its own retries and request pacing off (Temporal retries;
    rate limits are waited out through ``next_retry_delay``)."""
    return Github(auth=Auth.Token(token), base_url=api_url.rstrip("/"), retry=None,
                  timeout=REQUEST_TIMEOUT, per_page=PER_PAGE, seconds_between_requests=None,
                  seconds_between_writes=None, lazy=True)


def _segment(value: str) -> str:
    """``value`` as one URL path segment (``sdlc/gate-1`` -> ``sdlc%2Fgate-1``)."""
    return quote(value, safe="")


class GitHubIssueTracker(IssueTracker):
    """The tracking issue, its phase labels, comment commands and the pull request on
    one GitHub repository.

    PyGithub clients are not thread-safe, so each activity thread gets its own
    (:func:`github_client`).

    Args:
        token: the GitHub token.
        repository: ``owner/name``.
        api_url: REST API base URL.
        label_prefix: prefix of the phase labels (``sdlc:`` -> ``sdlc:gate-1``); any
            text, ``/`` included.
        remote: the git remote of the local repository that is the GitHub repository;
            DONE pushes the feature branch there.
    """

    def __init__(self, token: str, repository: str, *, api_url: str = DEFAULT_API_URL,
                 label_prefix: str = PHASE_LABEL_PREFIX, remote: str = "origin") -> None:
        self.repository = repository
        self.api_url = api_url
        self.label_prefix = label_prefix
        self.remote = remote
        self._token = token
        self._local = threading.local()

    def activities(self) -> list:
        """Every activity of this tracker, for the worker."""
        return [self.open_issue, self.sync_phase_label, self.poll_comments,
                self.watch_comments, self.post_comment, self.open_pull_request]

    def _client(self) -> Github:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = github_client(self._token, self.api_url)
        return client

    def _request(self, verb: str, path: str, params: dict[str, Any] | None = None,
                 body: Any = None) -> Any:
        """One REST request on the repository (``path`` after ``/repos/{owner}/{repo}``,
        segments already escaped); returns GitHub's JSON.

        Raises:
            GithubException: GitHub answered an error (see :func:`github_call`).
        """
        _, data = self._client().requester.requestJsonAndCheck(
            verb, f"/repos/{self.repository}{path}", parameters=params, input=body)
        return data

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The items of a list endpoint, page by page (``per_page`` 100, following the
        ``Link`` header's ``rel="next"``), as GitHub returned them; stop reading to
        stop requesting."""
        requester = self._client().requester
        url: str | None = f"/repos/{self.repository}{path}"
        query: dict[str, Any] | None = {**params, "per_page": PER_PAGE}
        while url:
            headers, data = requester.requestJsonAndCheck("GET", url, parameters=query)
            yield from data
            link = {k.lower(): v for k, v in headers.items()}.get("link", "")
            found = _NEXT.search(str(link))
            url, query = (found.group(1), None) if found else (None, None)

    def _missing_issue(self, ref: IssueRef) -> str:
        return f"issue #{ref.number} in {self.repository}"

    @activity.defn(name="open_issue")
    def open_issue(self, inp: OpenIssueInput) -> IssueRef:
        """Create the tracking issue with a hidden marker carrying the workflow ID, or
        return the issue a previous attempt created.

        The search is exact and cheap: the repository's issues and pull requests
        updated since the run started (``inp.since`` less ``CLOCK_SKEW``), newest
        created first, read until one was created before that time; the marker is
        looked for in the bodies of the list answer itself. On a repository of any
        size that is one request (one per 100 issues opened since the run started),
        so ``open_issue`` costs two requests: the search and the creation.

        Raises:
            ApplicationError: see :func:`github_call`.
        """
        mark = marker("workflow-id", inp.workflow_id)
        started = inp.since or (activity.info().scheduled_time if activity.in_activity()
                                else datetime.now(UTC))
        window = started - CLOCK_SKEW
        with github_call("list issues", "Issues: read",
                         missing=f"repository {self.repository} (GITHUB_REPOSITORY)"):
            for item in self._pages("/issues", {"state": "all", "sort": "created",
                                                "direction": "desc",
                                                "since": github_time(window)}):
                if parse_github_time(item["created_at"]) < window:
                    break
                if "pull_request" not in item and mark in (item.get("body") or ""):
                    activity.logger.info("reusing issue #%d of %s", item["number"],
                                         inp.workflow_id)
                    return IssueRef(number=item["number"], url=item["html_url"],
                                    provider="github")
        body = (f"{inp.body}\n\n---\nTracked by Durable Orchestrator workflow "
                f"`{inp.workflow_id}`. At the review gate, a comment `/approve`, "
                "`/reject <reason>` or `/revise <feedback>` decides.\n\n" + mark)
        with github_call("create the issue", "Issues: read and write",
                         missing=f"repository {self.repository} (GITHUB_REPOSITORY)"):
            issue = self._request("POST", "/issues",
                                  body={"title": inp.title, "body": body.lstrip()})
        return IssueRef(number=issue["number"], url=issue["html_url"], provider="github")

    def _ensure_label(self, phase: SdlcPhase) -> str:
        """Create the repository's label of ``phase`` with its colour and description
        when the repository lacks it (a person may have deleted it: checked every time
        it is about to be added to an issue, never cached); return its name."""
        name = phase_label(phase.value, self.label_prefix)
        colour, description = LABEL_STYLE[phase]
        with github_call(f"create the label {name}", "Issues: read and write",
                         missing=f"repository {self.repository} (GITHUB_REPOSITORY)"):
            try:
                self._request("GET", f"/labels/{_segment(name)}")
            except GithubException as err:
                if err.status != 404:
                    raise
                try:
                    self._request("POST", "/labels", body={
                        "name": name, "color": colour, "description": description})
                except GithubException as made:
                    if made.status != 422:  # 422: made at the same moment by another run
                        raise
        return name

    @activity.defn(name="sync_phase_label")
    def sync_phase_label(self, inp: PhaseLabelInput) -> list[str]:
        """Reconcile the issue's labels with the phase: remove every other phase label,
        add this one when the issue lacks it (a person may have removed it; the
        repository's label is created first, with its colour and description, when
        the repository lacks it too), leave other labels alone. Returns the issue's
        labels afterwards. Cost: one request when the issue already carries exactly
        the phase label.

        Raises:
            ApplicationError: see :func:`github_call`.
        """
        wanted = phase_label(inp.phase.value, self.label_prefix)
        phase_names = set(phase_labels(self.label_prefix))
        issue = f"/issues/{inp.issue.number}"
        with github_call(f"set the phase label of issue #{inp.issue.number}",
                         "Issues: read and write", missing=self._missing_issue(inp.issue)):
            current = [label["name"] for label in self._pages(f"{issue}/labels", {})]
            stale = [name for name in current if name in phase_names and name != wanted]
            for name in stale:
                try:
                    self._request("DELETE", f"{issue}/labels/{_segment(name)}")
                except GithubException as err:
                    if err.status != 404:  # removed by hand meanwhile: the goal is reached
                        raise
            if wanted not in current:
                self._ensure_label(inp.phase)
                self._request("POST", f"{issue}/labels", body={"labels": [wanted]})
        return [name for name in current if name not in stale] + (
            [] if wanted in current else [wanted])

    def _reply(self, number: int, key: str, body: str, seen_markers: str) -> None:
        mark = marker("reply", key)
        if mark not in seen_markers:
            self._request("POST", f"/issues/{number}/comments", body={"body": f"{body}\n\n{mark}"})

    @activity.defn(name="poll_issue_comments")
    def poll_comments(self, inp: CommentPollInput) -> CommentPoll:
        """Read the comments after the cursor (``inp.after_id``, ``inp.since``) and return
        the gate commands of people with admin, maintain or write permission, with the
        cursor of the next poll (``inp.advanced(poll)``). A command from anyone else,
        posted before the gate opened, or whose text is over ``MAX_GATE_TEXT_BYTES``
        (its text is not returned, so it never enters history), gets a reply comment
        saying why it was ignored (once: the reply carries a marker a retried poll finds).

        Cost: one request when nothing is new, whatever the number of comments (the
        list is narrowed by ``since``); plus one per 100 new comments, one permission
        check per commenting person, one per reply.

        Raises:
            ApplicationError: see :func:`github_call`.
        """
        number = inp.issue.number
        poll = CommentPoll(last_seen_id=inp.after_id, since=inp.since)
        params = {"since": github_time(inp.since)} if inp.since else {}
        with github_call(f"read the comments of issue #{number}", "Issues: read and write",
                         missing=self._missing_issue(inp.issue)):
            comments = [c for c in self._pages(f"/issues/{number}/comments", params)
                        if c["id"] > inp.after_id]
            seen_markers = "\n".join(c.get("body") or "" for c in comments)
            permissions: dict[str, str] = {}
            for comment in comments:
                poll.last_seen_id = max(poll.last_seen_id, comment["id"])
                created = parse_github_time(comment["created_at"])
                if poll.since is None or created - COMMENT_OVERLAP > poll.since:
                    poll.since = created - COMMENT_OVERLAP
                command = parse_command(comment.get("body") or "")
                if command is None:
                    continue
                verdict, text = command
                login = (comment.get("user") or {}).get("login", "ghost")
                # GitHub times have whole seconds: compare at that resolution
                if created < inp.not_before.replace(microsecond=0):
                    poll.ignored += 1
                    self._reply(number, str(comment["id"]), (
                        f"@{login}: `/{verdict.value}` ignored: it was posted before "
                        f"{inp.gate} opened for the current spec; post it again to decide."),
                        seen_markers)
                    continue
                if login not in permissions:
                    permissions[login] = self._permission(login)
                if permissions[login] not in ALLOWED_PERMISSIONS:
                    poll.ignored += 1
                    self._reply(number, str(comment["id"]), (
                        f"@{login}: `/{verdict.value}` ignored: deciding {inp.gate} needs "
                        f"admin, maintain or write permission on {self.repository}, and you "
                        f"have {permissions[login]}."), seen_markers)
                    continue
                too_large = text_size_problem("comment", text)
                if too_large:  # refused here, so that its text never enters history
                    poll.ignored += 1
                    self._reply(number, str(comment["id"]), (
                        f"@{login}: `/{verdict.value}` ignored: {too_large}; post a "
                        "shorter one (link to a longer text if needed)."), seen_markers)
                    continue
                poll.commands.append(CommentCommand(
                    comment_id=comment["id"], author=login, verdict=verdict, text=text,
                    url=comment.get("html_url") or ""))
        return poll

    def _permission(self, login: str) -> str:
        try:
            answer = self._request("GET", f"/collaborators/{_segment(login)}/permission")
        except GithubException as err:
            if err.status == 404:
                return "none"
            raise
        return answer["permission"]

    @activity.defn(name="post_issue_comment")
    def post_comment(self, inp: CommentInput) -> int:
        """Post ``inp.body`` with a marker of ``inp.key``, unless a comment with that
        marker exists (a retried attempt; only comments since the activity was first
        scheduled, less ``CLOCK_SKEW``, are read); return the comment's ID.

        Raises:
            ApplicationError: see :func:`github_call`.
        """
        number = inp.issue.number
        mark = marker("comment", inp.key)
        params = ({"since": github_time(activity.info().scheduled_time - CLOCK_SKEW)}
                  if activity.in_activity() else {})
        with github_call(f"comment on issue #{number}", "Issues: read and write",
                         missing=self._missing_issue(inp.issue)):
            for comment in self._pages(f"/issues/{number}/comments", params):
                if mark in (comment.get("body") or ""):
                    return comment["id"]
            return self._request("POST", f"/issues/{number}/comments",
                                 body={"body": f"{inp.body}\n\n{mark}"})["id"]

    @activity.defn(name="open_pull_request")
    def open_pull_request(self, inp: PullRequestInput) -> PullRequestRef:
        """Push ``inp.branch`` to the configured remote (:func:`push_command`: the token
        only for an HTTPS remote on this GitHub) and open a pull request to
        ``inp.base`` whose body links the issue (``Closes #N``) and carries a hidden
        marker of the workflow ID. An open pull request of the branch is reused only
        when its body carries that marker (a retried attempt); a closed or merged one,
        or one of another run, is not.

        Raises:
            ApplicationError: non-retryable when the remote is missing or rejects the
                push as non-fast-forward, or when another open pull request holds the
                branch; see :func:`github_call` for GitHub errors.
        """
        root = require_repo(inp.repo_path)
        if not git(root, "remote", "get-url", self.remote, check=False):
            raise ApplicationError(
                f"{root} has no git remote {self.remote!r} to push {inp.branch} to: add it "
                f"(`git remote add {self.remote} <URL of {self.repository}>`) or set "
                "GITHUB_REMOTE", type="GitPushFailed", non_retryable=True)
        push = push_branch(root, self.remote, inp.branch, self._token,
                           web_host(self.api_url))
        if push.returncode != 0:
            rejected = "rejected" in push.stderr
            raise ApplicationError(
                f"pushing {inp.branch} to {self.remote} failed: {push.stderr.strip()}"
                + ("; the remote branch has commits the local one lacks" if rejected else ""),
                type="GitPushFailed", non_retryable=rejected)
        workflow_id = inp.workflow_id or (activity.info().workflow_id
                                          if activity.in_activity() else "")
        mark = marker("workflow-id", workflow_id)
        owner = self.repository.split("/", 1)[0]
        with github_call(f"open the pull request of {inp.branch}",
                         "Pull requests: read and write",
                         missing=f"repository {self.repository} (GITHUB_REPOSITORY)"):
            for pull in self._pages("/pulls", {"state": "open", "head": f"{owner}:{inp.branch}",
                                               "base": inp.base}):
                if mark in (pull.get("body") or ""):
                    return PullRequestRef(number=pull["number"], url=pull["html_url"])
                raise ApplicationError(
                    f"pull request #{pull['number']} ({pull['html_url']}) of another run is "
                    f"open for {inp.branch}: close it, or let it be, then retry",
                    type="GitHubPullRequestTaken", non_retryable=True)
            body = f"{inp.body}\n\nCloses #{inp.issue.number}\n\n{mark}".lstrip()
            pull = self._request("POST", "/pulls", body={
                "base": inp.base, "head": inp.branch, "title": inp.title, "body": body})
        return PullRequestRef(number=pull["number"], url=pull["html_url"])


def web_host(api_url: str) -> str:
    """The host (with its port, if any) of the GitHub whose REST API is ``api_url``:
    ``https://api.github.com`` -> ``github.com``; Enterprise ``https://HOST/api/v3`` ->
    ``HOST``."""
    host = urlsplit(api_url).netloc.rsplit("@", 1)[-1].lower()
    return "github.com" if host == "api.github.com" else host


def push_command(root: Path, remote: str, branch: str, token: str = "",
                 github_host: str = "") -> tuple[list[str], dict[str, str]]:
    """The argv and environment of ``git push remote branch:branch``.

    The environment is git's allowlisted one (``activities.git.git_env``: no worker
    secret, no terminal prompt; ssh in batch mode unless GIT_SSH_COMMAND says
    otherwise). Only when the remote's push URL is HTTPS on ``github_host`` does the
    push get ``token``: in the ``GITHUB_TOKEN`` variable, read by a credential helper
    given as ``-c credential.helper=...`` (it replaces the user's helpers for this one
    push, so none of them stores the token). The token is never in argv.
    """
    url = git(root, "remote", "get-url", "--push", remote, check=False)
    parts = urlsplit(url)
    own = {"GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")}
    config: list[str] = []
    if (token and github_host and parts.scheme == "https"
            and parts.netloc.rsplit("@", 1)[-1].lower() == github_host):
        own["GITHUB_TOKEN"] = token
        config = ["-c", "credential.helper=", "-c", f"credential.helper={CREDENTIAL_HELPER}"]
    argv = ["git", *config, "push", "--quiet", remote,
            f"refs/heads/{branch}:refs/heads/{branch}"]
    return argv, git_env(own)


def push_branch(root: Path, remote: str, branch: str, token: str = "",
                github_host: str = "") -> subprocess.CompletedProcess[str]:
    """Run :func:`push_command`; give up after PUSH_TIMEOUT seconds (a failed result
    saying so, not an exception)."""
    argv, env = push_command(root, remote, branch, token, github_host)
    try:
        return run_sync(argv, cwd=root, env=env, timeout=PUSH_TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([], 1, "", f"no answer from {remote} in "
                                                      f"{PUSH_TIMEOUT} s")
