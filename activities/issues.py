"""Issue trackers: where a feature's tracking issue lives and which phase label it carries.

The workflow names the activities of :class:`IssueTracker`; the worker registers
one implementation: :class:`LocalIssueTracker` when GitHub is not configured,
:class:`activities.github.GitHubIssueTracker` when it is. Only the GitHub tracker
implements the conversation activities (comment polls, comments, pull requests);
workflows call them only for an issue whose provider is ``github``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory, CancelledError

from activities.git import require_repo
from models.issues import (
    CommentInput,
    CommentPoll,
    CommentPollInput,
    CommentWatchInput,
    PullRequestInput,
    PullRequestRef,
)
from models.sdlc import IssueRef, OpenIssueInput, PhaseLabelInput, SdlcPhase

PHASE_LABEL_PREFIX = "sdlc:"
WATCH_HEARTBEAT_EVERY = 2.0  # seconds between heartbeats while a comment watch waits


def phase_label(phase: str, prefix: str = PHASE_LABEL_PREFIX) -> str:
    """The label that projects a phase onto an issue: ``GATE_1`` -> ``sdlc:gate-1``."""
    return prefix + phase.lower().replace("_", "-")


def phase_labels(prefix: str = PHASE_LABEL_PREFIX) -> list[str]:
    """Every phase label: the ones a reconciliation removes when they are stale."""
    return [phase_label(p.value, prefix) for p in SdlcPhase]


class IssueTracker:
    """The activities every tracker implements (names only; see subclasses)."""

    @activity.defn(name="open_issue")
    def open_issue(self, inp: OpenIssueInput) -> IssueRef:
        """Open the tracking issue of ``inp.workflow_id``, or return the one it opened."""
        raise NotImplementedError

    @activity.defn(name="sync_phase_label")
    def sync_phase_label(self, inp: PhaseLabelInput) -> list[str]:
        """Make the issue carry exactly the label of ``inp.phase``; return its labels."""
        raise NotImplementedError

    @activity.defn(name="poll_issue_comments")
    def poll_comments(self, inp: CommentPollInput) -> CommentPoll:
        """Read new comments; return the gate commands of people allowed to give them."""
        raise NotImplementedError

    @activity.defn(name="post_issue_comment")
    def post_comment(self, inp: CommentInput) -> int:
        """Post a comment once per ``inp.key``; return its ID."""
        raise NotImplementedError

    @activity.defn(name="watch_issue_comments")
    def watch_comments(self, inp: CommentWatchInput) -> CommentPoll:
        """Poll (:meth:`poll_comments`) every ``inp.interval`` until a poll finds a gate
        command, and return that poll; the one long-running activity behind an open
        gate, which adds no history while nothing happens (Temporal samples,
        ``polling/``).

        The cursor advances with every poll and is the heartbeat detail, so a retried
        attempt goes on from it. The activity heartbeats every WATCH_HEARTBEAT_EVERY
        seconds between polls (a dead worker is noticed after the call's heartbeat
        timeout, and a cancel, sent when the gate closes, is seen within that). After
        ``inp.window`` without news the attempt ends with the retryable, benign
        ``NoNewComments`` failure, and Temporal's retry after ``interval`` is the next
        attempt: failed attempts are not written to the history.

        Raises:
            ApplicationError: ``NoNewComments`` (retryable) after the window; the
                errors of :meth:`poll_comments`.
            CancelledError: the gate closed (the workflow cancelled the call).
        """
        details = activity.info().heartbeat_details
        cursor = (CommentPollInput.model_validate(details[0]) if details else inp.poll)
        started = time.monotonic()
        while True:
            poll = self.poll_comments(cursor)
            cursor = cursor.advanced(poll)
            if poll.commands:
                return poll
            activity.heartbeat(cursor)
            if time.monotonic() - started + inp.interval.total_seconds() > \
                    inp.window.total_seconds():
                raise ApplicationError(
                    f"no gate command on issue #{inp.poll.issue.number} yet; polling again "
                    f"in {inp.interval.total_seconds():.0f} s", type="NoNewComments",
                    category=ApplicationErrorCategory.BENIGN)
            deadline = time.monotonic() + inp.interval.total_seconds()
            while (left := deadline - time.monotonic()) > 0:
                if activity.wait_for_cancelled_sync(min(left, WATCH_HEARTBEAT_EVERY)):
                    raise CancelledError("the gate closed")
                if activity.is_worker_shutdown():
                    raise ApplicationError("the worker is shutting down; another worker "
                                           "goes on polling", type="WorkerShutdown")
                activity.heartbeat(cursor)

    @activity.defn(name="open_pull_request")
    def open_pull_request(self, inp: PullRequestInput) -> PullRequestRef:
        """Push the branch and open its pull request, or return the one already open."""
        raise NotImplementedError


class LocalIssueTracker(IssueTracker):
    """Issues as JSON files under ``<root>/<repository name>/<number>.json``.

    Used when GitHub is not configured: numbers are allocated locally and the
    phase label is kept in the file, so status output looks the same.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, repo_path: str) -> Path:
        return self.root / require_repo(repo_path).name

    @activity.defn(name="open_issue")
    def open_issue(self, inp: OpenIssueInput) -> IssueRef:
        """Allocate the next local issue number, reusing one made for this workflow."""
        folder = self._dir(inp.repo_path)
        folder.mkdir(parents=True, exist_ok=True)
        numbers = []
        for path in folder.glob("*.json"):
            issue = json.loads(path.read_text())
            if issue["workflow_id"] == inp.workflow_id:
                return IssueRef(number=issue["number"], provider="local")
            numbers.append(issue["number"])
        number = max(numbers, default=0) + 1
        while True:
            try:  # O_EXCL: two workers never take the same number
                fd = os.open(folder / f"{number}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                break
            except FileExistsError:
                number += 1
        with os.fdopen(fd, "w") as out:
            json.dump({"number": number, "workflow_id": inp.workflow_id, "title": inp.title,
                       "body": inp.body, "labels": []}, out, indent=2)
        return IssueRef(number=number, provider="local")

    @activity.defn(name="sync_phase_label")
    def sync_phase_label(self, inp: PhaseLabelInput) -> list[str]:
        """Replace the issue's phase label; other labels stay."""
        path = self._dir(inp.repo_path) / f"{inp.issue.number}.json"
        issue = json.loads(path.read_text())
        labels = [label for label in issue["labels"] if not label.startswith(PHASE_LABEL_PREFIX)]
        labels.append(phase_label(inp.phase))
        issue["labels"] = labels
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(issue, indent=2))
        os.replace(tmp, path)
        return labels
