"""Models of the SDLC orchestration (seed 002): feature request -> issue, branch,
worktree -> AI-written spec -> human gate -> DONE."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import PurePosixPath

from pydantic import BaseModel, Field, field_validator, model_validator

from models.common import ArtifactRef, AuditEntry, GateInfo
from models.git import BranchRef
from models.text import excerpt
from models.text import slugify as slugify  # re-exported for the CLI

GATE_1 = "GATE_1"
FEEDBACK_EXCERPT_CHARS = 500  # characters of reviewer feedback a query or carried audit shows
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class SdlcPhase(StrEnum):
    """The SDLC state machine of seed 002, plus the two terminal failure states."""

    IDLE = "IDLE"
    PHASE_1 = "PHASE_1"
    PHASE_2 = "PHASE_2"
    GATE_1 = "GATE_1"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class FeatureRequest(BaseModel):
    """Input of SdlcWorkflow: one feature request and how to run it.

    Attributes:
        title: one-line feature title; the branch slug is derived from it.
        description: the request in prose, given to the agent.
        repo_path: absolute path of the local git repository.
        base_branch: branch the feature branch starts from.
        slug: branch slug; derived from the title when empty.
        agent: agent runner name (``offline``, ``command``, ``claude``,
            ``anthropic``); empty means the worker's default.
        max_rounds: spec rounds allowed (first attempt included) before FAILED.
        reviewers: who may decide at GATE_1; empty means anyone.
        reminder_interval: a reminder is recorded this often while GATE_1 is open.
        gate_expiry: GATE_1 expires (the run ends FAILED) after this long; None = never.
        agent_timeout: wall-clock limit of one agent run.
        comment_poll_interval: how often the issue's comments are polled for
            ``/approve``, ``/reject``, ``/revise`` while GATE_1 is open (GitHub only).
        comment_watch_window: how long one attempt of the long-running comment poll
            activity polls before Temporal retries it (models.issues.CommentWatchInput).
        history_budget: history events after which a run waiting at GATE_1
            continues as new (workflows.gates.history_full).
        carried: set by the workflow itself when it continues as new at GATE_1: the
            run's state and the open gate; None when a user starts the run.
    """

    title: str = Field(min_length=1)
    description: str = ""
    repo_path: str
    base_branch: str = "main"
    slug: str = ""
    agent: str = ""
    max_rounds: int = Field(default=3, ge=1)
    reviewers: list[str] = Field(default_factory=list)
    reminder_interval: timedelta = timedelta(hours=24)
    gate_expiry: timedelta | None = None
    agent_timeout: timedelta = timedelta(minutes=30)
    comment_poll_interval: timedelta = Field(default=timedelta(seconds=30),
                                             gt=timedelta(0))
    comment_watch_window: timedelta = Field(default=timedelta(minutes=10),
                                            ge=timedelta(0))
    history_budget: int = Field(default=5_000, ge=100)
    carried: SdlcCarry | None = None

    @field_validator("slug")
    @classmethod
    def _check_slug(cls, value: str) -> str:
        if value and not _SLUG_RE.match(value):
            raise ValueError(
                f"slug {value!r} must be lowercase words of a-z and 0-9 joined by '-'"
            )
        return value

    def effective_slug(self) -> str:
        """The slug to use: the given one, or one derived from the title."""
        return self.slug or slugify(self.title)


class IssueRef(BaseModel):
    """The tracking issue of a feature: ``provider`` is ``local`` or ``github``."""

    number: int
    url: str | None = None
    provider: str = "local"


class OpenIssueInput(BaseModel):
    """Activity input: open (or find) the tracking issue of a workflow.

    Attributes:
        since: when the run started (UTC); only an issue created after it (less a
            clock-skew margin) can be this run's, so the search for one a previous
            attempt made reads only issues updated since. None: since the activity
            was first scheduled.
    """

    workflow_id: str
    repo_path: str
    title: str
    body: str
    since: datetime | None = None


class PhaseLabelInput(BaseModel):
    """Activity input: make the issue carry the label of exactly this phase."""

    repo_path: str
    issue: IssueRef
    phase: SdlcPhase


def output_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be an agent step's output file (None when it can): it
    must be a relative path of a file inside the worktree (no ``..``, no absolute
    path, nothing under ``.git``)."""
    parts = PurePosixPath(path).parts
    if not path.strip() or path.startswith("/") or "\\" in path:
        return f"output {path!r} must be a relative file path inside the workspace"
    if ".." in parts or (parts and parts[0] == ".git") or path.endswith("/"):
        return (f"output {path!r} must be a file inside the workspace (no '..', nothing "
                "under .git)")
    return None


class AgentTask(BaseModel):
    """Activity input: one agent run that writes ``specs/<branch>/spec.md``.

    Attributes:
        workflow_id: the SDLC workflow, named in the commit's trailers.
        round: spec round, 1-based; one commit per round.
        runner: agent runner name; empty = the worker's default.
        worktree: absolute path of the worktree the agent works in.
        branch: the feature branch.
        title, description: the feature request.
        feedback: reviewers' feedback of every earlier round, oldest first, inline.
            Only tasks scheduled by older workflow code carry it; new code sends
            ``new_feedback`` and ``feedback_from`` instead, so that an activity
            input does not grow with the number of rounds.
        new_feedback: the feedback that asked for this round (the latest reviewer
            comment, at most ``MAX_GATE_TEXT_BYTES``); empty in round 1.
        feedback_from: the commit of the previous round, whose ``feedback_relpath``
            holds the feedback of the rounds before it (the reference to earlier
            rounds); empty when there is none.
        feedback_key: names the feedback file when several agents share a branch
            (a workstream's agent steps: the step ID); empty for the SDLC's one.
        timeout_seconds: wall-clock limit of the agent process.
        fence_key: names the step or round whose earlier attempts' processes a new
            attempt kills first (``activities.processes.Fence``); empty =
            ``agent-round-<round>``.
        own_failures_final: raise the agent's own failures (non-zero exit, no
            spec, timeout) as non-retryable, for the workflow to count them
            (workstream steps); the platform then retries only lost attempts.
        instructions: what the agent is asked to do, replacing the SDLC spec
            request (a workstream agent step's ``inputs.instructions``); empty =
            write a feature specification of ``title`` and ``description``.
        output_path: the file the agent writes and the activity commits,
            relative to the worktree (a workstream agent step's ``inputs.output``;
            see :func:`output_path_problem`); empty = ``specs/<branch>/spec.md``.
    """

    workflow_id: str
    round: int = Field(ge=1)
    runner: str = ""
    worktree: str
    branch: str
    title: str
    description: str
    feedback: list[str] = Field(default_factory=list)
    new_feedback: str = ""
    feedback_from: str = ""
    feedback_key: str = ""
    timeout_seconds: float = Field(default=1800, gt=0)
    fence_key: str = ""
    own_failures_final: bool = False
    instructions: str = ""
    output_path: str = ""

    @property
    def spec_relpath(self) -> str:
        """Path, inside the worktree, of the file the agent writes: ``output_path``,
        else the SDLC spec ``specs/<branch>/spec.md``."""
        return self.output_path or f"specs/{self.branch}/spec.md"

    @property
    def feedback_relpath(self) -> str:
        """Path, inside the worktree, of the reviewers' feedback file: every round's
        feedback so far, committed in the same directory as the file the agent writes
        (``spec_relpath``: ``specs/<branch>/`` for the SDLC spec, the configured
        ``output``'s directory for a workstream agent step), named ``feedback.md``, or
        ``feedback-<feedback_key>.md``."""
        parent = PurePosixPath(self.spec_relpath).parent
        return str(parent / self._feedback_name) if str(parent) != "." else \
            self._feedback_name

    @property
    def legacy_feedback_relpath(self) -> str:
        """Where older code kept the feedback file whatever the output path
        (``specs/<branch>/``): read when ``feedback_from`` predates the move."""
        return f"specs/{self.branch}/{self._feedback_name}"

    @property
    def _feedback_name(self) -> str:
        return f"feedback-{self.feedback_key}.md" if self.feedback_key else "feedback.md"


class PendingReply(BaseModel):
    """A reply comment to post on the tracking issue: ``key`` is its idempotency key
    (``models.issues.CommentInput``), ``body`` its markdown text."""

    key: str
    body: str


class SdlcState(BaseModel):
    """What the ``state`` query of SdlcWorkflow returns.

    Attributes:
        phase: current state machine phase.
        round: current spec round (0 before PHASE_2).
        issue, branch, worktree: what PHASE_1 made (None until made).
        specs: one committed spec per finished round.
        feedback: the newest reviewer feedback (the comment of the last reject or
            revise, at most ``MAX_GATE_TEXT_BYTES``), kept whole until the spec it
            asked for is committed with it in ``feedback_file``; the ``state`` query
            and the state carried over continue-as-new keep its first
            ``FEEDBACK_EXCERPT_CHARS`` characters (:meth:`excerpt`). Earlier rounds
            are never kept here.
        feedback_rounds: how many rounds of feedback there were.
        feedback_file: where every round's feedback is, as ``<commit>:<path>`` (``git
            show`` takes it): the feedback file committed with the newest spec, which
            holds the feedback of every round before that spec; empty in round 1.
        pending_replies: GitHub reply comments decided but not yet posted (a refused
            comment command's answer), oldest first; posted once each, before the
            run moves on or continues as new.
        pending_gates: gates open now.
        failure_reason: why the run FAILED or was CANCELED.
        pr_url: the pull request, when one was opened.
        last_comment_id: the newest issue comment already read by a comment poll
            (GitHub), so each comment is acted on once.
        last_comment_since: the ``since`` the next comment poll sends (GitHub reads
            only comments updated since), from the last poll's result.
    """

    phase: SdlcPhase = SdlcPhase.IDLE
    round: int = 0
    issue: IssueRef | None = None
    branch: BranchRef | None = None
    worktree: str | None = None
    specs: list[ArtifactRef] = Field(default_factory=list)
    feedback: str = ""
    feedback_rounds: int = 0
    feedback_file: str = ""
    pending_replies: list[PendingReply] = Field(default_factory=list)
    pending_gates: list[GateInfo] = Field(default_factory=list)
    failure_reason: str | None = None
    pr_url: str | None = None
    last_comment_id: int = 0
    last_comment_since: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _every_round_inline(cls, data: object) -> object:
        """State from older code kept every round's feedback as a list: keep the newest
        and the count."""
        if isinstance(data, dict) and isinstance(data.get("feedback"), list):
            rounds = data["feedback"]
            data = {**data, "feedback": rounds[-1] if rounds else "",
                    "feedback_rounds": data.get("feedback_rounds") or len(rounds)}
        return data

    def excerpt(self) -> SdlcState:
        """This state as the ``state`` query shows it and continue-as-new carries it:
        the feedback cut to its first ``FEEDBACK_EXCERPT_CHARS`` characters (the
        whole text is in ``feedback_file`` once the spec it asked for is committed)."""
        return self.model_copy(
            update={"feedback": excerpt(self.feedback, FEEDBACK_EXCERPT_CHARS)})


class SdlcResult(BaseModel):
    """What SdlcWorkflow returns: the final phase and what was produced."""

    phase: SdlcPhase
    rounds: int
    issue: IssueRef | None = None
    branch: BranchRef | None = None
    spec: ArtifactRef | None = None
    failure_reason: str | None = None
    pr_url: str | None = None
    audit: list[AuditEntry] = Field(default_factory=list)


class SdlcCarry(BaseModel):
    """What an SdlcWorkflow run waiting at GATE_1 carries over continue-as-new.

    Attributes:
        state: the run's state (phase, round, issue, branch, worktree, specs,
            feedback as an excerpt and a reference, comment cursor, replies not yet
            posted: :meth:`SdlcState.excerpt`); its size does not grow with the
            feedback's.
        audit: the audit log so far; each decision's comment as an excerpt (the
            whole text is in the state's ``feedback_file``).
        ledger: the LLM usage so far (``models.llm.LlmUsage`` as dicts).
        gate: the open gate, reopened as it was (opened_at, expiry, reminders).
        spec: the spec the gate reviews.
    """

    state: SdlcState
    audit: list[AuditEntry] = Field(default_factory=list)
    ledger: list[dict] = Field(default_factory=list)
    gate: GateInfo
    spec: ArtifactRef


FeatureRequest.model_rebuild()
