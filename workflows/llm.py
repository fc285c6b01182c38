"""LOCAL SEAM (issue 5) for the LLM layer of issue 4: ``LlmWorkflow`` with
``call_llm`` and the ``llm_ledger`` query (no budget gate in this seam).

Replaced by issue 4's ``workflows/llm.py`` when "LLM layer:" lands on main.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.gates import GatedWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.llm import LlmActivities
    from models.llm import LlmRequest, LlmResponse, LlmUsage


class LlmWorkflow(GatedWorkflow):
    """Base class of workflows that call an LLM."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger: list[LlmUsage] = []
        self.budget_usd: float | None = None

    @workflow.query(name="llm_ledger")
    def llm_ledger(self) -> list[LlmUsage]:
        """Every LLM call's usage."""
        return list(self.ledger)

    async def call_llm(self, request: LlmRequest, *, summary: str | None = None
                       ) -> LlmResponse:
        """Run ``llm_complete`` and record its usage in the ledger."""
        response = await workflow.execute_activity_method(
            LlmActivities.llm_complete, request,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=5),
            summary=summary or f"LLM call: {request.phase}",
        )
        self.ledger.append(response.usage)
        return response
