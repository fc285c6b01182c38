"""The open-gates gauge across continue-as-new, read from the worker's metrics: a
workstream review gate still open when its run continues as new is not counted closed
by that run nor opened again by the next, so ``orchestrator_gates_opened -
orchestrator_gates_closed`` stays 1 while it waits and is 0 once it is decided, as for
SDLC's GATE_1 (tests/integration/test_metrics.py). On the time-skipping server, with a
worker whose runtime buffers metrics; the history fills up with refused signals of an
unknown name."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.client import Client
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment

from models.common import GateDecision, Verdict
from models.workstream import WorkstreamResult
from settings import Settings
from temporal_plumbing import metrics
from temporal_plumbing.client import connect_client
from tests.workflows.test_gate_signatures import fill_until_continued
from tests.workflows.test_sdlc import gate_open
from tests.workflows.test_workstream import make_input, shell
from worker import make_worker
from workflows.gates import GATE_UPDATE

BUDGET = 100  # history events per run (the smallest budget a workstream takes)


class GateMetrics:
    """The gate counters a worker's runtime recorded, summed over its buffer."""

    def __init__(self) -> None:
        self.buffer = MetricBuffer(100_000)
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def read(self) -> Counter[tuple[str, str, str]]:
        """(metric, gate, outcome) -> the sum so far (outcome "" for opened)."""
        for update in self.buffer.retrieve_updates():
            if update.metric.name in (metrics.GATES_OPENED, metrics.GATES_CLOSED):
                labels = dict(update.attributes)
                self.counts[(update.metric.name, str(labels["gate"]),
                             str(labels.get("outcome", "")))] += int(update.value)
        return self.counts

    def open_now(self, gate: str) -> int:
        """opened - closed for ``gate``: the open-gates gauge."""
        counts = self.read()
        return sum(v if name == metrics.GATES_OPENED else -v
                   for (name, g, _), v in counts.items() if g == gate)


@pytest_asyncio.fixture
async def metered(ts_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, GateMetrics]]:
    """A client of the test server on a runtime of its own that buffers metrics (its
    workers record there); it does not skip time, which these tests do not need."""
    gauge = GateMetrics()
    runtime = Runtime(telemetry=TelemetryConfig(metrics=gauge.buffer))
    client = await connect_client(runtime=runtime,
                                  target_host=ts_env.client.service_client.config.target_host)
    yield client, gauge


async def until(gauge: GateMetrics, gate: str, value: int) -> None:
    """Wait until the gauge of ``gate`` reads ``value`` (metrics reach the buffer
    asynchronously)."""
    for _ in range(100):
        if gauge.open_now(gate) == value:
            return
        await asyncio.sleep(0.05)
    assert gauge.open_now(gate) == value, gauge.read()


async def test_workstream_review_open_across_continue_as_new_counts_once(
        metered, tmp_path: Path, task_queue):
    client, gauge = metered
    inp = make_input(tmp_path, [shell("draft", "echo draft > draft.txt", gate=True)])
    inp = inp.model_copy(update={"history_budget": BUDGET})
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        workstream_trust_spec_tools=True)
    async with make_worker(client, settings):
        handle = await client.start_workflow(
            "WorkstreamWorkflow", inp, id=f"workstream-{inp.spec.work_item}",
            task_queue=task_queue)
        opened = await gate_open(handle, "review-draft", polls=400)
        await until(gauge, "review-draft", 1)
        await fill_until_continued(handle)
        carried = await gate_open(handle, "review-draft", polls=400)
        # the same opening, still bound to the run it opened in (signed decisions)
        assert (carried.opening, carried.signing_run_id) == (
            opened.opening, handle.result_run_id)
        await asyncio.sleep(0.3)
        assert gauge.open_now("review-draft") == 1, gauge.read()
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate="review-draft", verdict=Verdict.APPROVE, actor="ann"))
        result = WorkstreamResult.model_validate(await handle.result())
        await until(gauge, "review-draft", 0)
    assert result.state == "succeeded"
    assert "continued_as_new" in [e.kind for e in result.audit]
    assert gauge.read() == Counter({(metrics.GATES_OPENED, "review-draft", ""): 1,
                                    (metrics.GATES_CLOSED, "review-draft", "decided"): 1})
