"""Activities through which workstream runs reach the shared BreakerWorkflow.

Workflows cannot send updates to one another, so a run asks its breaker
questions through these two activities; they start the breaker workflow (ID
``workstream-breakers-<task queue>``, on the worker's task queue) the first time it is needed.
The client is the worker's own (``activity.client()``).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models.workstream import (
    BreakerBoard,
    BreakerGrant,
    BreakerOutcome,
    BreakerPick,
    BreakerReport,
    breaker_workflow_id,
)


async def _update(name: str, arg: Any, result_type: type) -> Any:
    client = activity.client()
    workflow_id = breaker_workflow_id(activity.info().task_queue)
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    try:
        return await handle.execute_update(name, arg, result_type=result_type)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    try:
        await client.start_workflow(
            "BreakerWorkflow", BreakerBoard(), id=workflow_id,
            task_queue=activity.info().task_queue,
            static_summary="circuit breakers of the workstream tools")
    except WorkflowAlreadyStartedError:
        pass
    return await handle.execute_update(name, arg, result_type=result_type)


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
