"""BreakerWorkflow: the circuit breakers of every tool, shared by all workstream runs.

One long-lived workflow per task queue (ID ``workstream-breakers-<task queue>``)
holds a breaker per tool (Nygard, *Release It!*, ch. 5). Runs reach it through the
``breaker_pick`` and
``breaker_report`` activities (workflows cannot send updates to each other):

* ``pick`` update: the first candidate tool that may run now. A closed tool
  always may; an open one may not; a half-open one grants exactly one trial.
* ``report`` update: a step's outcome on a tool. A success closes the breaker;
  ``failure_threshold`` consecutive failures (or a failed half-open trial) open it
  for ``cool_down_seconds``, a durable timer, after which it is half-open.
* ``breakers`` query: every tool's breaker.

The history stays bounded: after ``board.max_updates`` updates (or when Temporal
suggests it) the workflow continues as new with its board as input.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.workstream import (
        BreakerBoard,
        BreakerGrant,
        BreakerOutcome,
        BreakerPhase,
        BreakerPick,
        BreakerReport,
        ToolBreaker,
    )
    from temporal_plumbing import metrics



@workflow.defn(name="BreakerWorkflow")
class BreakerWorkflow:
    """The shared circuit breakers (see the module docstring)."""

    @workflow.init
    def __init__(self, board: BreakerBoard) -> None:
        self._board = board
        self._updates = 0
        self._changed = False

    @workflow.query(name="breakers")
    def breakers(self) -> BreakerBoard:
        """Every tool's breaker."""
        return self._board

    def _tool(self, name: str) -> ToolBreaker:
        return self._board.tools.setdefault(name, ToolBreaker())

    @workflow.update(name="pick")
    def pick(self, req: BreakerPick) -> BreakerGrant:
        """The first of ``req.candidates`` whose breaker lets a step run now."""
        self._updates += 1
        grant = BreakerGrant()
        for name in req.candidates:
            tool = self._tool(name)
            if tool.phase == BreakerPhase.CLOSED:
                grant.tool = name
                return grant
            if tool.phase == BreakerPhase.HALF_OPEN and tool.trial_holder in ("", req.holder):
                tool.trial_holder = req.holder
                grant.tool, grant.half_open_trial = name, True
                return grant
            if tool.phase == BreakerPhase.HALF_OPEN:
                grant.skipped[name] = f"half-open, trial held by {tool.trial_holder}"
                # the trial's outcome decides; look again after a short while
                soon = workflow.now() + timedelta(seconds=5)
                grant.retry_at = min(grant.retry_at or soon, soon)
            else:
                assert tool.open_until is not None
                grant.skipped[name] = f"open until {tool.open_until:%H:%M:%S}"
                grant.retry_at = min(grant.retry_at or tool.open_until, tool.open_until)
        return grant

    @workflow.update(name="report")
    def report(self, rep: BreakerReport) -> BreakerOutcome:
        """Record a step's outcome on ``rep.tool``; open the breaker when it trips."""
        self._updates += 1
        tool = self._tool(rep.tool)
        if tool.trial_holder == rep.holder:
            tool.trial_holder = ""
        if rep.success:
            if tool.phase != BreakerPhase.CLOSED:
                metrics.breaker_transition(workflow.metric_meter(), rep.tool, "closed")
            tool.phase, tool.consecutive_failures, tool.open_until = (
                BreakerPhase.CLOSED, 0, None)
            return BreakerOutcome(breaker=tool)
        tool.consecutive_failures += 1
        trips = (tool.phase == BreakerPhase.HALF_OPEN
                 or (tool.phase == BreakerPhase.CLOSED
                     and tool.consecutive_failures >= rep.policy.failure_threshold))
        if trips:
            tool.phase = BreakerPhase.OPEN
            tool.open_until = workflow.now() + timedelta(seconds=rep.policy.cool_down_seconds)
            tool.trips += 1
            self._changed = True
            metrics.breaker_transition(workflow.metric_meter(), rep.tool, "open")
        return BreakerOutcome(breaker=tool, tripped=trips)

    @workflow.run
    async def run(self, board: BreakerBoard) -> None:
        """Half-open each open breaker when its cool-down ends; continue as new when
        the history grows (never returns otherwise)."""
        while True:
            opened = [t.open_until for t in self._board.tools.values()
                      if t.phase == BreakerPhase.OPEN and t.open_until is not None]
            timeout = (max(min(opened) - workflow.now(), timedelta(0)) if opened else None)
            self._changed = False
            try:
                await workflow.wait_condition(
                    lambda: self._changed or self._updates >= self._board.max_updates
                    or workflow.info().is_continue_as_new_suggested(),
                    timeout=timeout, timeout_summary="next breaker cool-down ends")
            except TimeoutError:
                pass
            now = workflow.now()
            for name, tool in self._board.tools.items():
                if (tool.phase == BreakerPhase.OPEN and tool.open_until is not None
                        and tool.open_until <= now):
                    tool.phase, tool.trial_holder = BreakerPhase.HALF_OPEN, ""
                    metrics.breaker_transition(workflow.metric_meter(), name, "half_open")
            if (self._updates >= self._board.max_updates
                    or workflow.info().is_continue_as_new_suggested()):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._board)
