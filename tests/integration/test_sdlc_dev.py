"""SdlcWorkflow on the dev server with the real activities on temporary git repositories."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from cli.gates import query
from cli.sdlc import feature_request, start_sdlc
from models.common import GateDecision, Verdict
from models.sdlc import GATE_1, SdlcPhase, SdlcResult
from settings import Settings
from tests.conftest import git
from worker import make_worker
from workflows.sdlc import SdlcWorkflow
from workflows.search_attributes import SDLC_PHASE

ROOT = Path(__file__).resolve().parents[2]


async def wait_gate(handle: WorkflowHandle, round_: int, timeout: float = 60) -> None:
    """Wait until GATE_1 is open for spec round ``round_``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            state = await query(handle, SdlcWorkflow.state)
            gates = await query(handle, SdlcWorkflow.pending_gates)
            if state.round == round_ and any(g.gate == GATE_1 for g in gates):
                return
        except Exception:  # noqa: BLE001 - no worker polling for a moment
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"GATE_1 of round {round_} never opened")


async def decide(handle: WorkflowHandle, verdict: Verdict, comment: str = "") -> None:
    await handle.execute_update(SdlcWorkflow.decide_gate, GateDecision(
        gate=GATE_1, verdict=verdict, actor="reviewer", comment=comment))


async def wait_visible(client: Client, query_text: str, workflow_id: str) -> None:
    for _ in range(100):
        ids = [wf.id async for wf in client.list_workflows(query_text)]
        if workflow_id in ids:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} not found by {query_text!r}")


async def test_full_run_to_done_on_a_real_repository(dev_env, task_queue, git_repo, tmp_path):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    client = dev_env.client
    req = feature_request(settings, title="Add CSV export", description="Export as CSV.",
                          repo_path=str(git_repo))
    async with make_worker(client, settings):
        handle = await start_sdlc(client, settings, req)
        assert handle.id == f"sdlc-{git_repo.name}-add-csv-export"
        await wait_gate(handle, 1)
        await wait_visible(client, "SdlcPhase = 'GATE_1'", handle.id)
        await decide(handle, Verdict.REVISE, "list the columns")
        await wait_gate(handle, 2)
        await decide(handle, Verdict.APPROVE)
        result = SdlcResult.model_validate(await handle.result())
        await wait_visible(client, "SdlcPhase = 'DONE'", handle.id)
    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    branch = result.branch.name
    assert branch == "001-add-csv-export"
    assert git(git_repo, "rev-parse", branch) == result.spec.commit
    spec_text = git(git_repo, "show", f"{branch}:specs/{branch}/spec.md")
    assert "list the columns" in spec_text
    log = git(git_repo, "log", "--format=%s", f"main..{branch}").splitlines()
    assert log == ["spec: Add CSV export (round 2)", "spec: Add CSV export (round 1)"]
    issue = (tmp_path / "home" / "issues" / git_repo.name / "1.json").read_text()
    assert '"sdlc:done"' in issue


def start_worker(address: str, task_queue: str, home: Path, command: str) -> subprocess.Popen:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": task_queue,
           "ORCHESTRATOR_HOME": str(home), "AGENT_RUNNER": "command", "AGENT_COMMAND": command}
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


async def test_worker_killed_in_phase_2_is_replaced_and_the_run_ends_done(
        dev_env, task_queue, git_repo, tmp_path):
    """kill -9 of the worker while the agent runs: a new worker finishes the run with
    exactly one spec commit per round and one worktree."""
    started = tmp_path / "agent-starts"
    command = (f'echo "$SDLC_ROUND" >> {started}; sleep 2; '
               'mkdir -p "$(dirname "$SDLC_SPEC_PATH")"; '
               'echo "# $SDLC_TITLE, round $SDLC_ROUND" > "$SDLC_SPEC_PATH"')
    address = dev_env.client.service_client.config.target_host
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        agent_runner="command", agent_command=command)
    req = feature_request(settings, title="Add CSV export", repo_path=str(git_repo))
    first = start_worker(address, task_queue, tmp_path / "home", command)
    second = None
    try:
        handle = await start_sdlc(dev_env.client, settings, req)
        while not started.exists():
            await asyncio.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # in PHASE_2, the agent mid-run
        first.wait()
        phase = (await handle.describe()).typed_search_attributes.get(SDLC_PHASE)
        assert phase == SdlcPhase.PHASE_2.value  # read from visibility: no worker is running
        second = start_worker(address, task_queue, tmp_path / "home", command)
        await wait_gate(handle, 1, timeout=90)
        await decide(handle, Verdict.REJECT, "more detail")
        await wait_gate(handle, 2)
        await decide(handle, Verdict.APPROVE)
        result = SdlcResult.model_validate(await handle.result())
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
    assert result.phase == SdlcPhase.DONE
    assert started.read_text().split() == ["1", "1", "2"]  # round 1 re-ran once, after the kill
    branch = result.branch.name
    log = git(git_repo, "log", "--format=%s", f"main..{branch}").splitlines()
    assert log == ["spec: Add CSV export (round 2)", "spec: Add CSV export (round 1)"]
    worktrees = git(git_repo, "worktree", "list", "--porcelain").count("worktree ")
    assert worktrees == 2  # the main one and the feature's

