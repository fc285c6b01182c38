"""Benchmark: SdlcWorkflow to DONE with the offline agent and an automatic approver.

``python bench/sdlc.py [--runs N] [--stock]`` prints JSON: over N runs (default 20)
the median and p95 of the wall time, of the time inside activities, and of the
orchestration overhead per activity, all in ms, read from each run's history:

* wall: workflow started -> completed events;
* activities: sum of (completed - started) over activity tasks;
* gate: GATE_1 waiting (last activity completed -> update accepted), the
  approver's own reaction time, excluded from the overhead;
* overhead per activity: (wall - activities - gate) / activity count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from temporalio.api.enums.v1 import EventType

from cli.sdlc import feature_request, start_sdlc
from models.common import GateDecision, Verdict
from models.sdlc import GATE_1
from settings import Settings
from temporal_plumbing.environments import start_local_env
from worker import make_worker
from workflows.sdlc import SdlcWorkflow


def summary(values: list[float]) -> dict[str, float]:
    """Median and p95 (nearest rank) of ``values``, rounded to 0.01."""
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {"median": round(statistics.median(ordered), 2), "p95": round(p95, 2)}


def history_figures(events: list[Any]) -> dict[str, float]:
    """Wall, activity, gate times (ms) and activity count of one run's history events."""
    def ms(event: Any) -> float:
        return event.event_time.ToDatetime().timestamp() * 1000

    started: dict[int, float] = {}
    activity_ms = 0.0
    count = 0
    gate_ms = 0.0
    last_completed = ms(events[0])
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.event_id] = ms(event)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            activity_ms += ms(event) - started[attrs.started_event_id]
            count += 1
            last_completed = ms(event)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            gate_ms += ms(event) - last_completed
    wall = ms(events[-1]) - ms(events[0])
    return {"wall": wall, "activities": activity_ms, "gate": gate_ms, "count": count}


async def approve_when_open(handle: Any) -> None:
    """The automatic approver: approve GATE_1 as soon as it is open."""
    while not await handle.query(SdlcWorkflow.pending_gates):
        await asyncio.sleep(0.002)
    await handle.execute_update(SdlcWorkflow.decide_gate, GateDecision(
        gate=GATE_1, verdict=Verdict.APPROVE, actor="bench"))


def make_repo(root: Path) -> Path:
    """A git repository with one commit on main."""
    repo = root / "bench-repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"],
                 ["-c", "user.name=B", "-c", "user.email=b@x", "commit", "-q",
                  "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


async def run(runs: int = 20, tuned: bool = True) -> dict[str, Any]:
    """Run the benchmark on a dev server of its own; returns the JSON figures."""
    env = await start_local_env(tuned=tuned)
    figures: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            repo = make_repo(Path(tmp))
            settings = Settings(orchestrator_home=Path(tmp) / "home",
                                temporal_task_queue="bench-sdlc")
            async with make_worker(env.client, settings):
                begin = time.perf_counter()
                for i in range(runs):
                    handle = await start_sdlc(env.client, settings, feature_request(
                        settings, title=f"Feature {i}", description="Benchmark feature.",
                        repo_path=str(repo), agent="offline"))
                    await approve_when_open(handle)
                    await handle.result()
                    history = await handle.fetch_history()
                    figures.append(history_figures(list(history.events)))
                elapsed = time.perf_counter() - begin
    finally:
        await env.shutdown()
    overhead = [(f["wall"] - f["activities"] - f["gate"]) / f["count"] for f in figures]
    return {
        "benchmark": "sdlc",
        "server": "dev server, tuned" if tuned else "dev server, stock",
        "runs": runs,
        "activities_per_run": int(statistics.median(f["count"] for f in figures)),
        "wall_ms": summary([f["wall"] for f in figures]),
        "activity_ms": summary([f["activities"] for f in figures]),
        "gate_wait_ms": summary([f["gate"] for f in figures]),
        "overhead_per_activity_ms": summary(overhead),
        "runs_per_second": round(runs / elapsed, 2),
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--stock", action="store_true", help="stock dev-server poll rates")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.runs, tuned=not args.stock)), indent=2))


if __name__ == "__main__":
    main()
