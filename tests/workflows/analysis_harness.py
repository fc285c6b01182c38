"""What the AnalysisWorkflow tests share: the real offline LLM activity with per-phase
overrides (standing in for a model that misbehaves), a gate driver, and a request."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from activities.llm import LlmActivities, OfflineProvider, render_documents
from models.analysis import AnalysisRequest, Catalogue
from models.common import GateDecision, GateInfo, Verdict
from models.llm import LlmRequest, LlmResponse, ModelPrice
from workflows.gates import GATE_UPDATE

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "analysis"
EXAMPLE = ROOT / "examples" / "analysis"  # the library-choice sample (README, bench)
PRICE = ModelPrice(input=3, output=15)

Hook = Callable[[LlmRequest, LlmResponse, int], LlmResponse]


def catalogue() -> Catalogue:
    return Catalogue.model_validate(yaml.safe_load((ROOT / "catalogue" / "analysis.yaml")
                                                   .read_text()))


def analysis_request(**overrides: Any) -> AnalysisRequest:
    fields: dict[str, Any] = {
        "problem": (FIXTURES / "problem.md").read_text(), "title": "German market entry",
        "catalogue": catalogue(), "sources": [str(FIXTURES / "german-e-invoicing.md")]}
    return AnalysisRequest(**{**fields, **overrides})


class ScriptedLlm:
    """The real offline ``llm_complete``, with a hook per phase that may change the
    answer or raise (the hook gets the request, the offline answer and the call's
    number within its phase, from 1)."""

    def __init__(self, hooks: dict[str, Hook] | None = None, price: ModelPrice = PRICE) -> None:
        self.inner = LlmActivities(OfflineProvider(price))
        self.hooks = hooks or {}
        self.calls: list[LlmRequest] = []  # as rendered: documents in ``variables``
        self.sent: list[LlmRequest] = []  # as the workflow sent them

    def phase_calls(self, phase: str) -> list[LlmRequest]:
        return [c for c in self.calls if c.phase == phase]

    @activity.defn(name="llm_complete")
    async def llm_complete(self, request: LlmRequest) -> LlmResponse:
        self.sent.append(request)
        rendered = request.model_copy(update={"variables": {
            **request.variables, **{name: render_documents(docs, self.inner.store)
                                    for name, docs in request.documents.items()}}})
        self.calls.append(rendered)
        response = await self.inner.llm_complete(request)
        hook = self.hooks.get(request.phase)
        return hook(rendered, response, len(self.phase_calls(request.phase))) if hook \
            else response


def with_data(response: LlmResponse, data: dict[str, Any]) -> LlmResponse:
    """``response`` carrying ``data`` as its structured output."""
    return response.model_copy(update={"data": data, "text": json.dumps(data)})


def decision(gate: str, verdict: Verdict = Verdict.APPROVE, comment: str = "",
             content: Any = None) -> GateDecision:
    if content is not None and not isinstance(content, str):
        content = json.dumps(content)
    return GateDecision(gate=gate, verdict=verdict, actor="reviewer", comment=comment,
                        content=content)


DEFAULTS = {"clarify": decision("clarify", content={"answers": ["mostly about markets"]}),
            "budget": decision("budget", content="1000")}


async def drive(handle: WorkflowHandle, script: dict[str, list[GateDecision]] | None = None,
                timeout: float = 60, on_gate: Callable[[WorkflowHandle, str], Any] | None = None
                ) -> list[str]:
    """Answer each gate as it opens, with the next scripted decision for it (else
    approve) until the workflow closes; return the gates in the order they opened.
    ``on_gate(handle, gate)`` is awaited first at each gate; False skips the answer."""
    script = {k: list(v) for k, v in (script or {}).items()}
    opened: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return opened
        for gate in await handle.query("pending_gates", result_type=list[GateInfo]):
            opened.append(gate.gate)
            if on_gate is not None and await on_gate(handle, gate.gate) is False:
                continue  # the hook decided not to answer
            queued = script.get(gate.gate)
            chosen = queued.pop(0) if queued else DEFAULTS.get(gate.gate, decision(gate.gate))
            await handle.execute_update(GATE_UPDATE, chosen)
        await asyncio.sleep(0.02)
    raise AssertionError(f"the workflow did not finish; gates so far: {opened}")


def workflow_id() -> str:
    return f"analysis-test-{uuid.uuid4().hex[:8]}"
