"""The worker's log (temporal_plumbing.logs): expected failures are one line with the
workflow ID, type and message; a bug keeps its traceback; LOG_FORMAT=json is one
JSON object a line. Real SDLC runs on the time-skipping server, logged by the SDK's
own loggers through the handler the worker installs."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.common import ArtifactRef, GateDecision, Verdict
from models.sdlc import GATE_1, AgentTask
from temporal_plumbing.logs import configure_logging
from tests.conftest import NO_SIGNERS
from tests.workflows.test_sdlc import FakeActivities, gate_open, request
from workflows.gates import GATE_SIGNAL, GATE_UPDATE
from workflows.sdlc import SdlcWorkflow


class FailingAgent(FakeActivities):
    """Round 1 writes the spec; round 2 (after a revise) fails as a step does: an
    ApplicationError (expected). With ``bug``, round 1's first attempt raises a
    KeyError (a bug), which Temporal retries."""

    def __init__(self, bug: bool = False) -> None:
        super().__init__()
        self.bug = bug

    def all(self) -> list:
        others = [a for a in super().all() if a.__name__ != "run_agent"]

        @activity.defn(name="run_agent")
        async def run_agent(task: AgentTask) -> ArtifactRef:
            if self.bug and task.round == 1 and activity.info().attempt == 1:
                raise KeyError("spec_relpath")
            if task.round >= 2:
                raise ApplicationError("agent exited with code 1: spec.md not written\nlast "
                                       "line of its output", type="AgentFailed",
                                       non_retryable=True)
            return ArtifactRef(path=f"{task.worktree}/spec.md", sha256="a" * 64, bytes=1,
                               commit="1" * 40)

        return [*others, run_agent]


@pytest.fixture
def log_to() -> Iterator[callable]:
    handlers: list[logging.Handler] = []
    level = logging.getLogger().level

    def install(fmt: str) -> io.StringIO:
        buf = io.StringIO()
        handlers.append(configure_logging(fmt, "INFO", buf))
        return buf

    yield install
    for h in handlers:
        logging.getLogger().removeHandler(h)
    logging.getLogger().setLevel(level)


async def run(env: WorkflowEnvironment, acts: FailingAgent) -> str:
    """An SDLC run: a refused signal at gate 1, a revise, round 2's agent fails."""
    task_queue = f"logs-{uuid.uuid4()}"
    wf_id = f"sdlc-logs-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*acts.all(), NO_SIGNERS]):
        handle = await env.client.start_workflow(SdlcWorkflow.run, request(), id=wf_id,
                                                 task_queue=task_queue)
        await gate_open(handle)
        await handle.signal(GATE_SIGNAL, {"gate": "GATE_9", "verdict": "approve",
                                          "actor": "mallory"})
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate=GATE_1, verdict=Verdict.REVISE, actor="ann", comment="add a test plan"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    return wf_id


async def test_json_lines_expected_failures_without_tracebacks(ts_env, log_to):
    buf = log_to("json")
    wf_id = await run(ts_env, FailingAgent())
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]  # every line is JSON
    mine = [r for r in lines if r.get("workflow_id") == wf_id]
    refused = [r for r in mine if r["message"].startswith("refused:")]
    assert len(refused) == 1 and refused[0]["workflow_type"] == "SdlcWorkflow"
    assert "GATE_9" in refused[0]["message"] and refused[0]["level"] == "WARNING"
    failed = [r for r in mine if r["message"] == "Completing activity as failed"]
    assert len(failed) == 1
    assert failed[0]["workflow_type"] == "SdlcWorkflow"
    assert failed[0]["activity_type"] == "run_agent"
    assert failed[0]["error_type"] == "AgentFailed" and failed[0]["non_retryable"] is True
    assert failed[0]["error_message"].startswith("agent exited with code 1")
    assert not any("traceback" in r for r in mine)


async def test_text_lines_keep_a_traceback_for_a_bug_only(ts_env, log_to):
    buf = log_to("text")
    wf_id = await run(ts_env, FailingAgent(bug=True))
    text = buf.getvalue()
    mine = [line for line in text.splitlines() if f"workflow_id={wf_id}" in line]
    expected = [line for line in mine if "error_type=AgentFailed" in line]
    assert len(expected) == 1
    assert "workflow_type=SdlcWorkflow" in expected[0] and "non_retryable=true" in expected[0]
    assert "agent exited with code 1: spec.md not written\\nlast line" in expected[0]
    bug = [line for line in mine if "error=KeyError" in line]
    assert len(bug) == 1
    # the bug's line is followed by its traceback; the expected failure's is not
    after_bug = text.split(bug[0], 1)[1].lstrip("\n")
    assert after_bug.startswith("Traceback (most recent call last):")
    assert 'raise KeyError("spec_relpath")' in after_bug.split("\n2026", 1)[0] or \
        "KeyError: 'spec_relpath'" in after_bug
    after_expected = text.split(expected[0], 1)[1].lstrip("\n")
    assert not after_expected.startswith("Traceback")
    assert text.count("Traceback (most recent call last):") == 1
