"""A workstream run's history stays bounded: with a small history budget, a long chain
of steps and a review gate kept open for days, the run continues as new between
scheduling waves and while the gate waits, carrying the run so far, on the
time-skipping server with the worker's real activities and real git."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.workstream import TRAILER_WORKFLOW, verify_chain
from models.common import GateDecision, Verdict
from models.workstream import ResumeRequest, StepAttempt, WorkstreamResult
from tests.conftest import git
from tests.workflows.test_long_gate import runs_of
from tests.workflows.test_workstream import Run, make_input, shell
from workflows.gates import GATE_UPDATE
from workflows.workstream import WorkstreamWorkflow

BUDGET = 100  # this test's history budget per run (the default is 5,000)
CHAIN = 16  # noop steps run one after another beside the review


async def settled(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any],
                  handoffs: int) -> None:
    """Wait until ``handoffs`` handoff commits are done and the latest run is idle
    (no activity in flight, its last workflow task completed), reading histories
    only. A query that reaches the time-skipping server just as the run continues
    as new is never answered and leaves the server unable to skip time, so this
    test queries only a run that has settled."""
    done = {EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT}
    for _ in range(300):
        runs = await runs_of(env, handle)
        latest = runs[-1]
        committed = sum(1 for events in runs for e in events
                        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                        and e.activity_task_scheduled_event_attributes.activity_type.name
                        == "ws_commit_handoff")
        scheduled = sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                        for e in latest)
        if (committed >= handoffs and scheduled == sum(e.event_type in done for e in latest)
                and latest[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run never settled after {handoffs} handoff commits")


async def test_long_chain_and_a_review_open_for_days_continue_as_new_and_show_the_whole_run(
        private_ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    env = private_ts_env
    chain = [{"id": f"c{i}", "kind": "noop", **({"depends_on": [f"c{i - 1}"]} if i else {})}
             for i in range(CHAIN)]
    inp = make_input(tmp_path, [
        shell("draft", 'if [ -n "$WORKSTREAM_FEEDBACK_FILE" ]; then cp '
              '"$WORKSTREAM_FEEDBACK_FILE" draft.txt; else echo first > draft.txt; fi',
              gate=True, priority=1),
        *chain,
        shell("publish", "cat draft.txt", depends_on=["draft", f"c{CHAIN - 1}"]),
    ], tools={"sh": {"adapter": "shell", "breaker": None},
              "nop": {"adapter": "noop", "breaker": None}},
        routes={"shell": {"tools": ["sh"]}, "noop": {"tools": ["nop"]}}, max_parallel=1)
    inp = inp.model_copy(update={"history_budget": BUDGET})
    async with Run(env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        latest = env.client.get_workflow_handle(handle.id)  # follows continue-as-new
        await settled(env, handle, CHAIN + 1)  # the chain done, the draft under review
        assert (await latest.query(WorkstreamWorkflow.progress)).review == ["draft"]
        opened = (await latest.query(WorkstreamWorkflow.state)).pending_gates[0]
        for _ in range(3 * 4):  # three days, in steps: one sleep call has an RPC deadline
            await env.sleep(timedelta(hours=6))
        # the queries the CLI uses show the whole run after continue-as-new
        state = await latest.query(WorkstreamWorkflow.state)
        report = await latest.query(WorkstreamWorkflow.report)
        events = await latest.query(WorkstreamWorkflow.run_events)
        assert state.pending_gates[0].opened_at == opened.opened_at
        assert state.pending_gates[0].opening == opened.opening
        assert state.steps == report.steps and len(state.steps) == CHAIN + 2
        assert [a.step for a in report.attempts] == ["draft", *(f"c{i}" for i in range(CHAIN))]
        assert [e.step for e in events if e.kind == "scheduled"] == [
            "draft", *(f"c{i}" for i in range(CHAIN))]
        assert any(e.kind == "continued_as_new" for e in events)
        await latest.execute_update(GATE_UPDATE, GateDecision(
            gate="review-draft", verdict=Verdict.REVISE, actor="rita", comment="say hello"))
        await settled(env, handle, CHAIN + 2)  # the revised draft under review
        assert (await latest.query(WorkstreamWorkflow.progress)).review == ["draft"]
        await latest.execute_update(GATE_UPDATE, GateDecision(
            gate="review-draft", verdict=Verdict.APPROVE, actor="rita"))
        result = WorkstreamResult.model_validate(await latest.result())
        report = await latest.query(WorkstreamWorkflow.report)
        progress = await latest.query(WorkstreamWorkflow.progress)
        runs = await runs_of(env, handle)

    assert result.state == "succeeded" and progress.done and not progress.review
    assert set(result.steps) == {"draft", "publish", *(f"c{i}" for i in range(CHAIN))}
    # bounded: several runs, each continued at a safe point soon after its budget
    assert len(runs) >= 3
    assert all(len(events) <= BUDGET + 40 for events in runs[:-1]), [len(r) for r in runs]
    audit = [e.kind for e in result.audit]
    assert audit.count("continued_as_new") == len(runs) - 1
    assert "gate_resumed" in audit  # the review gate reopened as it was in a later run
    decisions = [e.detail.split(" (via")[0] for e in result.audit if e.kind == "decision"]
    assert decisions == ["review-draft: revise", "review-draft: approve"]
    # the revise reached the step through its feedback file, across the runs
    attempts: list[StepAttempt] = report.attempts
    publish = next(a for a in attempts if a.step == "publish")
    assert "## Round 1\n\nsay hello\n" in Path(publish.outputs[0].path).read_text()
    # one handoff commit per step execution, in one unbroken chain across the runs
    assert [a.number for a in attempts if a.step == "draft"] == [1, 2]
    assert len(result.handoffs) == len(attempts) == CHAIN + 3
    commits = git(Path(report.workspace), "log", "--format=%H",
                  f"--grep={TRAILER_WORKFLOW}: {handle.id}", report.branch).split()
    assert len(commits) == len(attempts)
    check = verify_chain(Path(report.workspace), report.branch, handle.id, result.handoffs)
    assert check.ok and check.checked == CHAIN + 3
    # the report spans the whole run: from the first run's start past the days waited
    assert report.started_at <= attempts[0].started_at
    assert report.finished_at - report.started_at >= timedelta(days=3)


def test_long_texts_are_carried_shortened_with_the_run_that_holds_them_whole():
    from workflows.workstream import _carried
    comment = "x" * 5_000
    carried = _carried(comment, "run-1")
    assert carried.startswith("x" * 1_000) and len(carried) < 2_000
    assert "5,000 characters in all: whole in the history of run run-1" in carried
    assert _carried(carried, "run-2") == carried  # carried again: unchanged
    assert _carried("short", "run-1") == "short"


async def test_a_quarantined_run_continues_as_new_and_resumes_in_the_next_run(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    env = ts_env
    chain = [{"id": f"c{i}", "kind": "noop", **({"depends_on": [f"c{i - 1}"]} if i else {})}
             for i in range(8)]
    inp = make_input(tmp_path, [
        *chain, shell("fragile", 'test -f "$WORKSTREAM_SPEC_DIR/fixed"', depends_on=["c7"])],
        tools={"sh": {"adapter": "shell", "breaker": None},
               "nop": {"adapter": "noop", "breaker": None}},
        routes={"shell": {"tools": ["sh"]}, "noop": {"tools": ["nop"]}}, failure_budget=0)
    inp = inp.model_copy(update={"history_budget": BUDGET})
    async with Run(env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        latest = env.client.get_workflow_handle(handle.id)
        await settled(env, handle, 9)  # quarantined after fragile failed
        assert len(await runs_of(env, handle)) >= 2  # continued as new while quarantined
        state = await latest.query(WorkstreamWorkflow.state)
        assert state.state == "quarantined" and "fragile" in state.reason
        (tmp_path / "fixed").write_text("ok")
        ack = await latest.execute_update(WorkstreamWorkflow.resume,
                                          ResumeRequest(actor="ops", comment="fixed"))
        result = WorkstreamResult.model_validate(await latest.result())
        report = await latest.query(WorkstreamWorkflow.report)
    assert ack.rerun == ["fragile"] and result.state == "succeeded"
    assert [(a.step, a.outcome) for a in report.attempts if a.step == "fragile"] == [
        ("fragile", "failed"), ("fragile", "succeeded")]
    assert [e.kind for e in result.audit].count("continued_as_new") >= 1
    assert any(e.kind == "resume" and e.actor == "ops" for e in result.audit)
