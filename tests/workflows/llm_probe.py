"""A minimal LlmWorkflow for the tests: one LLM call per phase named in its input."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import workflow

from workflows.llm import LlmWorkflow

with workflow.unsafe.imports_passed_through():
    from models.llm import LlmRequest


class ProbeInput(BaseModel):
    phases: list[str]
    budget_usd: float | None = None
    parallel: int = 0  # then this many calls at once
    output_schema: dict | None = None


@workflow.defn(name="LlmProbeWorkflow")
class LlmProbeWorkflow(LlmWorkflow):
    @workflow.run
    async def run(self, inp: ProbeInput) -> list[str]:
        self.budget_usd = inp.budget_usd
        answers = []
        for i, phase in enumerate(inp.phases):
            response = await self.call_llm(LlmRequest(
                phase=phase, template="judge.md", variables={"topic": f"topic {i}"},
                output_schema=inp.output_schema))
            answers.append(response.text)
        responses = await asyncio.gather(*(self.call_llm(LlmRequest(
            phase="parallel", template="judge.md", variables={"topic": f"parallel {i}"}))
            for i in range(inp.parallel)))
        return answers + [r.text for r in responses]
