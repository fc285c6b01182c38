"""The human gate mechanism, written once and used by every orchestration.

A workflow class inherits :class:`GatedWorkflow` and gets:

* the ``gate_decision`` **signal** (Temporal web UI, ``temporal workflow signal``,
  GitHub comment polling) and the ``decide_gate`` **update** with a validator
  (``starter.py``): both take a :class:`~models.common.GateDecision` and go
  through one handler;
* the ``audit_log`` and ``pending_gates`` **queries**;
* :meth:`GatedWorkflow.wait_for_decision`, which opens a gate, records a
  reminder every interval, can run a hook periodically while the gate is open
  (e.g. to poll GitHub comments) and returns ``None`` when the gate expires.

Every decision, refused decision, reminder and expiry lands in the audit log
with who and when. Deterministic code only: this runs inside the workflow sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.common import AuditEntry, GateAck, GateDecision, GateInfo, Verdict

GATE_SIGNAL = "gate_decision"
GATE_UPDATE = "decide_gate"

ReminderHook = Callable[[GateInfo], Awaitable[None]]
WhileOpenHook = Callable[[GateInfo], Awaitable[None]]


class GatedWorkflow:
    """Base class of every workflow with human gates (see the module docstring)."""

    def __init__(self) -> None:
        self._audit: list[AuditEntry] = []
        self._open: dict[str, GateInfo] = {}
        self._decided: dict[str, GateDecision] = {}

    # -- audit log ---------------------------------------------------------
    def record(self, kind: str, detail: str, actor: str = "workflow", comment: str = "") -> None:
        """Append one entry to the audit log at the current workflow time."""
        self._audit.append(
            AuditEntry(at=workflow.now(), kind=kind, actor=actor, detail=detail, comment=comment)
        )

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

    # -- receiving decisions ----------------------------------------------
    def decision_problem(self, decision: GateDecision) -> str | None:
        """Why a decision cannot be accepted now, or None when it can.

        Subclasses may extend this with gate-specific checks (call super first).
        """
        gate = self._open.get(decision.gate)
        if gate is None:
            open_now = ", ".join(self._open) or "none"
            return f"gate {decision.gate!r} is not open (open gates: {open_now})"
        if decision.gate in self._decided:
            return f"gate {decision.gate!r} already has a decision that is being acted on"
        if gate.allowed_actors and decision.actor not in gate.allowed_actors:
            allowed = ", ".join(gate.allowed_actors)
            return f"{decision.actor!r} may not decide gate {decision.gate!r} (allowed: {allowed})"
        if decision.verdict != Verdict.APPROVE and not decision.comment.strip():
            return f"a {decision.verdict.value} decision needs a comment saying what to change"
        return None

    def _accept(self, decision: GateDecision, source: str) -> GateAck:
        decision = decision.model_copy(update={"source": source})
        self._decided[decision.gate] = decision
        self.record(
            "decision",
            f"{decision.gate}: {decision.verdict.value} (via {source})",
            actor=decision.actor,
            comment=decision.comment,
        )
        return GateAck(gate=decision.gate, verdict=decision.verdict, accepted_at=workflow.now())

    def receive_decision(self, decision: GateDecision, source: str) -> None:
        """Accept a decision that arrived without a validator (signal, comment poll).

        A decision that cannot be accepted is recorded as ``refused`` with the reason.
        """
        problem = self.decision_problem(decision)
        if problem:
            self.record(
                "refused",
                f"{decision.gate}: {decision.verdict.value} via {source} refused: {problem}",
                actor=decision.actor,
                comment=decision.comment,
            )
            return
        self._accept(decision, source)

    @workflow.signal(name=GATE_SIGNAL)
    def gate_decision(self, decision: GateDecision) -> None:
        """Signal form of a gate decision; refused decisions are audited, not raised."""
        self.receive_decision(decision, "signal")

    @workflow.update(name=GATE_UPDATE)
    def decide_gate(self, decision: GateDecision) -> GateAck:
        """Update form of a gate decision: refused at once by the validator when invalid."""
        return self._accept(decision, "update")

    @decide_gate.validator
    def _validate_decision(self, decision: GateDecision) -> None:
        problem = self.decision_problem(decision)
        if problem:
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
            while_open: awaited every ``poll_interval`` (a durable timer) while the gate
                is open, beside the wait, e.g. to poll for decisions made elsewhere and
                pass them to :meth:`receive_decision`. It is cancelled when the gate
                closes, so it must not hold state it cannot lose mid-way, and it must
                handle its own errors (an exception would end the polling silently).
            poll_interval: how often ``while_open`` runs; both or neither must be given.

        Returns:
            The accepted decision, or None when the gate expired.
        """
        now = workflow.now()
        expires_at = now + expires_after if expires_after else None
        info = GateInfo(
            gate=gate,
            opened_at=now,
            allowed_actors=list(allowed_actors or []),
            expires_at=expires_at,
            prompt=prompt,
        )
        self._open[gate] = info
        self.record("gate_opened", f"{gate} opened" + (f": {prompt}" if prompt else ""))
        poller = None
        if while_open is not None and poll_interval is not None:
            poller = asyncio.create_task(self._run_while_open(info, while_open, poll_interval))
        try:
            while True:
                timeout = reminder_interval
                if expires_at is not None:
                    left = expires_at - workflow.now()
                    timeout = left if timeout is None else min(timeout, left)
                try:
                    await workflow.wait_condition(
                        lambda: gate in self._decided, timeout=timeout,
                        timeout_summary=f"{gate}: next reminder or expiry",
                    )
                except TimeoutError:
                    if expires_at is not None and workflow.now() >= expires_at:
                        self.record("expired", f"{gate} expired without a decision")
                        return None
                    info.reminders_sent += 1
                    self.record("reminder", f"{gate} still waits for a decision "
                                f"(reminder {info.reminders_sent})")
                    if on_reminder is not None:
                        await on_reminder(info)
                    continue
                return self._decided.pop(gate)
        finally:
            if poller is not None:
                poller.cancel()
            self._open.pop(gate, None)
            self._decided.pop(gate, None)

    async def _run_while_open(self, info: GateInfo, hook: WhileOpenHook,
                              interval: timedelta) -> None:
        while info.gate not in self._decided:
            await workflow.sleep(interval, summary=f"{info.gate}: next poll")
            if info.gate not in self._decided:
                await hook(info)
