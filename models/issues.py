"""Models of the conversation on a tracking issue: comment commands, comments, pull requests.

Used by the issue tracker activities (``activities/issues.py``, ``activities/github.py``)
and the workflows that poll an issue while a gate is open.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from models.common import Verdict
from models.sdlc import IssueRef


class CommentPollInput(BaseModel):
    """Activity input: read the issue's comments newer than ``after_id``.

    ``after_id`` and ``since`` are the cursor: pass the previous poll's
    ``last_seen_id`` and ``since`` (:meth:`advanced` does), so a poll that finds
    nothing new is one request however long the conversation is.

    Attributes:
        issue: the tracking issue.
        after_id: the last comment ID already seen (0 = none); only later comments count.
        since: read only comments updated at or after this time (UTC; GitHub's
            ``since``); None = the whole conversation.
        not_before: the gate opened at this time (UTC); a command posted earlier is
            answered as too early instead of being acted on.
        gate: the open gate's name, quoted in reply comments.
    """

    issue: IssueRef
    after_id: int = Field(default=0, ge=0)
    since: datetime | None = None
    not_before: datetime
    gate: str

    def advanced(self, poll: CommentPoll) -> CommentPollInput:
        """The input of the next poll: this one with the cursor ``poll`` returned."""
        return self.model_copy(update={"after_id": poll.last_seen_id, "since": poll.since})


class CommentWatchInput(BaseModel):
    """Activity input: poll the issue's comments until a gate command arrives.

    Attributes:
        poll: the first poll's input (its cursor: ``after_id``, ``since``).
        interval: time between two polls.
        window: how long one attempt of the activity polls (heartbeating) before it
            ends with a retryable ``NoNewComments`` failure; Temporal's retry, after
            ``interval``, is the next attempt, so waiting costs no history. 0 = one
            poll per attempt (the infrequent-polling pattern).
    """

    poll: CommentPollInput
    interval: timedelta = Field(gt=timedelta(0))
    window: timedelta = Field(default=timedelta(minutes=10), ge=timedelta(0))


class CommentCommand(BaseModel):
    """One accepted ``/approve``, ``/reject <reason>`` or ``/revise <feedback>`` comment.

    Attributes:
        comment_id: the comment's ID (GitHub comment IDs grow over time).
        author: the commenter's login; their repository permission was checked.
        verdict: the command as a gate verdict.
        text: what follows the command (the reason or feedback), stripped.
        url: the comment's web page.
    """

    comment_id: int
    author: str
    verdict: Verdict
    text: str = ""
    url: str = ""


class CommentPoll(BaseModel):
    """What one comment poll found.

    Attributes:
        commands: accepted commands, oldest first.
        last_seen_id: the highest comment ID read (``after_id`` when there was none).
        since: the ``since`` of the next poll: the newest comment's creation time less
            a margin for comments GitHub shows late (the input's ``since`` when none
            was read).
        ignored: how many commands were ignored and answered (no permission, too early).
    """

    commands: list[CommentCommand] = Field(default_factory=list)
    last_seen_id: int = 0
    since: datetime | None = None
    ignored: int = 0


class CommentInput(BaseModel):
    """Activity input: post a comment on the issue.

    Attributes:
        issue: the tracking issue.
        body: markdown text.
        key: idempotency key: a hidden marker with it is appended to the body and a
            comment already carrying it is reused instead of posting again.
    """

    issue: IssueRef
    body: str
    key: str


class PullRequestInput(BaseModel):
    """Activity input: push ``branch`` and open (or find) its pull request to ``base``.

    Attributes:
        repo_path: the local git repository holding the branch.
        issue: the tracking issue the pull request links (``Closes #N``).
        workflow_id: the run whose pull request it is; named in a hidden marker in its
            body, an open pull request of the branch is reused only when it carries
            it. None: the calling activity's workflow ID.
        branch: the feature branch (the pull request's head).
        base: the branch to merge into.
        title: pull request title.
        body: pull request description (markdown); the issue link is added.
    """

    repo_path: str
    issue: IssueRef
    branch: str
    base: str
    title: str
    body: str = ""
    workflow_id: str | None = None


class PullRequestRef(BaseModel):
    """An open pull request: its number and web page."""

    number: int
    url: str
