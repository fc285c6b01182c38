"""Benchmark: the four engine workloads on Temporal, on the stock and the tuned setup.

``python -m bench.engine [--setup tuned|stock] [--steps N]`` prints JSON:

* ``step_ms``: ms per no-op step, a workflow running ``steps`` steps in a row,
  as activities and as local activities (wall time start -> result / steps);
* ``workflows_per_s``: 200 one-step workflows started at once, count / seconds
  from the first start to the last result;
* ``gate_ms``: approval sent (the CLI's validated update) -> workflow result,
  median over ``gates`` runs of a workflow waiting at a GatedWorkflow gate;
* ``recovery``: a worker in its own process runs a workflow of 0.5 s steps that
  heartbeat; it is killed with SIGKILL in the middle of a step and a new worker
  process is started at once. ``restart_to_next_step_s``: new worker spawned ->
  the next step starts; ``finished_steps_rerun``: steps that had finished
  before the kill and ran again (each run's journal says);
* ``memory``: the worker process's peak RSS while 200 workflows run and its RSS
  growth across 5 repeated batches (MB, /proc/self/status VmRSS).

``stock`` is the dev server without flags and a worker with the SDK's defaults;
``tuned`` is temporal_plumbing's dev-server tuning flags and worker_options() and
cli.common.workflow_start_options().
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from models.common import GateDecision, Verdict
    from workflows.gates import GatedWorkflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_TIMEOUT = timedelta(seconds=10)
# The recovery workload's steps stand for long activities: they heartbeat, so a
# dead worker is noticed after the heartbeat timeout, and retry at once.
JOURNAL_STEP_SECONDS = 0.5
JOURNAL_HEARTBEAT_TIMEOUT = timedelta(seconds=1)
JOURNAL_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=5)


class StepsInput(BaseModel):
    """``steps`` no-op steps in a row, as local activities when ``local``."""
    steps: int
    local: bool = False


class JournalInput(BaseModel):
    """``steps`` journaled steps; each appends ``start i t`` and ``done i t`` to ``journal``."""
    steps: int
    journal: str


class JournalStep(BaseModel):
    """One journaled step."""
    journal: str
    index: int


@activity.defn(name="bench_noop")
async def noop_step(index: int) -> int:
    """Does nothing; returns its input."""
    return index


@activity.defn(name="bench_journal_step")
async def journal_step(step: JournalStep) -> int:
    """Journal the start, heartbeat for JOURNAL_STEP_SECONDS, journal the end."""
    with open(step.journal, "a") as f:
        f.write(f"start {step.index} {time.time()}\n")
    end = time.monotonic() + JOURNAL_STEP_SECONDS
    while time.monotonic() < end:
        activity.heartbeat()
        await asyncio.sleep(0.1)
    with open(step.journal, "a") as f:
        f.write(f"done {step.index} {time.time()}\n")
    return step.index


@workflow.defn(name="BenchStepsWorkflow")
class StepsWorkflow:
    """Runs no-op steps in a row."""

    @workflow.run
    async def run(self, arg: StepsInput) -> int:
        for i in range(arg.steps):
            if arg.local:
                await workflow.execute_local_activity(
                    noop_step, i, start_to_close_timeout=STEP_TIMEOUT)
            else:
                await workflow.execute_activity(noop_step, i, start_to_close_timeout=STEP_TIMEOUT)
        return arg.steps


@workflow.defn(name="BenchJournalWorkflow")
class JournalWorkflow:
    """Runs journaled, heartbeating steps in a row (the recovery workload)."""

    @workflow.run
    async def run(self, arg: JournalInput) -> int:
        for i in range(arg.steps):
            await workflow.execute_activity(
                journal_step, JournalStep(journal=arg.journal, index=i),
                start_to_close_timeout=STEP_TIMEOUT, heartbeat_timeout=JOURNAL_HEARTBEAT_TIMEOUT,
                retry_policy=JOURNAL_RETRY)
        return arg.steps


@workflow.defn(name="BenchGateWorkflow")
class GateWorkflow(GatedWorkflow):
    """Waits at one gate, then ends."""

    @workflow.run
    async def run(self) -> str:
        decision = await self.wait_for_decision("approval")
        return decision.verdict.value if decision else "expired"


WORKFLOWS = [StepsWorkflow, JournalWorkflow, GateWorkflow]
ACTIVITIES = [noop_step, journal_step]


def bench_worker(client: Any, task_queue: str, tuned: bool) -> Worker:
    """A worker of the bench workflows; tuned: worker_options(), else SDK defaults."""
    from temporal_plumbing.workers import worker_options

    options = worker_options() if tuned else {}
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES,
                  **options)


def start_options(tuned: bool) -> dict[str, Any]:
    """Workflow start options: ours when tuned, the server's defaults otherwise."""
    from cli.common import workflow_start_options

    return workflow_start_options() if tuned else {}


def rss_mb() -> float:
    """This process's resident set size now, MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def step_ms(client: Any, tq: str, tuned: bool, steps: int, local: bool,
                  runs: int = 3) -> float:
    """Median over ``runs`` of ms per step of one workflow of ``steps`` steps."""
    per_step = []
    for _ in range(runs):
        begin = time.perf_counter()
        await client.execute_workflow(StepsWorkflow.run, StepsInput(steps=steps, local=local),
                                      id=f"steps-{uuid.uuid4()}", task_queue=tq,
                                      **start_options(tuned))
        per_step.append((time.perf_counter() - begin) * 1000 / steps)
    return round(statistics.median(per_step), 2)


async def batch(client: Any, tq: str, tuned: bool, count: int) -> float:
    """Start ``count`` one-step workflows at once, wait for all; returns workflows/s."""
    begin = time.perf_counter()
    handles = await asyncio.gather(*(
        client.start_workflow(StepsWorkflow.run, StepsInput(steps=1),
                              id=f"one-{uuid.uuid4()}", task_queue=tq, **start_options(tuned))
        for _ in range(count)))
    await asyncio.gather(*(h.result() for h in handles))
    return count / (time.perf_counter() - begin)


async def throughput_and_memory(client: Any, tq: str, tuned: bool, count: int = 200,
                                batches: int = 5) -> dict[str, Any]:
    """Workflows/s of the first batch of ``count``; peak RSS during it; RSS growth
    from after batch 1 to after batch ``batches``."""
    peak = rss_mb()
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    rates = [await batch(client, tq, tuned, count)]
    sampling = False
    await sampler
    gc.collect()
    after = [rss_mb()]
    for _ in range(batches - 1):
        rates.append(await batch(client, tq, tuned, count))
        gc.collect()
        after.append(rss_mb())
    return {
        "workflows_per_s": round(rates[0], 1),
        "workflows_per_s_best_of_batches": round(max(rates), 1),
        "memory": {"peak_rss_mb_200_workflows": round(peak, 1),
                   "rss_after_each_batch_mb": [round(x, 1) for x in after],
                   "rss_growth_mb_over_batches": round(after[-1] - after[0], 1)},
    }


async def gate_ms(client: Any, tq: str, tuned: bool, runs: int = 10) -> float:
    """Median ms from the approval update sent to the workflow's result."""
    times = []
    for _ in range(runs):
        handle = await client.start_workflow(GateWorkflow.run, id=f"gate-{uuid.uuid4()}",
                                             task_queue=tq, **start_options(tuned))
        while not await handle.query(GateWorkflow.pending_gates):
            await asyncio.sleep(0.005)
        begin = time.perf_counter()
        await handle.execute_update(GateWorkflow.decide_gate, GateDecision(
            gate="approval", verdict=Verdict.APPROVE, actor="bench"))
        await handle.result()
        times.append((time.perf_counter() - begin) * 1000)
    return round(statistics.median(times), 2)


def spawn_worker(address: str, tq: str, tuned: bool) -> subprocess.Popen[bytes]:
    """A bench worker in its own process (``python -m bench.engine --worker``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.engine", "--worker", address, tq,
         "tuned" if tuned else "stock"], cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_journal(path: Path) -> list[tuple[str, int, float]]:
    """(event, step, unix time) lines of a journal."""
    if not path.exists():
        return []
    return [(e, int(i), float(t)) for e, i, t in
            (line.split() for line in path.read_text().splitlines() if line.strip())]


async def recovery(client: Any, tq: str, tuned: bool, runs: int = 3,
                   steps: int = 6, kill_in_step: int = 2) -> dict[str, Any]:
    """Kill -9 the worker halfway through step ``kill_in_step``; see the module docstring."""
    address = client.service_client.config.target_host
    restart_to_next, rerun = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run_no in range(runs):
            journal = Path(tmp) / f"journal-{run_no}"
            first = spawn_worker(address, tq, tuned)
            second = None
            try:
                handle = await client.start_workflow(
                    JournalWorkflow.run, JournalInput(steps=steps, journal=str(journal)),
                    id=f"recover-{uuid.uuid4()}", task_queue=tq, **start_options(tuned))
                deadline = time.monotonic() + 60
                while not any(e == "start" and i == kill_in_step
                              for e, i, _ in read_journal(journal)):
                    if time.monotonic() > deadline or first.poll() is not None:
                        raise RuntimeError(f"the bench worker never reached step {kill_in_step}")
                    await asyncio.sleep(0.005)
                await asyncio.sleep(JOURNAL_STEP_SECONDS / 2)
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()
                killed_at = time.time()
                before = read_journal(journal)
                finished = {i for e, i, _ in before if e == "done"}
                restart = time.time()
                second = spawn_worker(address, tq, tuned)
                await asyncio.wait_for(handle.result(), timeout=120)
            finally:
                for proc in (first, second):
                    if proc is not None and proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
            after = [(e, i, t) for e, i, t in read_journal(journal) if t > killed_at]
            next_start = min(t for e, _, t in after if e == "start")
            restart_to_next.append(next_start - restart)
            rerun.append(sum(1 for e, i, _ in after if e == "start" and i in finished))
    return {"restart_to_next_step_s": [round(x, 2) for x in restart_to_next],
            "restart_to_next_step_s_max": round(max(restart_to_next), 2),
            "finished_steps_rerun": rerun}


async def run(setup: str = "tuned", steps: int = 50, gates: int = 10,
              recoveries: int = 3, **_: Any) -> dict[str, Any]:
    """All four workloads plus memory on a dev server of its own with a file database.

    Args:
        setup: ``tuned`` or ``stock`` (see the module docstring).
        steps: steps of the per-step workflow.
        gates: gate round trips measured.
        recoveries: kill-the-worker runs.
    """
    from temporal_plumbing.environments import start_local_env

    tuned = setup == "tuned"
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_local_env(tuned=tuned,
                                    dev_server_database_filename=str(Path(tmp) / "t.db"))
        try:
            client = env.client
            tq = f"bench-engine-{uuid.uuid4().hex[:8]}"
            async with bench_worker(client, tq, tuned):
                await step_ms(client, tq, tuned, 5, False, runs=1)  # warm up
                result: dict[str, Any] = {
                    "engine": "temporal", "setup": setup,
                    "step_ms_activity": await step_ms(client, tq, tuned, steps, False),
                    "step_ms_local_activity": await step_ms(client, tq, tuned, steps, True),
                    "gate_ms": await gate_ms(client, tq, tuned, gates),
                    **await throughput_and_memory(client, tq, tuned),
                }
            result["recovery"] = await recovery(client, f"{tq}-recovery", tuned, recoveries)
        finally:
            await env.shutdown()
    return result


async def serve(address: str, tq: str, tuned: bool) -> None:
    """The recovery workload's worker process: run until killed."""
    from temporal_plumbing.client import connect_client

    client = await connect_client(target_host=address)
    async with bench_worker(client, tq, tuned):
        await asyncio.Event().wait()


def main() -> None:
    """Command-line entry point."""
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        asyncio.run(serve(sys.argv[2], sys.argv[3], sys.argv[4] == "tuned"))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", choices=["tuned", "stock"], default="tuned")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--recoveries", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.setup, args.steps, recoveries=args.recoveries)),
                     indent=2))


if __name__ == "__main__":
    main()
