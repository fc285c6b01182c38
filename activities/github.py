"""GitHub as the issue tracker (PyGithub): the tracking issue, phase labels, comment
commands and the pull request.

Configured by GITHUB_TOKEN, GITHUB_REPOSITORY (``owner/name``) and GITHUB_API_URL
(GitHub Enterprise: ``https://HOST/api/v3``). PyGithub's own retries and request
pacing are off: every failure becomes an ``ApplicationError`` that Temporal retries
or not (:func:`github_call`):

* 401 and 403 (not a rate limit): non-retryable, naming the token permission needed;
* 404: non-retryable, naming the repository (or issue) that was not found;
* rate limits (403/429 with ``retry-after`` or ``x-ratelimit-remaining: 0``, or
  GitHub's rate-limit messages): retryable after the reset time via
  ``next_retry_delay`` (GitHub REST docs, "Rate limits for the REST API":
  wait ``retry-after`` seconds, else until ``x-ratelimit-reset``, else one minute);
* 408, 409, 5xx and network errors: retryable with the activity's backoff;
* other 4xx: non-retryable with GitHub's message.

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
from datetime import timedelta
from pathlib import Path

import requests
from github import Auth, Github, GithubException, UnknownObjectException
from github.Issue import Issue
from github.Repository import Repository
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.git import git, require_repo
from activities.issues import PHASE_LABEL_PREFIX, IssueTracker, phase_label, phase_labels
from activities.processes import run_sync
from models.common import Verdict
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
MARKER_SCAN = 100  # newest issues searched for a marker (a retry comes minutes later)
SECONDARY_RATE_LIMIT_WAIT = timedelta(minutes=1)  # GitHub: "wait at least one minute"
ALLOWED_PERMISSIONS = ("admin", "maintain", "write")
_COMMAND = re.compile(r"^/(approve|reject|revise)(?=\s|$)\s*(.*)\Z", re.S)

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


def rate_limit_delay(status: int, headers: dict[str, str], message: str,
                     now: float | None = None) -> timedelta | None:
    """How long to wait before retrying, when a response is a rate limit; else None.

    ``headers`` keys are lower case. Source: GitHub REST docs, "Rate limits for the
    REST API" / "Exceeding the rate limit": ``retry-after`` seconds when present;
    else, when ``x-ratelimit-remaining`` is 0, until ``x-ratelimit-reset`` (epoch
    seconds); else, for a secondary rate limit, at least one minute.
    """
    if status not in (403, 429):
        return None
    if "retry-after" in headers:
        return timedelta(seconds=max(1, int(headers["retry-after"])))
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        left = int(headers["x-ratelimit-reset"]) - (time.time() if now is None else now)
        return timedelta(seconds=max(1, round(left)))
    if status == 429 or "rate limit" in message.lower():
        return SECONDARY_RATE_LIMIT_WAIT
    return None


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
        delay = rate_limit_delay(err.status, headers, message)
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
    rate limits are waited out through ``next_retry_delay``). It is lazy: an object
    fetched by number makes no request until it is used (issues), saving a round trip."""
    return Github(auth=Auth.Token(token), base_url=api_url.rstrip("/"), retry=None,
                  timeout=REQUEST_TIMEOUT, per_page=100, seconds_between_requests=None,
                  seconds_between_writes=None, lazy=True)


class GitHubIssueTracker(IssueTracker):
    """The tracking issue, its phase labels, comment commands and the pull request on
    one GitHub repository.

    PyGithub clients are not thread-safe, so each activity thread gets its own
    (:func:`github_client`), and its own check that the repository exists.

    Args:
        token: the GitHub token.
        repository: ``owner/name``.
        api_url: REST API base URL.
        label_prefix: prefix of the phase labels (``sdlc:`` -> ``sdlc:gate-1``).
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
        return [self.open_issue, self.sync_phase_label, self.poll_comments, self.post_comment,
                self.open_pull_request]

    def _client(self) -> Github:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = github_client(self._token, self.api_url)
        return client

    def _repo(self) -> Repository:
        repo = getattr(self._local, "repo", None)
        if repo is None:
            with github_call(f"read the repository {self.repository}", "Metadata: read",
                             missing=f"repository {self.repository} (GITHUB_REPOSITORY)"):
                repo = self._client().withLazy(False).get_repo(self.repository)
            self._local.repo = repo
        return repo

    def _issue(self, ref: IssueRef) -> Issue:
        self._repo()  # the repository exists (a 404 here names it)
        # lazy: no request until used, so reading its labels or comments is one round trip
        return self._client().get_repo(self.repository).get_issue(ref.number)

    def _missing_issue(self, ref: IssueRef) -> str:
        return f"issue #{ref.number} in {self.repository}"

    @activity.defn(name="open_issue")
    def open_issue(self, inp: OpenIssueInput) -> IssueRef:
        """Create the tracking issue with a hidden marker carrying the workflow ID, or
        return the issue a previous attempt created (found by its marker among the
        ``MARKER_SCAN`` newest issues).

        Raises:
            ApplicationError: see :func:`github_call`.
        """
        repo = self._repo()
        mark = marker("workflow-id", inp.workflow_id)
        with github_call("list issues", "Issues: read"):
            newest = repo.get_issues(state="all", sort="created", direction="desc")
            for scanned, issue in enumerate(newest):
                if scanned >= MARKER_SCAN:
                    break
                if issue.pull_request is None and mark in (issue.body or ""):
                    activity.logger.info("reusing issue #%d of %s", issue.number,
                                         inp.workflow_id)
                    return IssueRef(number=issue.number, url=issue.html_url, provider="github")
        body = (f"{inp.body}\n\n---\nTracked by Durable Orchestrator workflow "
                f"`{inp.workflow_id}`. At the review gate, a comment `/approve`, "
                "`/reject <reason>` or `/revise <feedback>` decides.\n\n" + mark)
        with github_call("create the issue", "Issues: read and write"):
            issue = repo.create_issue(title=inp.title, body=body.lstrip())
        return IssueRef(number=issue.number, url=issue.html_url, provider="github")

    def _ensure_label(self, repo: Repository, phase: SdlcPhase) -> str:
        name = phase_label(phase.value, self.label_prefix)
        colour, description = LABEL_STYLE[phase]
        with github_call(f"create the label {name}", "Issues: read and write"):
            try:
                repo.get_label(name)
            except UnknownObjectException:
                try:
                    repo.create_label(name, colour, description)
                except GithubException as err:
                    if err.status != 422:  # 422: made at the same moment by another run
                        raise
        return name

    @activity.defn(name="sync_phase_label")
    def sync_phase_label(self, inp: PhaseLabelInput) -> list[str]:
        """Reconcile the issue's labels with the phase: create the phase label when the
        repository lacks it, remove every other phase label, add this one, leave other
        labels alone. Returns the issue's labels afterwards.

        Raises:
            ApplicationError: see :func:`github_call`.
        """
        repo = self._repo()
        wanted = self._ensure_label(repo, inp.phase)
        phase_names = set(phase_labels(self.label_prefix))
        issue = self._issue(inp.issue)
        with github_call(f"set the phase label of issue #{inp.issue.number}",
                         "Issues: read and write", missing=self._missing_issue(inp.issue)):
            current = [label.name for label in issue.get_labels()]
            stale = [name for name in current if name in phase_names and name != wanted]
            for name in stale:
                try:
                    issue.remove_from_labels(name)
                except UnknownObjectException:
                    pass  # removed by hand meanwhile: the goal is reached
            if wanted not in current:
                issue.add_to_labels(wanted)
        return [name for name in current if name not in stale] + (
            [] if wanted in current else [wanted])

    def _reply(self, issue: Issue, key: str, body: str, seen_markers: str) -> None:
        mark = marker("reply", key)
        if mark not in seen_markers:
            issue.create_comment(f"{body}\n\n{mark}")

    @activity.defn(name="poll_issue_comments")
    def poll_comments(self, inp: CommentPollInput) -> CommentPoll:
        """Read the comments after ``inp.after_id`` and return the gate commands of people
        with admin, maintain or write permission. A command from anyone else, or posted
        before the gate opened, gets a reply comment saying why it was ignored (once:
        the reply carries a marker a retried poll finds).

        Raises:
            ApplicationError: see :func:`github_call`.
        """
        repo = self._repo()
        issue = self._issue(inp.issue)
        poll = CommentPoll(last_seen_id=inp.after_id)
        with github_call(f"read the comments of issue #{inp.issue.number}",
                         "Issues: read and write", missing=self._missing_issue(inp.issue)):
            comments = [c for c in issue.get_comments() if c.id > inp.after_id]
            seen_markers = "\n".join(c.body or "" for c in comments)
            permissions: dict[str, str] = {}
            for comment in comments:
                poll.last_seen_id = max(poll.last_seen_id, comment.id)
                command = parse_command(comment.body)
                if command is None:
                    continue
                verdict, text = command
                login = comment.user.login
                # GitHub times have whole seconds: compare at that resolution
                if comment.created_at < inp.not_before.replace(microsecond=0):
                    poll.ignored += 1
                    self._reply(issue, str(comment.id), (
                        f"@{login}: `/{verdict.value}` ignored: it was posted before "
                        f"{inp.gate} opened for the current spec; post it again to decide."),
                        seen_markers)
                    continue
                if login not in permissions:
                    permissions[login] = self._permission(repo, login)
                if permissions[login] not in ALLOWED_PERMISSIONS:
                    poll.ignored += 1
                    self._reply(issue, str(comment.id), (
                        f"@{login}: `/{verdict.value}` ignored: deciding {inp.gate} needs "
                        f"admin, maintain or write permission on {self.repository}, and you "
                        f"have {permissions[login]}."), seen_markers)
                    continue
                poll.commands.append(CommentCommand(
                    comment_id=comment.id, author=login, verdict=verdict, text=text,
                    url=comment.html_url or ""))
        return poll

    @staticmethod
    def _permission(repo: Repository, login: str) -> str:
        try:
            return repo.get_collaborator_permission(login)
        except UnknownObjectException:
            return "none"

    @activity.defn(name="post_issue_comment")
    def post_comment(self, inp: CommentInput) -> int:
        """Post ``inp.body`` with a marker of ``inp.key``, unless a comment with that
        marker exists (a retried attempt); return the comment's ID.

        Raises:
            ApplicationError: see :func:`github_call`.
        """
        issue = self._issue(inp.issue)
        mark = marker("comment", inp.key)
        with github_call(f"comment on issue #{inp.issue.number}", "Issues: read and write",
                         missing=self._missing_issue(inp.issue)):
            for comment in issue.get_comments():
                if mark in (comment.body or ""):
                    return comment.id
            return issue.create_comment(f"{inp.body}\n\n{mark}").id

    @activity.defn(name="open_pull_request")
    def open_pull_request(self, inp: PullRequestInput) -> PullRequestRef:
        """Push ``inp.branch`` to the configured remote and open a pull request to
        ``inp.base`` whose body links the issue (``Closes #N``); a retried attempt
        finds the pull request it opened.

        Raises:
            ApplicationError: non-retryable when the remote is missing or rejects the
                push as non-fast-forward; see :func:`github_call` for GitHub errors.
        """
        root = require_repo(inp.repo_path)
        if not git(root, "remote", "get-url", self.remote, check=False):
            raise ApplicationError(
                f"{root} has no git remote {self.remote!r} to push {inp.branch} to: add it "
                f"(`git remote add {self.remote} <URL of {self.repository}>`) or set "
                "GITHUB_REMOTE", type="GitPushFailed", non_retryable=True)
        push = _push(root, self.remote, inp.branch)
        if push.returncode != 0:
            rejected = "rejected" in push.stderr
            raise ApplicationError(
                f"pushing {inp.branch} to {self.remote} failed: {push.stderr.strip()}"
                + ("; the remote branch has commits the local one lacks" if rejected else ""),
                type="GitPushFailed", non_retryable=rejected)
        repo = self._repo()
        owner = self.repository.split("/", 1)[0]
        with github_call(f"open the pull request of {inp.branch}", "Pull requests: read and write"):
            for pull in repo.get_pulls(state="all", head=f"{owner}:{inp.branch}", base=inp.base):
                return PullRequestRef(number=pull.number, url=pull.html_url)
            body = f"{inp.body}\n\nCloses #{inp.issue.number}".lstrip()
            pull = repo.create_pull(base=inp.base, head=inp.branch, title=inp.title, body=body)
        return PullRequestRef(number=pull.number, url=pull.html_url)


def _push(root: Path, remote: str, branch: str) -> subprocess.CompletedProcess[str]:
    """``git push remote branch:branch`` that fails instead of asking for credentials
    (a worker has no terminal) and gives up after PUSH_TIMEOUT seconds."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    try:
        return run_sync(
            ["git", "push", "--quiet", remote, f"refs/heads/{branch}:refs/heads/{branch}"],
            cwd=root, env=env, timeout=PUSH_TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([], 1, "", f"no answer from {remote} in "
                                                      f"{PUSH_TIMEOUT} s")
