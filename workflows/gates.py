"""The human gate mechanism, written once and used by every orchestration.

A workflow class inherits :class:`GatedWorkflow` and gets:

* the ``gate_decision`` **signal** (Temporal web UI, ``temporal workflow signal``,
  GitHub comment polling) and the ``decide_gate`` **update** with a validator
  (``starter.py``): both take a :class:`~models.common.GateDecision` and go
  through one handler. The signal takes the raw payload and validates it here,
  in workflow code, so a malformed one (wrong shape, unknown verdict, no actor,
  a comment over ``MAX_GATE_TEXT_BYTES``) becomes a ``refused`` audit entry
  with the reason instead of being dropped by the SDK; the update's validator
  refuses the same at once;
* a dynamic signal handler that records a signal of any other name (a typo such
  as ``gate_decison``) as ``refused``; signals the workflow defines still reach
  their own handlers;
* the ``audit_log`` and ``pending_gates`` **queries**;
* the ``OpenGates``, ``GateReviewers`` and ``GateOpenedAt`` search attributes,
  kept equal to the open gates (their names; who may decide them, ``anyone`` for
  a gate open to all; when the oldest opened), so ``starter.py inbox`` and a web
  UI saved query (``GateReviewers = "alice"``) find every gate waiting for a person.
  Kept only when the server has our attributes registered (the run was started
  with one set) and behind the ``gate-search-attributes`` patch;
* :meth:`GatedWorkflow.wait_for_decision`, which opens a gate, records a
  reminder every interval, can run a hook periodically while the gate is open
  (e.g. to poll GitHub comments) and returns ``None`` when the gate expires;
* :meth:`GatedWorkflow.transition`, the one way a run changes phase (state, audit
  entry, phase search attribute, metrics, the subclass's own side effects), and
  :meth:`GatedWorkflow.fail`, the one way a run ends FAILED (``-> NoReturn``).

Every decision, refused decision, reminder and expiry lands in the audit log
with who and when, and in the metrics (``temporal_plumbing.metrics``: gates
opened and closed, seconds to a decision, decisions, refusals). Deterministic
code only: this runs inside the workflow sandbox.

Authentication (``models/signatures.py``): before its first gate opens a run loads
the worker's allowed signers (GATE_SIGNERS) through an activity, so they are in
its history. When they are configured every gate requires an authenticated
decision: a ``key:<name>`` actor with an SSH signature bound to the gate opening (the
run it opened in, which a continue-as-new keeps, or the current run; the gate; the
opening's number), or a ``github:<login>`` decision made by the workflow's own GitHub comment
poll. Without them any decision that reaches the server is taken, as the
``pending_gates`` entries say (``signatures_required``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import ClassVar, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows import policies, search_attributes

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from activities.signers import GateSignerActivities
    from models.common import (
        MAX_GATE_TEXT_BYTES,
        AuditEntry,
        GateAck,
        GateDecision,
        GateInfo,
        Verdict,
        gate_text_problem,
    )
    from models.signatures import (
        GITHUB_PREFIX,
        KEY_PREFIX,
        DecisionSignature,
        GateSigners,
        principal_allowed,
        signature_problem,
    )
    from temporal_plumbing import metrics

GATE_SEARCH_ATTRIBUTES_PATCH = "gate-search-attributes"
GATE_SIGNAL = "gate_decision"
GATE_UPDATE = "decide_gate"
SIGNERS_QUERY = "gate_signers"
SIGNERS_PATCH = "gate-signers"
"""workflow.patched ID of loading GATE_SIGNERS before the first gate (runs started
before it replay without the load and take unauthenticated decisions, as they did)."""
SIGNING_RUN_PATCH = "signature-binds-opening-run"
"""workflow.patched ID of a gate carried over continue-as-new keeping its opening number
(a workstream's was renumbered) and taking decisions signed for the run it opened in
(``GateInfo.signing_run_id``) as well as for the current run; a run that replays
without it numbers and takes them as it did."""
GITHUB_CHANNEL = "github"

AUDIT_COMMENT_PREVIEW = 1024  # characters of an oversized comment kept in a refused entry
_MAX_ERROR_CHARS = 400  # a refused payload's validation error, as recorded

M = TypeVar("M", bound="BaseModel")
ReminderHook = Callable[[GateInfo], Awaitable[None]]
HistoryFullHook = Callable[[GateInfo], Awaitable[NoReturn]]
# events after which a long wait continues as new (see history_full)
DEFAULT_HISTORY_BUDGET = 5_000
WhileOpenHook = Callable[[GateInfo], Awaitable[None]]


class GatedWorkflow:
    """Base class of every workflow with human gates (see the module docstring).

    A subclass keeps its phase in its own state and exposes it as the :attr:`phase`
    property (getter and setter), and sets the class attributes below; it then changes
    phase only through :meth:`transition` and ends FAILED only through :meth:`fail`.
    """

    phase_attribute: ClassVar[SearchAttributeKey[str] | None] = None
    """The keyword search attribute that mirrors the phase (kept only when the run was
    started with it set, see ``search_attributes.started_with``); None = none."""
    failed_phase: ClassVar[StrEnum | None] = None
    """The phase :meth:`fail` enters (every orchestration has one; None = fail() only
    raises)."""
    failure_type: ClassVar[str] = "WorkflowFailed"
    """The ``ApplicationError`` type :meth:`fail` raises, e.g. ``SdlcFailed``."""
    failure_label: ClassVar[str] = "run"
    """What failed, as :meth:`fail`'s message starts: ``<failure_label> failed: <reason>``
    (a subclass may set it per instance, e.g. to name the work item)."""

    def __init__(self) -> None:
        self._audit: list[AuditEntry] = []
        self._open: dict[str, GateInfo] = {}
        self._decided: dict[str, GateDecision] = {}
        self._openings = 0
        self._signers: GateSigners | None = None
        self._signers_lock = asyncio.Lock()

    # -- audit log ---------------------------------------------------------
    def record(self, kind: str, detail: str, actor: str = "workflow", comment: str = "") -> None:
        """Append one entry to the audit log at the current workflow time."""
        self._audit.append(
            AuditEntry(at=workflow.now(), kind=kind, actor=actor, detail=detail, comment=comment)
        )
        if kind == "refused":  # an expected failure: one log line (not during replay)
            workflow.logger.warning("refused: %s (actor %s)", detail, actor)

    async def handlers_finished(self) -> None:
        """Wait until no signal or update handler is running (an async update, e.g. one
        that runs an activity, finishes first). Every workflow awaits this before it
        returns, fails or continues as new, so no accepted message is cut off. Adds no
        command to the history when nothing is running."""
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.query(name="audit_log")
    def audit_log(self) -> list[AuditEntry]:
        """Every transition, decision, refusal, reminder and expiry, oldest first."""
        return list(self._audit)

    @workflow.query(name="pending_gates")
    def pending_gates(self) -> list[GateInfo]:
        """The gates open now, in the order they opened."""
        return list(self._open.values())

    @workflow.query(name=SIGNERS_QUERY)
    def gate_signers(self) -> GateSigners | None:
        """The allowed signers this run loaded (public keys and principals), or None
        before its first gate or for a run started before signatures existed."""
        return self._signers

    @property
    def signatures_required(self) -> bool:
        """Whether this run's gates take only authenticated decisions."""
        return self._signers is not None and self._signers.configured

    # -- phases -------------------------------------------------------------
    @property
    def phase(self) -> StrEnum:
        """The run's current phase, kept in the subclass's state (which overrides this
        property and its setter)."""
        raise NotImplementedError(f"{type(self).__name__} does not define its phase")

    @phase.setter
    def phase(self, value: StrEnum) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define its phase")

    async def transition(self, to: StrEnum, detail: str = "", *,
                         actor: str = "workflow") -> None:
        """Move the run to phase ``to``: the one way every orchestration changes phase.

        In order: sets :attr:`phase`; records a ``transition`` audit entry
        ``"<from> -> <to>"`` (with `` (<detail>)`` when ``detail`` is given) by ``actor``;
        sets :attr:`phase_attribute` when the run was started with it set; counts
        ``orchestrator_transitions{from, to}``; then awaits :meth:`on_transition`.
        The search attribute upsert is the only command it adds itself, so it is
        awaited where ``_enter`` was called before, in the same order.
        """
        previous = self.phase
        self.phase = to
        self.record("transition", f"{previous.value} -> {to.value}"
                    + (f" ({detail})" if detail else ""), actor=actor)
        key = self.phase_attribute
        if key is not None and search_attributes.started_with(key):
            search_attributes.upsert(key, to.value)
        metrics.transition(workflow.metric_meter(), previous.value, to.value)
        await self.on_transition(previous, to)

    async def on_transition(self, previous: StrEnum, to: StrEnum) -> None:
        """Awaited at the end of every :meth:`transition`: a subclass's side effects of
        entering a phase outside the workflow (SDLC syncs its issue's phase label).
        Nothing by default."""

    async def fail(self, reason: str) -> NoReturn:
        """End the run FAILED: the one way every orchestration fails.

        Awaits :meth:`on_fail` (the subclass records ``reason`` in its state and cleans
        up), enters :attr:`failed_phase` with ``reason`` as the detail (unless the run is
        already there), waits until no handler runs, and raises. Call it as
        ``await self.fail(reason)``; it never returns.

        Raises:
            ApplicationError: always; type :attr:`failure_type`, message
                ``<failure_label> failed: <reason>``, non-retryable.
        """
        await self.on_fail(reason)
        if self.failed_phase is not None and self.phase != self.failed_phase:
            await self.transition(self.failed_phase, reason)
        await self.handlers_finished()
        raise ApplicationError(f"{self.failure_label} failed: {reason}",
                               type=self.failure_type, non_retryable=True)

    async def on_fail(self, reason: str) -> None:
        """Awaited first by :meth:`fail`: record ``reason`` in the run's state and clean
        up what a failed run must not leave behind. Errors it raises end the run with
        that error instead, so it should catch the ones it can survive. Nothing by
        default."""

    # -- receiving decisions ----------------------------------------------
    def decision_problem(self, decision: GateDecision) -> str | None:
        """Why a decision cannot be accepted now, or None when it can.

        Checks, in order: the comment and content fit ``MAX_GATE_TEXT_BYTES`` (the
        reason gives the size), the gate is open and not already decided, and a reject
        or revise has a comment. Who may decide is :meth:`identity_problem`'s question.
        Subclasses may extend this with gate-specific checks (call super first).
        """
        too_large = gate_text_problem(decision)
        if too_large:
            return too_large
        gate = self._open.get(decision.gate)
        if gate is None:
            open_now = ", ".join(self._open) or "none"
            return f"gate {decision.gate!r} is not open (open gates: {open_now})"
        if decision.gate in self._decided:
            return f"gate {decision.gate!r} already has a decision that is being acted on"
        if decision.verdict != Verdict.APPROVE and not decision.comment.strip():
            return f"a {decision.verdict.value} decision needs a comment saying what to change"
        return None

    def identity_problem(self, decision: GateDecision) -> str | None:
        """Why the decision's actor may not decide its (open) gate, or None.

        Authentication: ``github:`` actors come only from the workflow's GitHub poll
        (``GateDecision.authenticated``); ``key:`` actors need a signature that
        :func:`models.signatures.signature_problem` accepts (bound to this gate opening:
        the run it opened in or the current run, its name and number; unaltered; by a
        key the allowed signers list for that principal); bare names pass only while
        the worker has no GATE_SIGNERS. Authorization: the actor must be one of the
        gate's allowed actors (:func:`models.signatures.principal_allowed`). A gate
        that is not open is decision_problem's.
        """
        gate = self._open.get(decision.gate)
        if gate is None:
            return None
        actor = decision.actor
        if decision.authenticated_by == GITHUB_CHANNEL:
            problem = None if actor.startswith(GITHUB_PREFIX) else f"{actor!r} is not github:"
        else:
            problem = self.authentication_problem(
                actor=actor, signature=decision.signature, gate=gate.gate,
                opening=gate.opening, verdict=decision.verdict.value,
                comment=decision.comment, content=decision.content,
                opened_run_id=gate.signing_run_id)
        if problem is None and not principal_allowed(actor, gate.allowed_actors):
            allowed = ", ".join(gate.allowed_actors)
            problem = f"{actor!r} may not decide gate {gate.gate!r} (allowed: {allowed})"
        return problem

    def authentication_problem(self, *, actor: str, signature: DecisionSignature | None,
                               gate: str, opening: int, verdict: str, comment: str,
                               content: str | None, opened_run_id: str = "") -> str | None:
        """Why ``actor`` is not authenticated for a message that did not come from the
        workflow's own GitHub poll, or None: a ``github:`` actor never is; without
        GATE_SIGNERS a bare name is (and a ``key:`` one cannot be); with them the
        ``signature`` must pass :func:`models.signatures.signature_problem` for
        ``gate`` and ``opening``, signed for ``opened_run_id`` (the run the opening
        began in, carried over continue-as-new; empty = this run) or for the current
        run (``verdict``, ``comment`` and ``content`` are the signed text). Gate
        decisions and other signed messages (the learning loop's teacher overrides)
        use this one check."""
        if actor.startswith(GITHUB_PREFIX):
            return f"{actor} decides only by a comment on the run's GitHub issue"
        if not self.signatures_required:
            if actor.startswith(KEY_PREFIX):
                return (f"{actor} cannot be verified: the worker has no GATE_SIGNERS; "
                        "decide under a plain name")
            return None
        assert self._signers is not None
        info = workflow.info()
        # cryptography imports its OpenSSL backend lazily, at the first verify; a
        # second copy of its Rust extension inside the sandbox would abort the worker
        with workflow.unsafe.imports_passed_through():
            return signature_problem(
                signers=self._signers, workflow_id=info.workflow_id, run_id=info.run_id,
                gate=gate, opening=opening, verdict=verdict, actor=actor, comment=comment,
                content=content, signature=signature, now=workflow.now(),
                opened_run_id=opened_run_id)

    def gate_problem(self, decision: GateDecision) -> str | None:
        """Why a decision cannot be accepted now (identity first, then the gate's own
        checks), or None when it can."""
        return self.identity_problem(decision) or self.decision_problem(decision)

    def _refuse(self, decision: GateDecision, source: str, problem: str) -> None:
        metrics.gate_refused(workflow.metric_meter(), source)
        self.record(
            "refused",
            f"{decision.gate}: {decision.verdict.value} via {source} refused: {problem}",
            actor=decision.actor,
            comment=audit_comment(decision.comment),
        )

    def _accept(self, decision: GateDecision, source: str) -> GateAck:
        decision = decision.model_copy(update={"source": source})
        self._decided[decision.gate] = decision
        opened = self._open.get(decision.gate)
        waited = (workflow.now() - opened.opened_at).total_seconds() if opened else 0.0
        metrics.gate_decided(workflow.metric_meter(), decision.gate, decision.verdict.value,
                             source, waited)
        self.record(
            "decision",
            f"{decision.gate}: {decision.verdict.value} (via {source})",
            actor=decision.actor,
            comment=decision.comment,
        )
        return GateAck(gate=decision.gate, verdict=decision.verdict, accepted_at=workflow.now())

    def receive_decision(self, decision: GateDecision, source: str) -> None:
        """Accept a decision that arrived without a validator (signal, comment poll).

        A decision that cannot be accepted (an actor who may not decide, see
        :meth:`identity_problem`, or one decision_problem names) is recorded as
        ``refused`` with the reason.
        """
        problem = self.gate_problem(decision)
        if problem:
            self._refuse(decision, source, problem)
            return
        self._accept(decision, source)

    @workflow.signal(name=GATE_SIGNAL)
    def gate_decision(self, *payload: object) -> None:
        """Signal form of a gate decision; refused decisions are audited, not raised.

        Takes the signal's raw input (its JSON, undecoded: the handler declares no
        model, so the SDK cannot drop a payload it fails to convert) and validates
        it into a :class:`GateDecision` here. No input, more than one, or one that
        is not a valid GateDecision is recorded as ``refused`` with the validation
        error (e.g. ``verdict: Input should be 'approve', 'reject' or 'revise'``)
        and the actor the payload claims, or ``unknown``.
        """
        decision, error = parse_decision(payload)
        if decision is None:
            first = payload[0] if len(payload) == 1 else None
            metrics.gate_refused(workflow.metric_meter(), "signal")
            self.record("refused", f"{GATE_SIGNAL} signal refused: {error}",
                        actor=claimed(first, "actor"))
            return
        self.receive_decision(decision, "signal")

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Any signal this workflow does not define (e.g. a misspelt ``gate_decison``):
        recorded as ``refused`` with its name, never silently dropped. Signals the
        workflow defines never reach this handler."""
        first: object = None
        if args:
            try:
                first = workflow.payload_converter().from_payload(args[0].payload)
            except Exception:  # noqa: BLE001 - any undecodable input: no actor to name
                first = None
        metrics.gate_refused(workflow.metric_meter(), "unknown_signal")
        self.record("refused", f"signal {name!r} refused: this workflow has no signal of "
                    f"that name (a gate decision is the {GATE_SIGNAL!r} signal)",
                    actor=claimed(first, "actor"))

    @workflow.update(name=GATE_UPDATE)
    def decide_gate(self, *payload: object) -> GateAck:
        """Update form of a gate decision: refused at once by the validator when invalid.

        Takes one GateDecision as raw input, like the signal, so that a malformed
        one is refused with a readable validation error rather than the SDK's
        "Failed decoding arguments". A decision whose actor may not decide passes the
        validator and is refused here instead, so the refusal is audited.

        Raises:
            ApplicationError: (``DecisionRefused``) see :meth:`identity_problem`
                (unsigned, wrong key, replayed, altered, not an allowed reviewer); the
                update fails, the run goes on.
        """
        decision, error = parse_decision(payload)
        if decision is None:  # only on a replay that skips the validator
            raise ApplicationError(error, type="InvalidGateDecision", non_retryable=True)
        problem = self.identity_problem(decision)
        if problem:
            self._refuse(decision, "update", problem)
            raise ApplicationError(problem, type="DecisionRefused", non_retryable=True)
        return self._accept(decision, "update")

    @decide_gate.validator
    def _validate_decision(self, *payload: object) -> None:
        decision, error = parse_decision(payload)
        if (decision is not None and gate_text_problem(decision) is None
                and self.identity_problem(decision)):
            return  # the handler refuses it and audits why (a validator records nothing)
        problem = error if decision is None else self.decision_problem(decision)
        if problem:
            metrics.gate_refused(workflow.metric_meter(), "update")
            raise ValueError(problem)

    # -- waiting -----------------------------------------------------------
    async def wait_for_decision(
        self,
        gate: str,
        *,
        prompt: str = "",
        allowed_actors: list[str] | None = None,
        reminder_interval: timedelta | None = None,
        expires_after: timedelta | None = None,
        on_reminder: ReminderHook | None = None,
        while_open: WhileOpenHook | None = None,
        poll_interval: timedelta | None = None,
        resume: GateInfo | None = None,
        on_history_full: HistoryFullHook | None = None,
        history_budget: int = DEFAULT_HISTORY_BUDGET,
        artifact: str = "",
    ) -> GateDecision | None:
        """Open ``gate`` and wait for an accepted decision.

        Args:
            gate: gate name, unique among the gates open at once.
            prompt: what the reviewer is asked (shown by ``pending_gates``).
            allowed_actors: who may decide; None or empty = anyone.
            reminder_interval: record a ``reminder`` (and call ``on_reminder``)
                each time this much passes without a decision; None = never.
            expires_after: close the gate and return None after this long; None = never.
            on_reminder: awaited after each reminder is recorded (e.g. to post a comment).
            while_open: awaited while the gate is open, beside the wait, e.g. to poll
                for decisions made elsewhere and pass them to :meth:`receive_decision`:
                every ``poll_interval`` (a durable timer) when one is given, else again
                as soon as it returns (a hook that itself waits for news, such as a
                long-running poll activity; it must not return at once forever). It is
                cancelled when the gate closes (and not waited for then, so a decision
                never waits for a watch activity to take its cancel; before a
                continue-as-new it is waited for), so it must not hold state it cannot
                lose mid-way; it is not called again once the gate is no longer open,
                even if it swallowed the cancel. It must handle its own errors (an
                exception ends the polling, logged as a warning).
            poll_interval: the timer between ``while_open`` calls; None = back to back.
            resume: the gate as a previous run left it (carried over continue-as-new):
                it opens again with the same ``opened_at``, ``expires_at``, reminder
                count, opening number and ``signing_run_id`` (a decision signed for the
                run it opened in is still taken), and the next reminder comes when it
                was due.
            on_history_full: awaited, with the gate, when the run's history reaches
                ``history_budget`` events or Temporal suggests continue-as-new (see
                :func:`history_full`), after the ``while_open`` hook is cancelled and
                every handler finished. It must continue as new (carrying the gate so
                the next run passes it as ``resume``); None = never checked.
            history_budget: see :func:`history_full`.
            artifact: what the reviewer judges (a path, or a command that shows it),
                shown by ``pending_gates``, ``--follow``, ``review`` and ``inbox``.

        Returns:
            The accepted decision, or None when the gate expired.
        """
        await self._load_gate_signers()
        now = workflow.now()
        if resume is not None and resume.gate == gate:
            run_id = workflow.info().run_id
            if (resume.opening > 0 and resume.signing_run_id
                    and resume.signing_run_id != run_id
                    and workflow.patched(SIGNING_RUN_PATCH)):
                # the same opening, still bound to the run it opened in, so a decision
                # signed before the continue-as-new is taken (once)
                opening, signing_run_id = resume.opening, resume.signing_run_id
                self._openings = max(self._openings, opening)
            else:
                # carried by code before that patch: as it did, the opening keeps its
                # number unless this run already counted it (a workstream carries its
                # count), or gets the next one (code that did not number openings), and
                # decisions are signed for this run
                self._openings = (resume.opening if resume.opening > self._openings
                                  else self._openings + 1)
                opening, signing_run_id = self._openings, run_id
            info = resume.model_copy(update={"opening": opening,
                                             "signing_run_id": signing_run_id,
                                             "signatures_required": self.signatures_required})
            expires_at = info.expires_at
            opened = info.opened_at.strftime("%Y-%m-%d %H:%M")
            self.record("gate_resumed", f"{gate} still open (opened {opened} UTC), "
                        "carried over continue-as-new")
        else:
            expires_at = now + expires_after if expires_after else None
            self._openings += 1
            info = GateInfo(
                gate=gate,
                opened_at=now,
                allowed_actors=list(allowed_actors or []),
                expires_at=expires_at,
                prompt=prompt,
                artifact=artifact,
                opening=self._openings,
                signing_run_id=workflow.info().run_id,
                signatures_required=self.signatures_required,
            )
            self.record("gate_opened", f"{gate} opened" + (f": {prompt}" if prompt else ""))
        self._open[gate] = info
        self._sync_gate_attributes()
        if resume is None or resume.gate != gate:
            metrics.gate_opened(workflow.metric_meter(), gate)
        closed_as = "canceled"  # unless it is decided or expires ("": carried on)
        poller: asyncio.Task[None] | None = None
        if while_open is not None:
            poller = asyncio.create_task(self._run_while_open(info, while_open, poll_interval))
        detached = False

        def full() -> bool:
            return on_history_full is not None and history_full(history_budget)

        first = True
        try:
            while True:
                timeout = reminder_interval
                if first and resume is not None and reminder_interval is not None:
                    due = info.opened_at + reminder_interval * (info.reminders_sent + 1)
                    timeout = max(due - workflow.now(), timedelta(0))
                first = False
                if expires_at is not None:
                    left = expires_at - workflow.now()
                    timeout = left if timeout is None else min(timeout, left)
                try:
                    await workflow.wait_condition(
                        lambda: gate in self._decided or full(), timeout=timeout,
                        timeout_summary=f"{gate}: next reminder or expiry",
                    )
                    if gate not in self._decided:  # the history is full
                        assert on_history_full is not None
                        if poller is not None:  # stopped before the next run polls
                            await _stop_while_open(gate, poller)
                            poller = None
                        await self.handlers_finished()
                        if gate not in self._decided:
                            self._open.pop(gate, None)
                            closed_as = ""  # still open: the next run carries it on
                            await on_history_full(info)
                            raise ApplicationError("on_history_full returned instead of "
                                                   "continuing as new", non_retryable=True)
                except TimeoutError:
                    if expires_at is not None and workflow.now() >= expires_at:
                        self.record("expired", f"{gate} expired without a decision")
                        closed_as = "expired"
                        return None
                    info.reminders_sent += 1
                    self.record("reminder", f"{gate} still waits for a decision "
                                f"(reminder {info.reminders_sent})")
                    if on_reminder is not None:
                        await on_reminder(info)
                    continue
                closed_as = "decided"
                return self._decided.pop(gate)
        except GeneratorExit:
            # the coroutine of a run the worker dropped, closed outside the workflow's
            # event loop: nothing here may touch the workflow
            detached = True
            raise
        finally:
            if not detached:
                if closed_as:  # a gate carried over continue-as-new is not closed
                    metrics.gate_closed(workflow.metric_meter(), gate, closed_as)
                if poller is not None:
                    # not awaited here: a comment watch ends only once its activity
                    # takes the cancel (at its next heartbeat to the server, up to
                    # ~50 s), and the decision must not wait for that
                    poller.cancel()
                    poller.add_done_callback(functools.partial(_while_open_ended, gate))
                self._open.pop(gate, None)
                self._decided.pop(gate, None)
                self._sync_gate_attributes()

    def _sync_gate_attributes(self) -> None:
        """Set OpenGates, GateReviewers and GateOpenedAt from the open gates (unset
        when none is open). Nothing when the server lacks our attributes or the run
        started before the ``gate-search-attributes`` patch."""
        if not search_attributes.attributes_registered():
            return
        if not workflow.patched(GATE_SEARCH_ATTRIBUTES_PATCH):
            return
        gates = list(self._open.values())
        if not gates:
            workflow.upsert_search_attributes([
                search_attributes.OPEN_GATES.value_unset(),
                search_attributes.GATE_REVIEWERS.value_unset(),
                search_attributes.GATE_OPENED_AT.value_unset()])
            return
        reviewers: list[str] = []
        for info in gates:
            for who in info.allowed_actors or [search_attributes.ANYONE]:
                if who not in reviewers:
                    reviewers.append(who)
        workflow.upsert_search_attributes([
            search_attributes.OPEN_GATES.value_set([g.gate for g in gates]),
            search_attributes.GATE_REVIEWERS.value_set(reviewers),
            search_attributes.GATE_OPENED_AT.value_set(min(g.opened_at for g in gates))])

    async def _load_gate_signers(self) -> None:
        """Load the worker's allowed signers into this run, once (before its first gate)."""
        async with self._signers_lock:
            if self._signers is not None or not workflow.patched(SIGNERS_PATCH):
                return
            self._signers = await workflow.execute_activity_method(
                GateSignerActivities.load_gate_signers,
                start_to_close_timeout=policies.SIGNERS_TIMEOUT,
                retry_policy=policies.SIGNERS_RETRY,
                summary="load the worker's GATE_SIGNERS",
            )
            self.record("gate_signers", (
                f"{len(self._signers.signers)} allowed signer key(s) from "
                f"{self._signers.source}: gate decisions must be signed"
                if self._signers.configured else
                "no GATE_SIGNERS on the worker: gate decisions are not authenticated"))

    async def _run_while_open(self, info: GateInfo, hook: WhileOpenHook,
                              interval: timedelta | None) -> None:
        """Call ``hook`` while this opening of the gate is open and undecided (every
        ``interval``, or back to back); it also ends when a hook swallowed the cancel
        that closing the gate sent it, since the gate is no longer open by then."""

        def still_open() -> bool:
            return self._open.get(info.gate) is info and info.gate not in self._decided

        while still_open():
            if interval is not None:
                await workflow.sleep(interval, summary=f"{info.gate}: next poll")
            if still_open():
                await hook(info)


async def _stop_while_open(gate: str, poller: asyncio.Task[None]) -> None:
    """Cancel the task of a gate's ``while_open`` hook and wait until it has ended
    (before a continue-as-new: the next run's hook must not run beside it); its
    outcome is judged by :func:`_while_open_ended`. A cancellation of the waiting task
    itself is raised."""
    poller.cancel()
    try:
        await poller
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:  # noqa: BLE001, S110 - judged by the done callback below
        pass
    _while_open_ended(gate, poller)


def _while_open_ended(gate: str, task: asyncio.Task[None]) -> None:
    """Read the outcome of a gate's cancelled ``while_open`` task (as its done callback
    when the gate closes, as nothing waits for it there), so asyncio never logs "Task
    exception was never retrieved": its cancellation (``CancelledError``, or the
    ``ActivityError`` of its cancelled activity) is the expected end; any other error
    is logged (the hook should have handled it), never raised."""
    if not task.done() or task.cancelled():
        return
    err = task.exception()
    if err is not None and not is_cancelled_exception(err):
        workflow.logger.warning("the while-open hook of %s ended with an error: %s", gate, err)


def history_full(budget: int = DEFAULT_HISTORY_BUDGET) -> bool:
    """Whether this run should continue as new: Temporal suggests it
    (``is_continue_as_new_suggested()``: about 4,096 events or 4 MB on a default
    server) or the history has ``budget`` events (``get_current_history_length()``).
    The default budget, DEFAULT_HISTORY_BUDGET, stays well under the 10,240 events
    at which Temporal starts warning (and the 51,200 at which it terminates a run)."""
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() >= budget


def failure_message(err: ActivityError) -> str:
    """The innermost message of an activity failure (the ``ApplicationError`` the
    activity raised), or the failure's own message when it has no cause; every
    orchestration words its failures with this and :func:`activity_failure`."""
    cause = err.cause
    return getattr(cause, "message", None) or err.message


def activity_failure(err: ActivityError) -> str:
    """``<activity type> failed: <innermost message>`` (audit entries, failure reasons)."""
    return f"{err.activity_type} failed: {failure_message(err)}"


def parse_payload(model: type[M], payload: Sequence[object]) -> tuple[M | None, str]:
    """Validate the raw input of a signal or update into one ``model``.

    The handler declares no model (``*payload: object``), so the SDK hands over
    the decoded JSON instead of dropping a payload it cannot convert; this
    validates it in workflow code, where a refusal can be audited.

    Args:
        model: the pydantic model the message should be.
        payload: the message's decoded input values (JSON values, or RawValue).

    Returns:
        ``(value, "")`` when ``payload`` is exactly one valid ``model``, else
        ``(None, error)`` with a short readable error: each field's problem as
        ``field: message``, joined by ``; ``, at most a few hundred characters.
    """
    if len(payload) != 1:
        return None, (f"expected one {model.__name__} as input, got {len(payload)} "
                      "value(s)")
    value = payload[0]
    if isinstance(value, RawValue):
        try:
            value = workflow.payload_converter().from_payload(value.payload)
        except Exception as err:  # noqa: BLE001 - an undecodable payload is refused
            return None, f"the input cannot be decoded: {err}"[:_MAX_ERROR_CHARS]
    try:
        return model.model_validate(value), ""
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
            for e in err.errors(include_url=False))
        return None, problems[:_MAX_ERROR_CHARS]


def parse_decision(payload: Sequence[object]) -> tuple[GateDecision | None, str]:
    """:func:`parse_payload` for a :class:`GateDecision`."""
    return parse_payload(GateDecision, payload)


def claimed(value: object, field: str) -> str:
    """The name a refused payload gives in ``field`` (stripped, at most 100
    characters), or ``unknown``."""
    name = value.get(field) if isinstance(value, dict) else None
    if isinstance(name, str) and name.strip():
        return name.strip()[:100]
    return "unknown"


def audit_comment(comment: str) -> str:
    """``comment`` as a refused audit entry keeps it: whole when within
    ``MAX_GATE_TEXT_BYTES``, else its first ``AUDIT_COMMENT_PREVIEW`` characters
    and its size, so a refused oversized comment does not grow the audit log."""
    size = len(comment.encode("utf-8", "surrogatepass"))
    if size <= MAX_GATE_TEXT_BYTES:
        return comment
    return f"{comment[:AUDIT_COMMENT_PREVIEW]}... [truncated: {size:,} bytes in all]"
