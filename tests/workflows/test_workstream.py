"""WorkstreamWorkflow and BreakerWorkflow on the time-skipping server, with the
worker's real activities: shell steps run as real processes in real git workspaces."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.testing import WorkflowEnvironment

from activities.workstream import digest, verify_chain
from models.common import GateDecision, Verdict
from models.workstream import (
    BreakerBoard,
    BreakerOutcome,
    BreakerPhase,
    BreakerPolicy,
    BreakerReport,
    Progress,
    ResumeAck,
    ResumeRequest,
    RouterConfig,
    RunEvent,
    RunState,
    StepAttempt,
    StepState,
    WorkstreamInput,
    WorkstreamReport,
    WorkstreamSpec,
    breaker_workflow_id,
)
from settings import Settings
from tests.fault_harness import alive
from worker import make_worker
from workflows.gates import GATE_UPDATE

SH = {"adapter": "shell", "breaker": None}


def make_input(tmp: Path, steps: list[dict], tools: dict | None = None,
               routes: dict | None = None, repo: Path | None = None, **spec: Any
               ) -> WorkstreamInput:
    tools = tools or {"sh": SH}
    routes = routes or {"shell": {"tools": ["sh"]}}
    return WorkstreamInput(
        spec=WorkstreamSpec.model_validate(
            {"work_item": f"w-{uuid.uuid4().hex[:8]}", "steps": steps, **spec}),
        router=RouterConfig.model_validate({"tools": tools, "routes": routes}),
        repo_path=str(repo) if repo else None, spec_dir=str(tmp))


def shell(step_id: str, script: str, **extra: Any) -> dict:
    return {"id": step_id, "kind": "shell", "inputs": {"script": script}, **extra}


class Run:
    """A worker on the test's task queue for the duration of a test."""

    def __init__(self, env: WorkflowEnvironment, tmp: Path, task_queue: str,
                 python_modules: list[str] | None = None) -> None:
        self.env = env
        # these tests bring their own tools: the worker trusts the spec's router config
        self.settings = Settings(
            orchestrator_home=tmp / "home", temporal_task_queue=task_queue,
            workstream_trust_spec_tools=True,
            workstream_python_modules=python_modules or [
                "tests.workflows.workstream_callables"])
        self.worker = make_worker(env.client, self.settings)

    async def __aenter__(self) -> Run:
        await self.worker.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.worker.__aexit__(*exc)

    async def start(self, inp: WorkstreamInput) -> WorkflowHandle[Any, Any]:
        return await self.env.client.start_workflow(
            "WorkstreamWorkflow", inp, id=f"workstream-{inp.spec.work_item}",
            task_queue=self.settings.temporal_task_queue)


async def attempts(handle: WorkflowHandle[Any, Any]) -> dict[str, StepAttempt]:
    return {a.step: a for a in await handle.query("step_attempts", result_type=list[StepAttempt])}


async def wait_for(handle: WorkflowHandle[Any, Any], pred, what: str) -> Progress:
    for _ in range(400):
        progress = await handle.query("progress", result_type=Progress)
        if pred(progress):
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {progress}")


async def test_diamond_runs_parallel_steps_together_and_dependents_after(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    inp = make_input(tmp_path, [
        shell("top", "echo top > top.txt"),
        shell("left", "sleep 1; cat top.txt > left.txt", depends_on=["top"]),
        shell("right", "sleep 1; cat top.txt > right.txt", depends_on=["top"]),
        shell("bottom", "cat left.txt right.txt", depends_on=["left", "right"]),
    ], max_parallel=4)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        result = await handle.result()
        att = await attempts(handle)
        report = await handle.query("report", result_type=WorkstreamReport)
    assert result["state"] == "succeeded"
    left, right, top, bottom = att["left"], att["right"], att["top"], att["bottom"]
    assert left.started_at < right.finished_at and right.started_at < left.finished_at
    assert top.finished_at <= min(left.started_at, right.started_at)
    assert bottom.started_at >= max(left.finished_at, right.finished_at)
    scheduled = [e.step for e in report.events if e.kind == "scheduled"]
    assert scheduled == ["top", "left", "right", "bottom"]
    stdout = Path(bottom.outputs[0].path).read_text()
    assert stdout == "top\ntop\n"
    # one handoff commit per finished step, and the chain verifies
    assert len(report.handoffs) == 4
    check = verify_chain(Path(report.workspace), report.branch, handle.id, report.handoffs)
    assert check.ok and check.checked == 4
    doc = json.loads(Path(report.handoffs[-1].path).read_text())
    assert doc["schema"] == "handoff-artifact" and doc["version"] == 1
    assert (doc["step"], doc["attempt"], doc["tool"], doc["sequence"]) == ("bottom", 1, "sh", 4)
    assert doc["inputs_digest"] == digest({"kind": "shell", "inputs": {
        "script": "cat left.txt right.txt"}, "tool": "sh"})
    assert doc["outputs"][0]["sha256"] == bottom.outputs[0].sha256
    assert doc["timings"]["seconds"] >= 0 and doc["timings"]["started_at"]
    assert doc["previous_sha256"] == report.handoffs[-2].sha256


async def test_priority_then_spec_order_and_max_parallel(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    inp = make_input(tmp_path, [shell("a", "true"), shell("b", "true"),
                                shell("c", "true", priority=5), shell("d", "true")],
                     max_parallel=1)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        await handle.result()
        report = await handle.query("report", result_type=WorkstreamReport)
    assert [e.step for e in report.events if e.kind == "scheduled"] == ["c", "a", "b", "d"]
    att = report.attempts
    for earlier, later in zip(att, att[1:], strict=False):
        assert earlier.finished_at <= later.started_at  # never two at once


async def test_failing_step_blocks_only_its_dependents(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    inp = make_input(tmp_path, [
        shell("bad", "echo broken >&2; exit 1"), shell("after-bad", "true", depends_on=["bad"]),
        shell("later", "true", depends_on=["after-bad"]),
        shell("good", "true"), shell("after-good", "true", depends_on=["good"]),
    ])
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        progress = await handle.query("progress", result_type=Progress)
        att = await attempts(handle)
    assert progress.state == RunState.FAILED
    assert progress.failed == ["bad"]
    assert sorted(progress.blocked) == ["after-bad", "later"]
    assert sorted(progress.done) == ["after-good", "good"]
    assert att["bad"].exit_code == 1 and "broken" in att["bad"].error
    assert Path(att["bad"].outputs[1].path).read_text() == "broken\n"  # stderr artifact


async def test_retry_then_success_and_non_retryable_exit_code(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    retry = {"max_attempts": 4, "initial_interval": 0.1, "backoff": 1.0}
    inp = make_input(tmp_path, [
        shell("flaky", 'test "$WORKSTREAM_ATTEMPT" -ge 3', retry=retry),
        shell("fatal", "exit 3", retry={**retry, "non_retryable_exit_codes": [3]}),
    ])
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        att = await attempts(handle)
        report = await handle.query("report", result_type=WorkstreamReport)
    assert att["flaky"].outcome == "succeeded" and att["flaky"].attempts == 3
    assert att["fatal"].outcome == "failed" and att["fatal"].attempts == 1
    assert att["fatal"].exit_code == 3
    assert report.steps["flaky"] == StepState.SUCCEEDED


async def test_breaker_opens_routes_to_fallback_and_half_opens(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    policy = {"failure_threshold": 2, "cool_down_seconds": 300}
    tools = {"flaky": {"adapter": "shell", "env": {"BROKEN": "1"}, "breaker": policy},
             "steady": {"adapter": "shell", "breaker": policy}}
    routes = {"shell": {"strategy": "fixed", "tools": ["flaky", "steady"]}}
    script = 'test -z "$BROKEN"'
    inp = make_input(tmp_path, [shell("s1", script), shell("s2", script, depends_on=["s1"]),
                                shell("s3", script), shell("s4", script)],
                     tools=tools, routes=routes, max_parallel=1)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        report = await handle.query("report", result_type=WorkstreamReport)
        tools_used = {a.step: a.tool for a in report.attempts}
        assert tools_used == {"s1": "flaky", "s3": "flaky", "s4": "steady"}
        assert report.steps["s2"] == StepState.BLOCKED
        assert report.breaker_trips == 1
        routed = [e.detail for e in report.events if e.kind == "routed" and e.step == "s4"]
        assert "flaky skipped: open until" in routed[0]
        breaker = ts_env.client.get_workflow_handle(breaker_workflow_id(task_queue))
        board = await breaker.query("breakers", result_type=BreakerBoard)
        assert board.tools["flaky"].trips == 1 and board.tools["steady"].trips == 0
        # (the server may already have skipped past the cool-down while result() waited)
        await ts_env.sleep(timedelta(seconds=301))  # the cool-down's durable timer fires
        board = await breaker.query("breakers", result_type=BreakerBoard)
        assert board.tools["flaky"].phase == BreakerPhase.HALF_OPEN

        # the next run gets flaky for its one half-open trial; it fails and reopens
        second = await run.start(make_input(tmp_path, [shell("t1", script)], tools=tools,
                                            routes=routes))
        with pytest.raises(WorkflowFailureError):
            await second.result()
        report2 = await second.query("report", result_type=WorkstreamReport)
        assert [e.detail for e in report2.events if e.kind == "routed"][0].startswith(
            "flaky (half-open trial)")
        assert report2.breaker_trips == 1  # the failed trial opened it again
        board = await breaker.query("breakers", result_type=BreakerBoard)
        assert board.tools["flaky"].trips == 2


async def test_quarantine_then_resume(ts_env: WorkflowEnvironment, tmp_path: Path,
                                      task_queue: str):
    marker = tmp_path / "fixed"
    inp = make_input(tmp_path, [
        shell("fragile", 'test -f "$WORKSTREAM_SPEC_DIR/fixed"'),
        shell("next", "true", depends_on=["fragile"]), shell("other", "sleep 0.5"),
        shell("after-other", "true", depends_on=["other"]),
    ], failure_budget=0, max_parallel=2)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("resume", ResumeRequest(actor="ops"))
        assert "only a quarantined run" in str(refused.value.cause)
        await wait_for(handle, lambda p: p.state == RunState.QUARANTINED and not p.running,
                       "quarantine")
        state = await handle.query("state")
        assert "exceed the failure budget of 0: fragile" in state["reason"]
        progress = await handle.query("progress", result_type=Progress)
        assert progress.failed == ["fragile"] and "after-other" in progress.pending
        marker.write_text("ok")
        # (the time-skipping server can lose a completed update's outcome when the
        # workflow closes right after it, so wait for acceptance, then the result)
        update = await handle.start_update(
            "resume", ResumeRequest(actor="ops", comment="fixed"), result_type=ResumeAck,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        assert (await update.result()).rerun == ["fragile"]
        result = await handle.result()
        att = await handle.query("step_attempts", result_type=list[StepAttempt])
    assert result["state"] == "succeeded"
    assert [(a.step, a.number, a.outcome) for a in att if a.step == "fragile"] == [
        ("fragile", 1, "failed"), ("fragile", 2, "succeeded")]


async def test_gate_review_revise_then_approve(ts_env: WorkflowEnvironment, tmp_path: Path,
                                               task_queue: str):
    inp = make_input(tmp_path, [
        # the feedback comes as a file (never a variable), holding every round so far
        shell("draft", 'test -z "${WORKSTREAM_FEEDBACK:-}"; '
              'if [ -n "$WORKSTREAM_FEEDBACK_FILE" ]; then cp "$WORKSTREAM_FEEDBACK_FILE" '
              'draft.txt; else echo first > draft.txt; fi', gate=True),
        shell("publish", "cat draft.txt", depends_on=["draft"]),
    ])
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        for verdict, comment in ((Verdict.REVISE, "say hello"), (Verdict.REVISE, "louder"),
                                 (Verdict.APPROVE, "")):
            await wait_for(handle, lambda p: p.review == ["draft"], "the review gate")
            assert (await handle.query("progress", result_type=Progress)).pending == ["publish"]
            await handle.execute_update(GATE_UPDATE, GateDecision(
                gate="review-draft", verdict=verdict, actor="rita", comment=comment))
        await handle.result()
        att = await attempts(handle)
    published = Path(att["publish"].outputs[0].path).read_text()
    assert "## Round 1\n\nsay hello\n" in published and "## Round 2\n\nlouder\n" in published
    history = await handle.fetch_history()
    inputs = [e.activity_task_scheduled_event_attributes.input for e in history.events
              if e.activity_task_scheduled_event_attributes.activity_type.name == "ws_run_shell"]
    assert sum(b"say hello" in p.data for i in inputs for p in i.payloads) == 1  # sent once


async def test_cancel_kills_the_running_process_group(private_ts_env: WorkflowEnvironment,
                                                      tmp_path: Path, task_queue: str):
    pid_file = tmp_path / "pid"
    inp = make_input(tmp_path, [shell("long", f"sleep 300 & echo $! > {pid_file}; wait")])
    async with Run(private_ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        pid = int(pid_file.read_text())
        assert alive(pid)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state = await handle.query("state")
    assert state["state"] == "canceled" and state["steps"]["long"] == "canceled"
    assert not alive(pid)




def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


async def test_chain_in_repo_merges_and_tampering_is_found(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str, git_repo: Path):
    inp = make_input(tmp_path, [shell("one", "echo 1 > one.txt"),
                                shell("two", "echo 2", depends_on=["one"]),
                                shell("three", "echo 3", depends_on=["two"])],
                     repo=git_repo, merge_to_base=True)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        result = await handle.result()
        report = await handle.query("report", result_type=WorkstreamReport)
    ws, branch = Path(report.workspace), report.branch
    assert branch.endswith(inp.spec.work_item) and ws != git_repo
    # merged into main: the handoff files are there, the run's trailers in each commit
    assert git(git_repo, "rev-parse", "main") == result["merge_commit"]
    assert len(list((git_repo / ".workstream" / "handoffs").glob("*.json"))) == 3
    trailers = git(git_repo, "log", "-1", "--format=%(trailers:only)", report.handoffs[0].commit)
    assert f"Workstream-Workflow-Id: {handle.id}" in trailers
    assert "Workstream-Run-Id: " in trailers
    assert verify_chain(ws, branch, handle.id, report.handoffs).ok
    assert verify_chain(git_repo, "main", handle.id, report.handoffs).ok

    # a later commit that edits an artifact is named
    first = Path(report.handoffs[0].path)
    first.write_text(first.read_text().replace('"succeeded"', '"failed"'))
    git(ws, "commit", "-qam", "edit history")
    bad = git(ws, "rev-parse", "HEAD")
    check = verify_chain(ws, branch, handle.id, report.handoffs)
    assert not check.ok and check.first_bad_commit == bad
    assert "outside the chain" in check.problem

    # a rewritten commit (amended, trailers kept) is named
    second = report.handoffs[1]
    git(ws, "reset", "-q", "--hard", second.commit)
    path = Path(second.path)
    path.write_text(path.read_text().replace('"tool": "sh"', '"tool": "other"'))
    git(ws, "commit", "-q", "-a", "--amend", "--no-edit")
    rewritten = git(ws, "rev-parse", "HEAD")
    check = verify_chain(ws, branch, handle.id, report.handoffs)
    assert not check.ok and check.first_bad_commit == rewritten and check.checked == 1
    assert "SHA-256" in check.problem


async def test_routing_strategies_record_their_reasons(ts_env: WorkflowEnvironment,
                                                       tmp_path: Path, task_queue: str):
    tools = {"a": {**SH, "capabilities": ["x"]}, "b": {**SH, "capabilities": ["x", "gpu"]},
             "sick": {**SH, "capabilities": ["x", "gpu"], "healthy": False}}
    routes = {"rr": {"strategy": "round_robin", "tools": ["a", "b"]},
              "auto": {"strategy": "auto", "tools": ["sick", "a", "b"]}}
    steps = [{"id": f"r{i}", "kind": "rr", "inputs": {"script": "true"}} for i in range(3)]
    steps += [{"id": "needs-gpu", "kind": "auto", "requires": ["gpu"],
               "inputs": {"script": "true"}},
              {"id": "any", "kind": "auto", "inputs": {"script": "true"}}]
    inp = make_input(tmp_path, steps, tools=tools, routes=routes, max_parallel=1)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        await handle.result()
        report = await handle.query("report", result_type=WorkstreamReport)
    used = {a.step: a.tool for a in report.attempts}
    assert used == {"r0": "a", "r1": "b", "r2": "a", "needs-gpu": "b", "any": "a"}
    why = {e.step: e.detail for e in report.events if e.kind == "routed"}
    assert why["r1"] == "b: round_robin turn 2 over [a, b]"
    assert why["needs-gpu"] == ("b: auto: first healthy tool covering ['gpu'] of [sick, a, b]; "
                                "unhealthy: sick; lacking capabilities: a")


async def test_python_adapter_calls_by_import_path(ts_env: WorkflowEnvironment,
                                                   tmp_path: Path, task_queue: str):
    mod = "tests.workflows.workstream_callables"
    inp = make_input(tmp_path, [
        {"id": "calc", "kind": "python",
         "inputs": {"callable": f"{mod}:area", "kwargs": {"width": 3, "height": 4}}},
        {"id": "boom", "kind": "python", "inputs": {"callable": f"{mod}:explode",
                                                    "kwargs": {"reason": "no disk"}}},
        {"id": "ghost", "kind": "python", "inputs": {"callable": f"{mod}:missing"}},
    ], tools={"py": {"adapter": "python", "breaker": None}},
        routes={"python": {"tools": ["py"]}})
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        att = await attempts(handle)
    assert att["calc"].outcome == "succeeded"
    assert Path(att["calc"].outputs[0].path).read_text() == '{"area": 12}'
    assert "RuntimeError: no disk" in att["boom"].error
    assert "cannot import" in att["ghost"].error


async def test_agent_adapter_runs_the_sdlc_agent_runner(ts_env: WorkflowEnvironment,
                                                        tmp_path: Path, task_queue: str,
                                                        git_repo: Path):
    inp = make_input(tmp_path, [
        {"id": "spec", "kind": "agent",
         "inputs": {"title": "Add CSV export", "description": "Export results as CSV."}},
        shell("check", 'grep -q "CSV" specs/*/spec.md', depends_on=["spec"]),
    ], tools={"offline-agent": {"adapter": "agent", "runner": "offline", "breaker": None},
              "sh": SH},
        routes={"agent": {"tools": ["offline-agent"]}, "shell": {"tools": ["sh"]}},
        repo=git_repo)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        result = await handle.result()
        att = await attempts(handle)
    spec = att["spec"].outputs[0]
    assert spec.path.endswith("spec.md") and spec.commit
    assert result["steps"] == {"spec": "succeeded", "check": "succeeded"}


async def test_agent_step_revised_twice_reads_every_round_from_its_feedback_file(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str, git_repo: Path):
    inp = make_input(tmp_path, [
        {"id": "spec", "kind": "agent", "gate": True,
         "inputs": {"title": "Add CSV export", "description": "Export results as CSV."}},
    ], tools={"offline-agent": {"adapter": "agent", "runner": "offline", "breaker": None}},
        routes={"agent": {"tools": ["offline-agent"]}}, repo=git_repo)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        for verdict, comment in ((Verdict.REVISE, "name the columns"),
                                 (Verdict.REVISE, "quote the commas"), (Verdict.APPROVE, "")):
            await wait_for(handle, lambda p: p.review == ["spec"], "the review gate")
            await handle.execute_update(GATE_UPDATE, GateDecision(
                gate="review-spec", verdict=verdict, actor="rita", comment=comment))
        await handle.result()
        att = await attempts(handle)
        history = await handle.fetch_history()
    spec = att["spec"].outputs[0]
    text = Path(spec.path).read_text()
    assert "name the columns" in text and "quote the commas" in text  # both rounds
    feedback = git(Path(spec.path).parent, "show", f"{spec.commit}:./feedback-spec.md")
    assert "## Round 1\n\nname the columns" in feedback
    assert "## Round 2\n\nquote the commas" in feedback
    inputs = [p.data for e in history.events
              if e.activity_task_scheduled_event_attributes.activity_type.name == "run_agent"
              for p in e.activity_task_scheduled_event_attributes.input.payloads]
    assert sum(b"name the columns" in data for data in inputs) == 1  # sent once


async def test_breaker_workflow_continues_as_new_with_its_board(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    policy = BreakerPolicy(failure_threshold=5, cool_down_seconds=60)
    async with Run(ts_env, tmp_path, task_queue):
        handle = await ts_env.client.start_workflow(
            "BreakerWorkflow", BreakerBoard(max_updates=3), id=f"breakers-{uuid.uuid4()}",
            task_queue=task_queue)
        for _ in range(3):
            await handle.execute_update("report", BreakerReport(
                tool="t", success=False, holder="test", policy=policy))
        for _ in range(100):
            if (await handle.describe()).run_id != handle.first_execution_run_id:
                break
            await asyncio.sleep(0.05)
        assert (await handle.describe()).run_id != handle.first_execution_run_id
        outcome = await handle.execute_update("report", BreakerReport(
            tool="t", success=False, holder="test", policy=policy), result_type=BreakerOutcome)
        assert outcome.breaker.consecutive_failures == 4  # carried over
        board = await handle.query("breakers", result_type=BreakerBoard)
        assert board.max_updates == 3 and board.tools["t"].phase == BreakerPhase.CLOSED
        await handle.terminate()


async def test_routing_waits_while_every_tool_is_open(ts_env: WorkflowEnvironment,
                                                      tmp_path: Path, task_queue: str):
    tools = {"only": {"adapter": "shell", "breaker": {"failure_threshold": 1,
                                                      "cool_down_seconds": 120}}}
    inp = make_input(tmp_path, [shell("breaks", "exit 1"), shell("waits", "true")],
                     tools=tools, routes={"shell": {"tools": ["only"]}}, max_parallel=1)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        report = await handle.query("report", result_type=WorkstreamReport)
    routed = [e for e in report.events if e.kind == "routed" and e.step == "waits"]
    assert routed[0].detail.startswith("waiting ")
    assert "only skipped: open until" in routed[0].detail
    assert routed[-1].detail.startswith("only (half-open trial)")
    assert (routed[-1].at - routed[0].at).total_seconds() >= 119  # a durable timer
    assert report.steps == {"breaks": StepState.FAILED, "waits": StepState.SUCCEEDED}


async def test_missing_base_branch_fails_the_run_with_the_reason(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str, git_repo: Path):
    inp = make_input(tmp_path, [shell("a", "true")], repo=git_repo, base_branch="nope")
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        state = await handle.query("state")
    assert "base branch 'nope' does not exist" in str(failed.value.cause)
    assert state["state"] == "failed" and "prepare_branch failed" in state["reason"]


async def test_failed_and_canceled_runs_remove_their_worktree(private_ts_env: WorkflowEnvironment,
                                                             tmp_path: Path, task_queue: str,
                                                             git_repo: Path):
    pid_file = tmp_path / "pid"
    failing = make_input(tmp_path, [shell("broken", "exit 3")], repo=git_repo)
    long = make_input(tmp_path, [shell("long", f"sleep 300 & echo $! > {pid_file}; wait")],
                      repo=git_repo)
    async with Run(private_ts_env, tmp_path, task_queue) as run:
        handle = await run.start(failing)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        failed = await handle.query("state")
        handle = await run.start(long)
        for _ in range(400):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        canceled = await handle.query("state")
        events = [e.detail for e in await handle.query("run_events", result_type=list[RunEvent])]
    assert failed["state"] == "failed" and canceled["state"] == "canceled"
    assert not alive(int(pid_file.read_text()))
    for st in (failed, canceled):
        assert not Path(st["workspace"]).exists()
        assert subprocess.run(["git", "rev-parse", "--verify", st["branch"]],
                              cwd=git_repo).returncode == 0  # the branch stays
    assert any("removed (canceled)" in e for e in events)
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=git_repo, capture_output=True,
                               text=True).stdout.strip().splitlines()
    assert len(worktrees) == 1


async def test_python_step_runs_in_a_subprocess_in_the_workspace_and_failures_show_their_tail(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str, git_repo: Path):
    """A python step's module may live in the run's workspace (cwd and first on
    sys.path, WORKSTREAM_WORKSPACE set), in its own process; a failing pytest run is
    reported with its summary line, its last lines and its log's path."""
    import os
    import sys

    from cli.workstream import render_markdown
    (git_repo / "wsmod.py").write_text(
        "import os\nimport sys\n\n\ndef where(tag):\n"
        "    return {'cwd': os.getcwd(), 'ws': os.environ['WORKSTREAM_WORKSPACE'],\n"
        "            'pid': os.getpid(), 'first': sys.path[0], 'tag': tag}\n")
    (git_repo / "test_calc.py").write_text(
        "def test_one():\n    assert 1 == 1\n\n\ndef test_two():\n    assert 2 == 2\n\n\n"
        "def test_wrong():\n    assert 1 + 1 == 3, 'arithmetic is broken'\n")
    subprocess.run(["git", "add", "."], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "module and tests"], cwd=git_repo, check=True)
    inp = make_input(tmp_path, [
        {"id": "where", "kind": "python",
         "inputs": {"callable": "wsmod:where", "kwargs": {"tag": "x"}}},
        shell("tests", f"{sys.executable} -m pytest -q -p no:cacheprovider test_calc.py"),
    ], tools={"sh": SH, "py": {"adapter": "python", "breaker": None}},
        routes={"shell": {"tools": ["sh"]}, "python": {"tools": ["py"]}}, repo=git_repo)
    async with Run(ts_env, tmp_path, task_queue, python_modules=["wsmod"]) as run:
        handle = await run.start(inp)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        report = await handle.query("report", result_type=WorkstreamReport)
    att = {a.step: a for a in report.attempts}
    assert att["where"].outcome == "succeeded", att["where"].error
    result = json.loads(Path(att["where"].outputs[0].path).read_text())
    workspace = os.path.realpath(report.workspace)
    assert os.path.realpath(result["cwd"]) == workspace == os.path.realpath(result["ws"])
    assert os.path.realpath(result["first"]) == workspace and result["tag"] == "x"
    assert result["pid"] != os.getpid()
    failed = att["tests"]
    assert failed.outcome == "failed" and failed.exit_code == 1
    assert re.fullmatch(r"1 failed, 2 passed in [\d.]+s", failed.summary), failed.summary
    assert failed.summary in failed.error and "exited with code 1" in failed.error
    assert "AssertionError: arithmetic is broken" in failed.tail
    text = render_markdown(report)
    assert f"summary: **{failed.summary}**" in text
    stdout = next(o.path for o in failed.outputs if o.path.endswith("stdout.txt"))
    assert f"`{stdout}`" in text and "FAILED test_calc.py::test_wrong" in text


async def test_a_step_that_times_out_reports_the_scrubbed_summary_and_tail_of_its_output(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str,
        monkeypatch: pytest.MonkeyPatch):
    """A timed-out step's failure carries what a non-zero exit's does: the test
    runner's summary line, the output's last lines and its logs, secrets scrubbed."""
    from cli.workstream import render_markdown
    secret = "timeout-secret-0123456789"
    monkeypatch.setenv("WS_TIMEOUT_TEST_SECRET", secret)
    inp = make_input(tmp_path, [shell(
        "slow", f"echo 'collected 3 items'; echo 'token {secret}'; "
        "echo '1 failed, 2 passed in 0.12s'; echo 'still cleaning up' >&2; exec sleep 60",
        timeout=1)])
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        workstream_trust_spec_tools=True,
                        secret_env=["WS_TIMEOUT_TEST_SECRET"])
    async with make_worker(ts_env.client, settings):
        handle = await ts_env.client.start_workflow(
            "WorkstreamWorkflow", inp, id=f"workstream-{inp.spec.work_item}",
            task_queue=task_queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        report = await handle.query("report", result_type=WorkstreamReport)
    att = report.attempts[0]
    assert att.outcome == "failed" and att.exit_code is None
    assert "ran longer than 1 s and was killed" in att.error
    assert att.summary == "1 failed, 2 passed in 0.12s" and att.summary in att.error
    assert "token ***" in att.tail and "still cleaning up" in att.tail
    stdout = next(o.path for o in att.outputs if o.path.endswith("stdout.txt"))
    assert "collected 3 items" in Path(stdout).read_text()
    assert secret not in Path(stdout).read_text() + att.tail + att.error
    assert f"summary: **{att.summary}**" in render_markdown(report)


async def test_agent_step_follows_its_own_instructions_into_its_own_output(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str, git_repo: Path):
    from activities.agents import render_prompt
    from models.sdlc import AgentTask

    inp = make_input(tmp_path, [
        {"id": "notes", "kind": "agent",
         "inputs": {"title": "Release notes", "output": "docs/release-notes.md",
                    "instructions": "Summarise the changes since v1.2 for users."}},
        shell("check", "grep -q 'Summarise the changes since v1.2' docs/release-notes.md && "
              "test ! -e specs", depends_on=["notes"]),
    ], tools={"offline-agent": {"adapter": "agent", "runner": "offline", "breaker": None},
              "sh": SH},
        routes={"agent": {"tools": ["offline-agent"]}, "shell": {"tools": ["sh"]}},
        repo=git_repo)
    async with Run(ts_env, tmp_path, task_queue) as run:
        handle = await run.start(inp)
        result = await handle.result()
        att = await attempts(handle)
        report = await handle.query("report", result_type=WorkstreamReport)
    assert result["steps"] == {"notes": "succeeded", "check": "succeeded"}
    out = att["notes"].outputs[0]
    assert out.path == str(Path(report.workspace) / "docs" / "release-notes.md") and out.commit
    subject = subprocess.run(["git", "log", "-1", "--format=%s", out.commit],
                             cwd=report.workspace, capture_output=True, text=True,
                             check=True).stdout.strip()
    assert subject == "agent: Release notes (round 1)"
    prompt = render_prompt(AgentTask(
        workflow_id="w", round=1, worktree=str(git_repo), branch="b", title="Release notes",
        description="", instructions="Summarise the changes.", output_path="docs/n.md"))
    assert "Summarise the changes." in prompt and "`docs/n.md`" in prompt
    assert "feature specification" not in prompt


@pytest.mark.parametrize("output", ["/etc/passwd", "../outside.md", ".git/config", "docs/"])
def test_agent_output_outside_the_workspace_is_refused(tmp_path: Path, output: str):
    with pytest.raises(ValueError, match="output"):
        make_input(tmp_path, [{"id": "a", "kind": "agent",
                               "inputs": {"instructions": "x", "output": output}}],
                   tools={"ag": {"adapter": "agent"}}, routes={"agent": {"tools": ["ag"]}})
