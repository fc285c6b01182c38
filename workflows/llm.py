"""LlmWorkflow: the base of every workflow that calls an LLM.

It adds to :class:`~workflows.gates.GatedWorkflow`:

* :meth:`LlmWorkflow.call_llm`, which runs the ``llm_complete`` activity and
  appends the call's usage to the workflow's ledger;
* the ``llm_ledger`` query (every call, sums per phase, total, budget);
* the ``budget`` gate: when the ledger's total reaches ``budget_usd``, the next
  call waits there instead of failing. Approve (or revise) with ``content`` set
  to a higher budget in USD to go on; reject to stop the run. A subclass that
  sets ``budget_history_full`` continues as new while that gate waits (see
  :meth:`LlmWorkflow.wait_within_budget`).

The ledger and the budget are plain state (``self.ledger``, ``self.budget_usd``)
so that a workflow that continues-as-new can carry them in its input.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows import policies
from workflows.gates import DEFAULT_HISTORY_BUDGET, GatedWorkflow, HistoryFullHook

with workflow.unsafe.imports_passed_through():
    from activities.llm import LlmActivities
    from models.common import GateDecision, GateInfo, Verdict
    from models.llm import LlmLedger, LlmRequest, LlmResponse, LlmUsage

BUDGET_GATE = "budget"


def parse_budget(content: str | None) -> float | None:
    """A budget in USD from a gate decision's content (``"10"``, ``"$10.50"``), or None."""
    try:
        return float((content or "").strip().lstrip("$"))
    except ValueError:
        return None


class LlmWorkflow(GatedWorkflow):
    """Base class of workflows that call an LLM (see the module docstring).

    Subclasses set ``self.budget_usd`` (None = unlimited) and may set
    ``self.budget_reminder_interval`` / ``self.budget_gate_expiry`` from their input.
    To continue as new while the budget gate waits, a subclass sets
    ``self.budget_history_full`` (the hook, given the open gate; it must continue as
    new carrying the gate), ``self.budget_history_budget`` (events), and in the next
    run ``self.budget_resume`` (the carried gate, reopened as it was).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ledger: list[LlmUsage] = []
        self.budget_usd: float | None = None
        self.budget_reminder_interval: timedelta | None = timedelta(hours=24)
        self.budget_gate_expiry: timedelta | None = None
        self._budget_lock = asyncio.Lock()  # parallel calls share one budget gate
        self.budget_history_full: HistoryFullHook | None = None
        self.budget_history_budget = DEFAULT_HISTORY_BUDGET
        self.budget_resume: GateInfo | None = None
        self._llm_calls_running = 0  # waited for before continuing as new at the gate

    @workflow.query(name="llm_ledger")
    def llm_ledger(self) -> LlmLedger:
        """Every LLM call's usage, the sums per phase, the total and the budget (USD)."""
        return LlmLedger.of(self.ledger, self.budget_usd)

    def spent_usd(self) -> float:
        """The ledger's total cost in USD."""
        return sum(u.cost_usd for u in self.ledger)

    async def call_llm(self, request: LlmRequest, *, summary: str | None = None
                       ) -> LlmResponse:
        """Run ``llm_complete`` for ``request`` and record its usage in the ledger.

        Waits at the ``budget`` gate first when the ledger has reached the budget.

        Raises:
            ActivityError: the call failed for good (its usage, when the failure
                carries one, is still recorded).
            ApplicationError: the run was stopped at the budget gate, or the gate expired.
            asyncio.CancelledError: the run is being cancelled (so that callers that
                fall back on a failed call do not swallow the cancellation).
        """
        await self.wait_within_budget()
        self._llm_calls_running += 1
        try:
            response = await workflow.execute_activity_method(
                LlmActivities.llm_complete, request,
                start_to_close_timeout=policies.LLM_TIMEOUT,
                heartbeat_timeout=policies.LLM_HEARTBEAT_TIMEOUT, retry_policy=policies.LLM_RETRY,
                summary=summary or f"LLM call: {request.phase}",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):  # the run is being cancelled: not a failed call
                raise asyncio.CancelledError() from None
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "LlmOutputInvalid" \
                    and cause.details:
                self.ledger.append(LlmUsage.model_validate(cause.details[0]))
            raise
        finally:
            self._llm_calls_running -= 1
        self.ledger.append(response.usage)
        return response

    async def wait_within_budget(self) -> None:
        """Return at once when under budget; else wait at the ``budget`` gate.

        With ``budget_history_full`` set, the run continues as new when its history
        reaches ``budget_history_budget`` events (or Temporal suggests it) while the
        gate waits: once the LLM calls running beside this one (parallel callers)
        have ended, the hook is awaited with the open gate. The next run, with the
        gate as ``budget_resume``, reopens it as it was at its first wait.

        Raises:
            ApplicationError: (``BudgetStopped``) rejected at the gate or the gate expired.
        """
        if self.budget_usd is None or self.spent_usd() < self.budget_usd:
            return
        async with self._budget_lock:
            await self._budget_gate()

    async def _budget_gate(self) -> None:
        while self.budget_usd is not None and self.spent_usd() >= self.budget_usd:
            spent = self.spent_usd()
            resume, self.budget_resume = self.budget_resume, None
            decision = await self.wait_for_decision(
                BUDGET_GATE,
                prompt=f"LLM spend ${spent:.4f} reached the budget ${self.budget_usd:.4f}; "
                       "approve with a higher budget in USD as content, or reject to stop",
                reminder_interval=self.budget_reminder_interval,
                expires_after=self.budget_gate_expiry,
                resume=resume, history_budget=self.budget_history_budget,
                on_history_full=None if self.budget_history_full is None
                else self._budget_history_full,
            )
            if decision is None:
                raise ApplicationError("stopped: the budget gate expired without a decision",
                                       type="BudgetStopped", non_retryable=True)
            if decision.verdict == Verdict.REJECT:
                raise ApplicationError(
                    f"stopped at the budget gate by {decision.actor}: {decision.comment}",
                    type="BudgetStopped", non_retryable=True)
            old, self.budget_usd = self.budget_usd, parse_budget(decision.content)
            self.record("budget_raised", f"LLM budget ${old:.4f} -> ${self.budget_usd:.4f}",
                        actor=decision.actor, comment=decision.comment)

    async def _budget_history_full(self, gate: GateInfo) -> NoReturn:
        """The budget gate's on_history_full hook: wait until no other LLM call runs
        (a parallel caller's result is kept, not lost), then ``budget_history_full``."""
        assert self.budget_history_full is not None
        await workflow.wait_condition(lambda: self._llm_calls_running == 0)
        await self.handlers_finished()
        await self.budget_history_full(gate)

    def decision_problem(self, decision: GateDecision) -> str | None:
        """The gate checks, plus: raising the budget needs a number above the spend."""
        problem = super().decision_problem(decision)
        if problem or decision.gate != BUDGET_GATE or decision.verdict == Verdict.REJECT:
            return problem
        budget = parse_budget(decision.content)
        if budget is None or budget <= self.spent_usd():
            return (f"to go on, give a new budget in USD above the ${self.spent_usd():.4f} "
                    "spent as the decision's content (e.g. `budget ID --usd 10`)")
        return None
