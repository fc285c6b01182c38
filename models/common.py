"""Models shared by every orchestration: artifacts, gate decisions, the audit log."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, PrivateAttr, computed_field, field_validator

from models.signatures import DecisionSignature

MAX_GATE_TEXT_BYTES = 64 * 1024
"""The largest gate comment, and the largest edited content, a decision may carry:
64 KiB of UTF-8. A larger one is refused with its size (the update's validator
raises; a signal or a GitHub comment becomes a ``refused`` audit entry), so one
reviewer cannot grow a run's history or an agent's input without bound."""


class ArtifactRef(BaseModel):
    """A large payload kept out of workflow history, passed by reference.

    Attributes:
        path: absolute path of the file (in the artifact store or a git worktree).
        sha256: hex SHA-256 of the file's bytes at the time it was written.
        bytes: size of the file in bytes.
        commit: git commit SHA that holds the file, when it was committed.
    """

    path: str
    sha256: str
    bytes: int = Field(ge=0)
    commit: str | None = None


class Verdict(StrEnum):
    """What a reviewer decided at a gate."""

    APPROVE = "approve"
    REJECT = "reject"
    REVISE = "revise"


class GateDecision(BaseModel):
    """One human decision at a gate; the payload of the gate signal and update.

    Attributes:
        gate: name of the gate the decision is for (e.g. ``GATE_1``); must be open.
        verdict: approve, reject or revise.
        actor: who decided, a principal: ``key:<name>`` (proved by ``signature``),
            ``github:<login>`` (only from the GitHub comment poll) or a bare name
            (unauthenticated; accepted only while the worker has no GATE_SIGNERS).
            Checked against the gate's allowed reviewers when the workflow names any
            (``models.signatures.principal_allowed``).
        comment: the reviewer's reasoning or feedback; required for reject and revise;
            at most ``MAX_GATE_TEXT_BYTES`` (64 KiB) of UTF-8.
        content: optional edited content (e.g. an edited outline) that replaces
            what the workflow produced; at most ``MAX_GATE_TEXT_BYTES``.
        signature: the reviewer's SSH signature over the decision, bound to one run
            and gate opening; required when the worker has GATE_SIGNERS.
        source: how the decision arrived, filled in by the workflow (``signal``,
            ``update``); ignored when sent.
    """

    gate: str = Field(min_length=1)
    verdict: Verdict
    actor: str = Field(min_length=1)
    comment: str = ""
    content: str | None = None
    signature: DecisionSignature | None = None
    source: str | None = None
    # Set only by workflow code that authenticated the actor itself (the GitHub poll);
    # a private attribute is never read from a payload, so no sender can set it.
    _authenticated_by: str | None = PrivateAttr(default=None)

    def authenticated(self, channel: str) -> GateDecision:
        """A copy marked as authenticated by ``channel`` (e.g. ``github``); for workflow
        code that checked the actor itself. Survives ``model_copy``, never serialized."""
        copy = self.model_copy()
        copy._authenticated_by = channel
        return copy

    @property
    def authenticated_by(self) -> str | None:
        """The channel that authenticated the actor (see :meth:`authenticated`), or None."""
        return self._authenticated_by

    @field_validator("gate", "actor")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


def text_size_problem(field: str, text: str | None) -> str | None:
    """Why ``text`` is too large for a gate decision, or None when it fits.

    The size is in UTF-8 bytes, compared with :data:`MAX_GATE_TEXT_BYTES`; the
    message names ``field``, the size and the limit, e.g. "the comment is
    1,048,576 bytes, over the limit of 65,536 bytes (64 KiB)".
    """
    size = len(text.encode("utf-8", "surrogatepass")) if text else 0
    if size > MAX_GATE_TEXT_BYTES:
        return (f"the {field} is {size:,} bytes, over the limit of "
                f"{MAX_GATE_TEXT_BYTES:,} bytes ({MAX_GATE_TEXT_BYTES // 1024} KiB)")
    return None


def gate_text_problem(decision: GateDecision) -> str | None:
    """Why ``decision``'s comment or content is too large (see
    :func:`text_size_problem`), or None when both fit."""
    return (text_size_problem("comment", decision.comment)
            or text_size_problem("content", decision.content))


class GateAck(BaseModel):
    """What the gate update returns once a decision is accepted."""

    gate: str
    verdict: Verdict
    accepted_at: datetime


class AuditEntry(BaseModel):
    """One line of a workflow's audit log.

    Attributes:
        at: workflow time of the event (UTC).
        kind: ``transition``, ``decision``, ``refused``, ``reminder``, ``expired`` or
            another workflow-specific event name.
        actor: who caused it (``workflow`` for the workflow itself).
        detail: human-readable description (phase change, gate and verdict, reason).
        comment: the reviewer's comment, when there is one.
    """

    at: datetime
    kind: str
    actor: str = "workflow"
    detail: str
    comment: str = ""


class GateInfo(BaseModel):
    """An open gate, as the ``pending_gates`` query reports it.

    Attributes:
        gate: the gate's name, to be used in a GateDecision.
        opened_at: workflow time the gate opened (UTC).
        allowed_actors: who may decide; empty means anyone (anyone with an allowed
            key when signatures are required).
        reminders_sent: reminders recorded since the gate opened.
        expires_at: when the gate expires, or None when it never does.
        prompt: what the reviewer is asked to decide.
        opening: this gate opening's number (1, 2, ...), kept when the run continues
            as new; a signed decision names it, so it cannot be replayed on a later
            round.
        signing_run_id: the run ID a signed decision for this opening names: the run
            the gate opened in, kept when the run continues as new, so a decision
            signed just before a continue-as-new is still taken (once). Empty from a
            worker older than this field: sign the current run's ID.
        signatures_required: decisions must be signed by an allowed key (or come
            from GitHub); False means anyone who reaches the server decides.
        artifact: what to judge: a file path (the spec, the step's log) or a
            command that shows it; empty when the prompt says it all.
        decision_json: (computed) a GateDecision approving this gate as one line of
            JSON, ready to paste into the web UI's "Send a Signal" (signal
            ``gate_decision``) or "Send an Update" (update ``decide_gate``, which
            refuses a bad decision at once) dialog; change ``actor`` to your name,
            and ``verdict`` to ``reject`` or ``revise`` with a ``comment`` to refuse
            (when ``signatures_required`` an unsigned one is refused: use the CLI).
    """

    gate: str
    opened_at: datetime
    allowed_actors: list[str] = Field(default_factory=list)
    reminders_sent: int = 0
    expires_at: datetime | None = None
    prompt: str = ""
    opening: int = 0
    signing_run_id: str = ""
    signatures_required: bool = False
    artifact: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def decision_json(self) -> str:
        """See the class docstring."""
        actor = self.allowed_actors[0] if self.allowed_actors else "your-name"
        return json.dumps({"gate": self.gate, "verdict": "approve", "actor": actor,
                           "comment": ""})
