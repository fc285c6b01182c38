"""Activities through which workstream runs reach the shared BreakerWorkflow.

Workflows cannot send updates to one another, so a run asks its breaker
questions through these two activities. Each is one update-with-start
(``execute_update_with_start_workflow`` with ``USE_EXISTING``): the breaker
workflow (ID ``workstream-breakers-<task queue>``, on the worker's task queue)
is started the first time it is needed, and the update goes to the running one
otherwise. The client is the worker's own (``activity.client()``).

Exactly once: the update ID is derived from the calling workflow run and the
activity (:func:`update_id`), so a retried activity attempt (the worker died
after the update landed, or the completion was lost) sends the same update ID and
the server answers with the first outcome instead of counting it twice. Temporal
deduplicates update IDs within one run of the breaker workflow; an update retried
across its continue-as-new could count again, which BreakerWorkflow makes rare by
waiting for its handlers before it continues.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from models.workstream import (
    BreakerBoard,
    BreakerGrant,
    BreakerOutcome,
    BreakerPick,
    BreakerReport,
    breaker_workflow_id,
)


def update_id(kind: str, info: activity.Info) -> str:
    """The update ID of a breaker update sent by the activity ``info`` describes:
    ``<kind>/<workflow ID>/<run ID>/<activity ID>``, the same in every attempt of
    that activity and different for every other activity."""
    return f"{kind}/{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


async def _update(name: str, arg: Any, result_type: type) -> Any:
    info = activity.info()
    start = WithStartWorkflowOperation(
        "BreakerWorkflow", BreakerBoard(), id=breaker_workflow_id(info.task_queue),
        task_queue=info.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="circuit breakers of the workstream tools")
    return await activity.client().execute_update_with_start_workflow(
        name, arg, start_workflow_operation=start, id=update_id(name, info),
        result_type=result_type)


class BreakerActivities:
    """``breaker_pick`` and ``breaker_report`` (no state of their own)."""

    @activity.defn(name="breaker_pick")
    async def pick(self, req: BreakerPick) -> BreakerGrant:
        """The first candidate tool whose breaker lets a step run now."""
        return await _update("pick", req, BreakerGrant)

    @activity.defn(name="breaker_report")
    async def report(self, rep: BreakerReport) -> BreakerOutcome:
        """Record a step's outcome on a tool; says whether it tripped the breaker."""
        return await _update("report", rep, BreakerOutcome)
