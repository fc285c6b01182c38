"""A minimal LlmWorkflow for the tests: one LLM call per phase named in its input."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

from workflows.llm import LlmWorkflow

with workflow.unsafe.imports_passed_through():
    from models.llm import LlmRequest


class ProbeInput(BaseModel):
    phases: list[str]
    budget_usd: float | None = None


@workflow.defn(name="LlmProbeWorkflow")
class LlmProbeWorkflow(LlmWorkflow):
    @workflow.run
    async def run(self, inp: ProbeInput) -> list[str]:
        self.budget_usd = inp.budget_usd
        answers = []
        for i, phase in enumerate(inp.phases):
            response = await self.call_llm(LlmRequest(
                phase=phase, template="judge.md", variables={"topic": f"topic {i}"}))
            answers.append(response.text)
        return answers
