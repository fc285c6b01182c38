"""Fault injection on a real dev server: ``kill -9`` of the worker at a named point
(a new worker takes over) and restarts of the server on the same database file,
mid-activity and mid-gate. Each test asserts the final state and that every side
effect happened exactly once, and that no process of a dead attempt survives."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from cli.sdlc import feature_request, start_sdlc
from models.analysis import AnalysisPhase, AnalysisResult
from models.common import GateDecision, Verdict
from models.learning import LearningProgress, OpenTest
from models.sdlc import SdlcPhase, SdlcResult, SdlcState
from models.workstream import Progress, RunEvent
from settings import Settings
from simulation.student import POLL_QUERY_TIMEOUT
from tests.fault_harness import (
    RestartableServer,
    WorkerProcess,
    commits_with,
    eventually,
    is_clean,
    numbered_branches,
    orphans,
    sdlc_fault_agent,
    start_workstream,
    step_attempts,
    wait_file,
    workstream_input,
)
from tests.integration.test_cli import acli
from tests.integration.test_sdlc_dev import decide, wait_gate
from tests.learning_support import imported_database
from tests.workflows.analysis_harness import analysis_request, drive
from tests.workflows.analysis_harness import workflow_id as analysis_workflow_id
from workflows.analysis import AnalysisWorkflow
from workflows.gates import GATE_UPDATE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    """One restartable dev server for this module's tests."""
    srv = RestartableServer(tmp_path_factory.mktemp("faults-server"))
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest_asyncio.fixture
async def client(server: RestartableServer) -> AsyncIterator[Client]:
    yield await server.client()


async def test_sdlc_survives_a_killed_worker_and_two_server_restarts(
        server, client, task_queue, git_repo, tmp_path):
    home = tmp_path / "home"
    command = sdlc_fault_agent(tmp_path)
    settings = Settings(orchestrator_home=home, temporal_task_queue=task_queue,
                        agent_runner="command", agent_command=command)
    env = {"AGENT_RUNNER": "command", "AGENT_COMMAND": command}
    first = WorkerProcess(server.address, task_queue, home, **env)
    second = None
    try:
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Add CSV export", repo_path=str(git_repo)))
        late = int(await asyncio.to_thread(wait_file, tmp_path / "late.pid"))
        agent = int((tmp_path / "starts").read_text().split()[1])
        first.kill9()  # PHASE_2, round 1: the agent mid-run
        # the agent and its grandchild (the late writer) die with the worker
        await eventually(lambda: asyncio.sleep(0, orphans([agent, late]) == []),
                         "the agent's process tree's death", 10)
        second = WorkerProcess(server.address, task_queue, home, **env)
        await wait_gate(handle, 1, timeout=90)

        await asyncio.to_thread(server.restart, 1.0)  # mid-gate
        await wait_gate(handle, 1, timeout=60)
        await decide(handle, Verdict.REJECT, "more detail")
        await eventually(lambda: asyncio.sleep(0, "2 " in (tmp_path / "starts").read_text()),
                         "round 2's agent", 60)
        await asyncio.to_thread(server.restart, 1.0)  # mid-activity: round 2's agent runs
        await wait_gate(handle, 2, timeout=90)
        await decide(handle, Verdict.APPROVE)
        result = SdlcResult.model_validate(await handle.result())
        state = await handle.query("state", result_type=SdlcState)
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    branch = result.branch.name
    assert numbered_branches(git_repo) == [branch]
    assert commits_with(git_repo, branch, "Spec-Round: 1") == 1
    assert commits_with(git_repo, branch, "Spec-Round: 2") == 1
    issues = list((home / "issues").rglob("*.json"))
    assert len(issues) == 1, issues
    worktree = Path(state.worktree)
    assert is_clean(worktree)
    assert "late" not in (worktree / f"specs/{branch}/spec.md").read_text()


async def test_workstream_step_survives_a_killed_worker_without_using_its_retries(
        server, client, task_queue, git_repo, tmp_path):
    home = tmp_path / "home"
    log, gc = tmp_path / "attempts", tmp_path / "gc.pid"
    script = (f'echo "$WORKSTREAM_ATTEMPT $$" >> {log}; '
              f'if [ "$WORKSTREAM_ATTEMPT" = 1 ]; then sleep 60 & echo $! > {gc}; sleep 60; fi')
    inp = workstream_input([
        {"id": "build", "kind": "shell", "inputs": {"script": script}},
        {"id": "check", "kind": "shell", "depends_on": ["build"], "inputs": {"script": "true"}},
    ], git_repo, tmp_path)
    first = WorkerProcess(server.address, task_queue, home)
    second = None
    try:
        handle = await start_workstream(client, task_queue, inp)
        sleeper = int(await asyncio.to_thread(wait_file, gc))
        shell = int(log.read_text().split()[1])
        first.kill9()  # mid-step
        # the shell and its background sleep die with the worker, before any retry
        await eventually(lambda: asyncio.sleep(0, orphans([shell, sleeper]) == []),
                         "the step's process tree's death", 10)
        second = WorkerProcess(server.address, task_queue, home)
        try:
            await handle.result()
        finally:
            att = await step_attempts(handle)
            events = await handle.query("run_events", result_type=list[RunEvent])
            print("\n".join(f"{e.kind} {e.step}: {e.detail}" for e in events))
        state = await handle.query("state")
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
    assert state["state"] == "succeeded"
    build = att["build"]
    assert (build.attempts, build.infra_retries, build.failed_attempts) == (2, 1, 0), (
        build, [e.detail for e in events])
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["1", "2"]
    assert any(e.kind == "infra_retry" and e.step == "build" for e in events)
    assert not any(e.kind == "attempt_failed" for e in events)
    assert orphans([shell, sleeper]) == []
    workspace = Path(state["workspace"])
    assert commits_with(workspace, "HEAD", f"Workstream-Workflow-Id: {handle.id}") == 2
    assert is_clean(workspace)


async def test_workstream_survives_server_restarts_mid_activity_and_mid_gate(
        server, client, task_queue, git_repo, tmp_path):
    home = tmp_path / "home"
    log = tmp_path / "attempts"
    inp = workstream_input([
        {"id": "slow", "kind": "shell",
         "inputs": {"script": f'echo "$WORKSTREAM_ATTEMPT" >> {log}; sleep 3'}},
        {"id": "review", "kind": "shell", "gate": True, "depends_on": ["slow"],
         "inputs": {"script": "echo draft"}},
    ], git_repo, tmp_path)
    worker = WorkerProcess(server.address, task_queue, home)
    try:
        handle = await start_workstream(client, task_queue, inp)
        await asyncio.to_thread(wait_file, log)
        # down for 4 s: the step ends during the outage and its completion is lost
        await asyncio.to_thread(server.restart, 4.0)

        async def in_review() -> bool:
            progress = await handle.query("progress", result_type=Progress)
            return progress.review == ["review"]

        await eventually(in_review, "the review gate", 90)
        await asyncio.to_thread(server.restart, 1.0)  # mid-gate
        await eventually(in_review, "the review gate after the restart", 60)
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate="review-review", verdict=Verdict.APPROVE, actor="rita"))
        await handle.result()
        att = await step_attempts(handle)
        state = await handle.query("state")
    finally:
        worker.stop()
    assert state["state"] == "succeeded"
    assert att["slow"].failed_attempts == 0  # max_attempts 1, and not failed
    workspace = Path(state["workspace"])
    assert commits_with(workspace, "HEAD", f"Workstream-Workflow-Id: {handle.id}") == 2
    assert is_clean(workspace)


async def test_learning_loop_answers_are_stored_once_across_a_killed_worker(
        server, task_queue, tmp_path):
    """kill -9 of the worker right after the student's last answer closes the test
    (while the round grades and stores it); a new worker finishes the round."""
    db = tmp_path / "learning.db"
    environ = {**os.environ, "TEMPORAL_ADDRESS": server.address,
               "TEMPORAL_TASK_QUEUE": task_queue, "ORCHESTRATOR_HOME": str(tmp_path / "home"),
               "DATABASE_URL": f"sqlite:///{db}"}
    await asyncio.to_thread(imported_database, environ["DATABASE_URL"])
    worker_env = {"DATABASE_URL": environ["DATABASE_URL"]}
    first = WorkerProcess(server.address, task_queue, tmp_path / "home", **worker_env)
    second = None
    try:
        started = await acli("learn", "start", "--student", "kim", "--curriculum", "fractions",
                             "--max-rounds", "3", "--json", env=environ)
        assert started.returncode == 0, started.stderr
        wf = json.loads(started.stdout)["workflow_id"]

        handle = (await server.client()).get_workflow_handle(wf)

        async def open_test() -> list[str]:
            test = await handle.query("open_test", result_type=OpenTest | None,
                                      rpc_timeout=POLL_QUERY_TIMEOUT)
            return [i.id for i in test.items] if test else []

        items = await eventually(open_test, "the first test", 60)
        answers = tmp_path / "answers.yaml"
        answers.write_text("".join(f"{item}: 1/4\n" for item in items))
        done = await acli("learn", "answer", wf, "--file", str(answers), env=environ)
        assert done.returncode == 0 and "test closed" in done.stdout, done.stderr
        first.kill9()  # the round now grades and stores the answers
        second = WorkerProcess(server.address, task_queue, tmp_path / "home", **worker_env)

        async def round_one() -> bool:
            return (await handle.query("state", result_type=LearningProgress,
                                       rpc_timeout=POLL_QUERY_TIMEOUT)).round >= 1

        await eventually(round_one, "round 1's model update", 60)
        await handle.terminate()
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
    with sqlite3.connect(db) as conn:
        responses = conn.execute(
            "SELECT item_id, count(*) FROM responses r JOIN tests t ON r.test_id = t.id "
            "WHERE t.workflow_id = ? GROUP BY item_id", (wf,)).fetchall()
        bkt = conn.execute("SELECT count(*) FROM mastery_history WHERE student_id = 'kim' "
                           "AND source = 'bkt'").fetchone()[0]
        tests = conn.execute("SELECT count(*) FROM tests WHERE workflow_id = ? AND round = 1",
                             (wf,)).fetchone()[0]
    assert sorted(responses) == sorted((item, 1) for item in items)  # one row per answer
    assert bkt == len(items) and tests == 1


async def test_analysis_finishes_after_its_worker_is_killed_at_a_gate(
        server, client, task_queue, tmp_path):
    """kill -9 of the worker while the sources gate is open; a new worker replays the
    run and the remaining gates lead to one report."""
    home = tmp_path / "home"
    env = {"LLM_PROVIDER": "offline", "ANTHROPIC_API_KEY": "", "EXA_API_KEY": ""}
    workers = [WorkerProcess(server.address, task_queue, home, **env)]

    async def kill_at_first_gate(handle: WorkflowHandle, gate: str) -> bool:
        if len(workers) == 1:
            workers[0].kill9()
            workers.append(WorkerProcess(server.address, task_queue, home, **env))
        return True

    try:
        handle = await client.start_workflow(AnalysisWorkflow.run, analysis_request(),
                                             id=analysis_workflow_id(), task_queue=task_queue)
        opened = await drive(handle, on_gate=kill_at_first_gate, timeout=90)
        result = AnalysisResult.model_validate(await handle.result())
    finally:
        for worker in workers:
            worker.stop()
    assert len(workers) == 2 and opened[0] == "sources"
    assert result.phase == AnalysisPhase.DONE
    reports = list((home / "artifacts").rglob("report.md"))
    assert reports == [Path(result.report.path)]


async def test_cancel_after_a_killed_worker_kills_what_its_step_left(
        server, client, task_queue, tmp_path):
    """kill -9 of the worker mid-step in a fresh workspace, then cancel: the run ends
    canceled and nothing of the step runs (its grandchild died with the worker)."""
    home, gc = tmp_path / "home", tmp_path / "gc.pid"
    inp = workstream_input([{"id": "long", "kind": "shell",
                             "inputs": {"script": f"sleep 60 & echo $! > {gc}; wait"}}],
                           spec_dir=tmp_path)
    first = WorkerProcess(server.address, task_queue, home)
    second = None
    try:
        handle = await start_workstream(client, task_queue, inp)
        sleeper = int(await asyncio.to_thread(wait_file, gc))
        first.kill9()
        await handle.cancel()
        second = WorkerProcess(server.address, task_queue, home)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state = await handle.query("state")
        events = await handle.query("run_events", result_type=list[RunEvent])
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
    assert state["state"] == "canceled" and state["steps"] == {"long": "canceled"}
    assert orphans([sleeper]) == [], [e.detail for e in events]
    assert Path(state["workspace"]).is_dir()  # a fresh workspace is the run's only copy
