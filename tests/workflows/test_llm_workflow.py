"""LlmWorkflow on the time-skipping server: the ledger per phase, the budget gate, and
Temporal retrying a 429 from the real SDK after the server's retry-after."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from anthropic import AsyncAnthropic
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.worker import Worker

from activities.llm import AnthropicProvider, LlmActivities, OfflineProvider
from models.common import GateDecision, GateInfo, Verdict
from models.llm import LlmLedger, ModelPrice
from settings import DEFAULT_LLM_PRICES
from tests.conftest import NO_SIGNERS
from tests.fakes import anthropic_api as api
from tests.workflows.llm_probe import LlmProbeWorkflow, ProbeInput
from workflows.gates import GATE_UPDATE
from workflows.llm import BUDGET_GATE

# $1000 per million tokens: each offline call of the probe costs a few cents
PRICE = ModelPrice(input=1000, output=1000)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    (tmp_path / "judge.md").write_text("---\noffline: 'offline answer on {topic}'\n---\n"
                                       "Judge {topic}.\n")
    return tmp_path


async def open_gate(handle, gate: str) -> None:
    for _ in range(200):
        if any(g.gate == gate for g in await handle.query("pending_gates",
                                                          result_type=list[GateInfo])):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{gate} never opened")


async def test_budget_gate_waits_then_raises_or_stops(ts_env, task_queue, prompts):
    acts = LlmActivities(OfflineProvider(PRICE), prompts)
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[LlmProbeWorkflow],
                      activities=[acts.llm_complete, NO_SIGNERS]):
        handle = await ts_env.client.start_workflow(
            LlmProbeWorkflow.run, ProbeInput(phases=["parse", "draft", "draft", "draft"],
                                             budget_usd=0.001),
            id=f"probe-{uuid.uuid4()}", task_queue=task_queue)
        await open_gate(handle, BUDGET_GATE)
        ledger = await handle.query("llm_ledger", result_type=LlmLedger)
        assert [p.phase for p in ledger.by_phase] == ["parse"] and ledger.total_usd >= 0.001
        too_low = GateDecision(gate=BUDGET_GATE, verdict=Verdict.APPROVE, actor="ann",
                               content="0.0005")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(GATE_UPDATE, too_low)
        assert "above the" in str(refused.value.cause)
        await handle.execute_update(GATE_UPDATE, too_low.model_copy(
            update={"content": f"{ledger.total_usd * 2.5:.6f}"}))
        await open_gate(handle, BUDGET_GATE)  # two more calls fit, the third waits
        ledger = await handle.query("llm_ledger", result_type=LlmLedger)
        assert [(p.phase, p.calls) for p in ledger.by_phase] == [("parse", 1), ("draft", 2)]
        assert ledger.entries[0].provider == "offline"
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate=BUDGET_GATE, verdict=Verdict.REJECT, actor="ann", comment="enough"))
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert "stopped at the budget gate by ann: enough" in str(failure.value.cause)


async def test_parallel_calls_over_budget_share_one_gate(ts_env, task_queue, prompts):
    acts = LlmActivities(OfflineProvider(PRICE), prompts)
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[LlmProbeWorkflow],
                      activities=[acts.llm_complete, NO_SIGNERS]):
        handle = await ts_env.client.start_workflow(
            LlmProbeWorkflow.run, ProbeInput(phases=["first"], budget_usd=0.001, parallel=3),
            id=f"probe-{uuid.uuid4()}", task_queue=task_queue)
        await open_gate(handle, BUDGET_GATE)
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate=BUDGET_GATE, verdict=Verdict.APPROVE, actor="ann", content="100"))
        answers = await handle.result()
    assert answers[1:] == [f"offline answer on parallel {i}" for i in range(3)]


async def test_under_budget_no_gate(ts_env, task_queue, prompts):
    acts = LlmActivities(OfflineProvider(PRICE), prompts)
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[LlmProbeWorkflow],
                      activities=[acts.llm_complete, NO_SIGNERS]):
        answers = await ts_env.client.execute_workflow(
            LlmProbeWorkflow.run, ProbeInput(phases=["a", "b"], budget_usd=100),
            id=f"probe-{uuid.uuid4()}", task_queue=task_queue)
    assert answers == ["offline answer on topic 0", "offline answer on topic 1"]


async def test_429_is_retried_by_temporal_and_lands_in_the_ledger(ts_env, task_queue, prompts):
    with api.serve() as fake:
        fake.script = [api.error(429, "rate limited", retry_after="2"),
                       api.error(529, "Overloaded"),
                       api.text("fine", input_tokens=1000, output_tokens=100)]
        client = AsyncAnthropic(api_key="sk-test", base_url=fake.url, max_retries=0)
        acts = LlmActivities(AnthropicProvider(client, "claude-sonnet-4-6", {},
                                               DEFAULT_LLM_PRICES), prompts)
        async with Worker(ts_env.client, task_queue=task_queue, workflows=[LlmProbeWorkflow],
                          activities=[acts.llm_complete, NO_SIGNERS]):
            handle = await ts_env.client.start_workflow(
                LlmProbeWorkflow.run, ProbeInput(phases=["judge"]),
                id=f"probe-{uuid.uuid4()}", task_queue=task_queue)
            assert await handle.result() == ["fine"]
            ledger = await handle.query("llm_ledger", result_type=LlmLedger)
        assert len(fake.requests) == 3
        assert ledger.total_usd == pytest.approx((1000 * 3 + 100 * 15) / 1e6)


async def test_invalid_output_fails_the_call_but_its_usage_is_in_the_ledger(ts_env, task_queue,
                                                                          prompts):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with api.serve() as fake:
        fake.script = [api.tool_use({"n": "one"}, input_tokens=1000, output_tokens=0)] * 2
        client = AsyncAnthropic(api_key="sk-test", base_url=fake.url, max_retries=0)
        acts = LlmActivities(AnthropicProvider(client, "claude-sonnet-4-6", {},
                                               DEFAULT_LLM_PRICES, validation_retries=1),
                             prompts)
        async with Worker(ts_env.client, task_queue=task_queue, workflows=[LlmProbeWorkflow],
                          activities=[acts.llm_complete, NO_SIGNERS]):
            handle = await ts_env.client.start_workflow(
                LlmProbeWorkflow.run, ProbeInput(phases=["count"], output_schema=schema),
                id=f"probe-{uuid.uuid4()}", task_queue=task_queue)
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            ledger = await handle.query("llm_ledger", result_type=LlmLedger)
    assert len(fake.requests) == 2  # non-retryable: Temporal did not retry it
    assert [(e.attempts, e.input_tokens) for e in ledger.entries] == [(2, 2000)]
    assert ledger.total_usd == pytest.approx(2000 * 3 / 1e6)
