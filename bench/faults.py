"""Benchmark: faults injected into real runs on a dev server of its own.

``python -m bench.faults`` (or ``python bench/faults.py``) prints one JSON document.
Each scenario runs a real orchestration with ``python worker.py`` workers on a dev
server whose database file survives restarts (``tests/fault_harness.py``):

* ``sdlc_worker_killed_mid_agent``: ``kill -9`` of the worker while the SDLC
  agent (``command`` runner) runs round 1, leaving a grandchild that would write
  into the spec later; a new worker starts at once.
* ``sdlc_server_restart_mid_gate``: the dev server is killed and restarted on
  the same database while GATE_1 is open; then the reviewer approves.
* ``sdlc_server_restart_mid_agent``: the same while round 2's agent runs.
* ``workstream_worker_killed_mid_step``: ``kill -9`` of the worker while a shell
  step runs (default retry: ``max_attempts: 1``); a new worker starts at once.
* ``workstream_server_restart_mid_step``: the server is down 4 s while a shell
  step runs (the step ends during the outage; its completion is lost).

Figures per scenario:

* ``restart_to_progress_s``: seconds from the restart (the new worker started,
  or the server answering again) to the next progress (a process of the step or
  round starting again, or the gate deciding);
* ``recovery_s``: the same, counted from when the platform can notice the loss
  at the earliest (the restart, or the fault plus the step's heartbeat timeout
  when that is later): the target is at most 2 s for heartbeating steps; None
  when nothing was lost (e.g. the agent's completion got through after a
  restart, so the next progress waits only on the agent's own run time);
* ``finished_steps_rerun``: steps (rounds) that had finished before the fault
  and ran again after it;
* ``orphans``: processes of a dead attempt still alive at the end;
* ``duplicates``: side effects beyond one: issues, ``NNN-`` branches, spec
  commits per round, handoff commits per step execution;
* ``final_status``: the run's end state.

Targets: every scenario ends in its success state with 0 orphans and 0
duplicates; ``recovery_s`` at most 2 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from cli.sdlc import feature_request, start_sdlc
from models.common import GateDecision, Verdict
from models.sdlc import GATE_1, SdlcResult, SdlcState
from models.workstream import StepAttempt
from settings import Settings
from temporal_plumbing.runtime import exit_process
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
from workflows import policies
from workflows.sdlc import SdlcWorkflow
from workflows.workstream import SHELL_HEARTBEAT_TIMEOUT, WorkstreamWorkflow

RECOVERY_TARGET_S = 2.0


def git_repo(root: Path) -> Path:
    """A fresh repository on ``main`` with one commit."""
    repo = root / f"repo-{uuid.uuid4().hex[:6]}"
    repo.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "Bench"],
                 ["config", "user.email", "bench@example.invalid"],
                 ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def lines(path: Path) -> list[str]:
    """The lines of ``path`` ([] while it does not exist)."""
    return path.read_text().splitlines() if path.exists() else []


async def wait_new_line(path: Path, after: int, timeout: float = 90) -> float:
    """Wait until ``path`` has more than ``after`` lines; return that monotonic time."""
    await eventually(lambda: asyncio.sleep(0, len(lines(path)) > after),
                     f"a new line in {path.name}", timeout, every=0.02)
    return time.monotonic()


async def sdlc_state(handle: WorkflowHandle) -> SdlcState:
    return await handle.query(SdlcWorkflow.state)


async def gate_open(handle: WorkflowHandle, round_: int, timeout: float = 90) -> None:
    async def probe() -> bool:
        state = await sdlc_state(handle)
        return state.round == round_ and any(g.gate == GATE_1 for g in state.pending_gates)

    await eventually(probe, f"GATE_1 of round {round_}", timeout, every=0.05)


async def decide(handle: WorkflowHandle, verdict: Verdict, comment: str = "") -> None:
    await handle.execute_update(SdlcWorkflow.decide_gate, GateDecision(
        gate=GATE_1, verdict=verdict, actor="bench", comment=comment))


def figures(restart: float, progress: float, noticeable: float, rerun: int,
            dead: list[int], duplicates: int, status: str, success: str,
            lost: bool = True, **extra: Any) -> dict[str, Any]:
    """One scenario's figures (see the module docstring); ``lost`` False (nothing
    had to be redone, e.g. a completion delivered after the restart) gives no
    ``recovery_s``: the next progress then waits on the step's own run time."""
    return {"restart_to_progress_s": round(progress - restart, 2),
            "recovery_s": round(progress - max(restart, noticeable), 2) if lost else None,
            "finished_steps_rerun": rerun, "orphans": len(orphans(dead)),
            "duplicates": duplicates, "final_status": status,
            "succeeded": status == success, **extra}


async def sdlc_scenarios(server: RestartableServer, client: Client, root: Path
                         ) -> dict[str, dict[str, Any]]:
    """The three SDLC scenarios, in one run (kill mid-agent, restart mid-gate,
    restart mid-agent)."""
    tq, home, repo = f"bench-faults-{uuid.uuid4().hex[:6]}", root / "sdlc", git_repo(root)
    starts, command = root / "starts", sdlc_fault_agent(root)
    settings = Settings(orchestrator_home=home, temporal_task_queue=tq,
                        agent_runner="command", agent_command=command)
    env = {"AGENT_RUNNER": "command", "AGENT_COMMAND": command}
    workers = [WorkerProcess(server.address, tq, home, **env)]
    out: dict[str, dict[str, Any]] = {}
    heartbeat = policies.AGENT_HEARTBEAT_TIMEOUT.total_seconds()
    try:
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Export CSV", repo_path=str(repo)))
        late = int(await asyncio.to_thread(wait_file, root / "late.pid"))
        agent = int(lines(starts)[0].split()[1])
        killed = time.monotonic()
        workers[0].kill9()
        workers.append(WorkerProcess(server.address, tq, home, **env))
        restart = time.monotonic()
        progress = await wait_new_line(starts, 1)
        await gate_open(handle, 1)
        out["sdlc_worker_killed_mid_agent"] = {
            "restart": restart, "progress": progress, "noticeable": killed + heartbeat,
            "dead": [agent, late], "finished": [], "fault_line": 1}

        fault_line = len(lines(starts))
        restart = await asyncio.to_thread(server.restart, 1.0)  # mid-gate
        await gate_open(handle, 1, 60)
        await decide(handle, Verdict.REJECT, "more detail")
        progress = time.monotonic()
        out["sdlc_server_restart_mid_gate"] = {
            "restart": restart, "progress": progress, "noticeable": restart, "dead": [],
            "finished": ["1"], "fault_line": fault_line}

        before = len(lines(starts))
        await eventually(lambda: asyncio.sleep(0, any(
            line.startswith("2 ") for line in lines(starts))), "round 2's agent", 60)
        round2 = int(next(li for li in lines(starts) if li.startswith("2 ")).split()[1])
        fault_line = len(lines(starts))
        fault = time.monotonic()
        restart = await asyncio.to_thread(server.restart, 1.0)  # mid-agent
        await gate_open(handle, 2)
        progress = time.monotonic()
        reran = len(lines(starts)) > before + 1  # round 2's agent started again
        out["sdlc_server_restart_mid_agent"] = {
            "restart": restart, "progress": progress, "noticeable": fault + heartbeat,
            "dead": [round2] if reran else [], "agent_reran": reran, "finished": ["1"],
            "fault_line": fault_line, "lost": reran}
        await decide(handle, Verdict.APPROVE)
        result = SdlcResult.model_validate(await handle.result())
        state = await sdlc_state(handle)
    finally:
        for worker in workers:
            worker.stop()
    branch = result.branch.name
    duplicates = (len(list((home / "issues").rglob("*.json"))) - 1
                  + len(numbered_branches(repo)) - 1
                  + sum(commits_with(repo, branch, f"Spec-Round: {r}") - 1 for r in (1, 2)))
    clean = is_clean(Path(state.worktree)) if state.worktree else True
    rounds_started = [li.split()[0] for li in lines(starts)]
    docs = {}
    for name, f in out.items():
        # rounds committed before the fault whose agent started again after it
        after = {li.split()[0] for li in lines(starts)[f.pop("fault_line"):]}
        rerun = len(after & set(f.pop("finished")))
        docs[name] = figures(f.pop("restart"), f.pop("progress"), f.pop("noticeable"), rerun,
                             f.pop("dead"), duplicates, result.phase.value, "DONE",
                             git_status_clean=clean, **f)
    docs["sdlc_worker_killed_mid_agent"]["agent_starts_per_round"] = {
        r: rounds_started.count(r) for r in ("1", "2")}
    return docs


def logged(step: str, log: Path, body: str) -> dict[str, Any]:
    """A shell step that logs ``start <step> <attempt> <pid>`` and ``end <step>``."""
    return {"id": step, "kind": "shell", "inputs": {"script": (
        f'echo "start {step} $WORKSTREAM_ATTEMPT $$" >> {log}; {body}; '
        f'echo "end {step}" >> {log}')}}


def reruns(log: Path, fault_line: int) -> int:
    """Steps that ended before line ``fault_line`` of the log and started after it."""
    before, after = lines(log)[:fault_line], lines(log)[fault_line:]
    ended = {li.split()[1] for li in before if li.startswith("end ")}
    return len({li.split()[1] for li in after if li.startswith("start ")} & ended)


async def finish_workstream(handle: WorkflowHandle) -> tuple[str, dict[str, StepAttempt],
                                                              dict[str, Any]]:
    try:
        await handle.result()
    except Exception:  # noqa: BLE001 - a failed run is a figure here
        pass
    state = (await handle.query(WorkstreamWorkflow.state)).model_dump(mode="json")
    return state["state"], await step_attempts(handle), state


def handoff_duplicates(state: dict[str, Any], wf_id: str, executions: int) -> int:
    return commits_with(Path(state["workspace"]), "HEAD",
                        f"Workstream-Workflow-Id: {wf_id}") - executions


async def workstream_killed(server: RestartableServer, client: Client, root: Path
                            ) -> dict[str, Any]:
    tq, home, repo = f"bench-faults-{uuid.uuid4().hex[:6]}", root / "ws-kill", git_repo(root)
    log, gc = root / "ws-kill.log", root / "ws-kill-gc.pid"
    inp = workstream_input([
        logged("prepare", log, "true"),
        {**logged("build", log, f'if [ "$WORKSTREAM_ATTEMPT" = 1 ]; then sleep 60 & '
                                f'echo $! > {gc}; sleep 60; fi'), "depends_on": ["prepare"]},
        {**logged("check", log, "true"), "depends_on": ["build"]},
    ], repo)
    workers = [WorkerProcess(server.address, tq, home)]
    try:
        handle = await start_workstream(client, tq, inp)
        sleeper = int(await asyncio.to_thread(wait_file, gc))
        shell = int(next(li for li in lines(log) if li.startswith("start build")).split()[3])
        fault_line = len(lines(log))
        killed = time.monotonic()
        workers[0].kill9()
        workers.append(WorkerProcess(server.address, tq, home))
        restart = time.monotonic()
        progress = await wait_new_line(log, fault_line)
        status, att, state = await finish_workstream(handle)
    finally:
        for worker in workers:
            worker.stop()
    return figures(restart, progress, killed + SHELL_HEARTBEAT_TIMEOUT.total_seconds(),
                   reruns(log, fault_line), [shell, sleeper],
                   handoff_duplicates(state, handle.id, len(att)), status, "succeeded",
                   git_status_clean=is_clean(Path(state["workspace"])),
                   infra_retries=att["build"].infra_retries,
                   failed_attempts=att["build"].failed_attempts,
                   max_attempts=1)


async def workstream_outage(server: RestartableServer, client: Client, root: Path
                            ) -> dict[str, Any]:
    tq, home, repo = f"bench-faults-{uuid.uuid4().hex[:6]}", root / "ws-out", git_repo(root)
    log = root / "ws-out.log"
    inp = workstream_input([
        logged("prepare", log, "true"),
        {**logged("slow", log, "sleep 2"), "depends_on": ["prepare"]},
        {**logged("check", log, "true"), "depends_on": ["slow"]},
    ], repo)
    worker = WorkerProcess(server.address, tq, home)
    try:
        handle = await start_workstream(client, tq, inp)
        await eventually(lambda: asyncio.sleep(0, any(
            li.startswith("start slow") for li in lines(log))), "the slow step", 60)
        fault_line = len(lines(log))
        fault = time.monotonic()
        restart = await asyncio.to_thread(server.restart, 4.0)
        progress = await wait_new_line(log, len(lines(log)))
        status, att, state = await finish_workstream(handle)
    finally:
        worker.stop()
    noticeable = max(restart, fault + SHELL_HEARTBEAT_TIMEOUT.total_seconds())
    return figures(restart, progress, noticeable, reruns(log, fault_line), [],
                   handoff_duplicates(state, handle.id, len(att)), status, "succeeded",
                   lost=att["slow"].infra_retries > 0,
                   git_status_clean=is_clean(Path(state["workspace"])),
                   infra_retries=att["slow"].infra_retries,
                   failed_attempts=att["slow"].failed_attempts, max_attempts=1)


async def run(**_: Any) -> dict[str, Any]:
    """Every scenario on one dev server of its own; the document of the module
    docstring, with ``targets`` for bench/run_all.py."""
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        root = Path(tmp)
        server = RestartableServer(root / "server")
        server.start()
        try:
            client = await server.client()
            scenarios = await sdlc_scenarios(server, client, root)
            scenarios["workstream_worker_killed_mid_step"] = await workstream_killed(
                server, client, root)
            scenarios["workstream_server_restart_mid_step"] = await workstream_outage(
                server, client, root)
        finally:
            server.kill()
    ok = all(s["succeeded"] and s["orphans"] == 0 and s["duplicates"] == 0
             for s in scenarios.values())
    worst = max(s["recovery_s"] for s in scenarios.values() if s["recovery_s"] is not None)
    return {
        "benchmark": "faults", "scenarios": scenarios,
        "targets": [
            {"name": "every fault scenario ends in its success state, 0 orphans, "
                     "0 duplicate side effects", "target": True, "measured": ok, "met": ok},
            {"name": f"recovery <= {RECOVERY_TARGET_S:g} s after the loss can be noticed "
                     "(heartbeating steps)", "target": RECOVERY_TARGET_S,
             "measured": worst, "met": worst <= RECOVERY_TARGET_S},
        ],
    }


def main() -> None:
    """Print the document (progress and server output go to stderr)."""
    argparse.ArgumentParser(description="Fault injection: kill -9 of workers and dev-server "
                            "restarts mid-activity and mid-gate; prints one JSON document"
                            ).parse_args()
    print(json.dumps(asyncio.run(run()), indent=2))
    exit_process(0)


if __name__ == "__main__":
    main()
