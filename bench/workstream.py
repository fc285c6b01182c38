"""Benchmark: WorkstreamWorkflow scheduling no-op steps on the tuned dev server.

``python bench/workstream.py [--chain N] [--fanout N] [--max-parallel N]`` prints JSON
for two runs of ``noop`` steps (a tool without a breaker, so no breaker round trips):

* ``chain``: N steps (default 500), each depending on the previous one, max_parallel 1;
* ``fanout``: one root, N steps (default 100) depending on it, max_parallel 20.

Figures per run, read from its histories (event times; a run that continued as new
is read through all of its runs):

* ``wall_s``: workflow started -> completed (the first run's start to the last run's end);
* ``steps_per_s``: steps / wall;
* ``step_activity_ms``: mean time inside the no-op step activity;
* ``handoff_ms``: mean time inside the handoff-commit activity (one git commit per step);
* ``overhead_ms_per_step``: wall / steps - mean step activity time: everything the
  engine adds per step (scheduling, workflow tasks, routing, the handoff commit);
* ``history_events``: the history length of all its runs together;
* ``runs``: how many runs it took (it continues as new at its history budget, 5,000
  events, or when Temporal suggests it);
* ``max_run_events``: the longest run's history length.

History size: a step costs about 12 history events (two activities, each with its
workflow task), so a 500-step chain is ~6,000 events: the run continues as new once
or twice (run events, step attempts and scheduling decisions are kept in workflow
state and carried over). The shared BreakerWorkflow continues as new every 500 updates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from temporalio.api.enums.v1 import EventType

from cli.workstream import start_workstream
from models.workstream import RouterConfig, WorkstreamInput, WorkstreamSpec
from settings import Settings
from temporal_plumbing.environments import start_local_env
from temporal_plumbing.runtime import exit_process
from worker import make_worker

ROUTER = {"tools": {"noop": {"adapter": "noop", "breaker": None}},
          "routes": {"noop": {"strategy": "fixed", "tools": ["noop"]}}}


def chain_spec(n: int) -> dict[str, Any]:
    """N no-op steps, each depending on the one before."""
    return {"work_item": f"bench-chain-{uuid.uuid4().hex[:6]}", "max_parallel": 1,
            "steps": [{"id": f"s{i:04d}", "kind": "noop",
                       "depends_on": [f"s{i - 1:04d}"] if i else []} for i in range(n)]}


def fanout_spec(n: int, max_parallel: int) -> dict[str, Any]:
    """A root and N no-op steps that depend only on it."""
    return {"work_item": f"bench-fanout-{uuid.uuid4().hex[:6]}", "max_parallel": max_parallel,
            "steps": [{"id": "root", "kind": "noop"}]
            + [{"id": f"f{i:03d}", "kind": "noop", "depends_on": ["root"]} for i in range(n)]}


def figures(runs: list[list[Any]]) -> dict[str, float]:
    """Wall time and mean activity times (ms) by activity type, from the history
    events of each run of one workflow (first run first)."""
    def ms(event: Any) -> float:
        return event.event_time.ToDatetime().timestamp() * 1000

    totals: dict[str, list[float]] = {}
    for events in runs:  # event IDs are per run
        scheduled: dict[int, str] = {}
        started: dict[int, tuple[str, float]] = {}
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[event.event_id] = (
                    event.activity_task_scheduled_event_attributes.activity_type.name)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attrs = event.activity_task_started_event_attributes
                started[event.event_id] = (scheduled[attrs.scheduled_event_id], ms(event))
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attrs = event.activity_task_completed_event_attributes
                name, at = started[attrs.started_event_id]
                totals.setdefault(name, []).append(ms(event) - at)
    means = {name: sum(v) / len(v) for name, v in totals.items()}
    return {"wall_ms": ms(runs[-1][-1]) - ms(runs[0][0]), "means": means}  # type: ignore[dict-item]


async def histories(env: Any, handle: Any) -> list[list[Any]]:
    """The history events of every run of ``handle``'s workflow, first run first
    (following each run's continued-as-new event)."""
    runs, run_id = [], handle.result_run_id
    while run_id:
        history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs.append(list(history.events))
        run_id = (history.events[-1].workflow_execution_continued_as_new_event_attributes
                  .new_execution_run_id)
    return runs


async def one_run(env: Any, settings: Settings, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec to the end and return its figures."""
    inp = WorkstreamInput(spec=WorkstreamSpec.model_validate(spec),
                          router=RouterConfig.model_validate(ROUTER))
    handle = await start_workstream(env.client, settings, inp)
    await handle.result()
    runs = await histories(env, handle)
    f = figures(runs)
    steps = len(spec["steps"])
    step_ms = f["means"].get("ws_run_noop", 0.0)
    wall_ms = f["wall_ms"]
    return {"steps": steps, "max_parallel": spec["max_parallel"],
            "wall_s": round(wall_ms / 1000, 2),
            "steps_per_s": round(steps / (wall_ms / 1000), 1),
            "step_activity_ms": round(step_ms, 2),
            "handoff_ms": round(f["means"].get("ws_commit_handoff", 0.0), 2),
            "overhead_ms_per_step": round(wall_ms / steps - step_ms, 2),
            "history_events": sum(len(r) for r in runs), "runs": len(runs),
            "max_run_events": max(len(r) for r in runs)}


async def run(chain: int = 500, fanout: int = 100, max_parallel: int = 20) -> dict[str, Any]:
    """Both scenarios on a fresh tuned dev server; returns the JSON document."""
    env = await start_local_env()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(orchestrator_home=Path(tmp) / "home",
                                temporal_task_queue=f"bench-{uuid.uuid4().hex[:6]}",
                                workstream_trust_spec_tools=True)  # ROUTER's noop tool
            async with make_worker(env.client, settings):
                return {
                    "benchmark": "workstream",
                    "chain": await one_run(env, settings, chain_spec(chain)),
                    "fanout": await one_run(env, settings, fanout_spec(fanout, max_parallel)),
                    "notes": "noop steps without a breaker; every step commits its handoff "
                             "artifact (handoff_ms); a run continues as new at 5,000 "
                             "history events (runs, max_run_events)",
                }
    finally:
        await env.shutdown()


def main() -> None:
    """Parse the arguments, run, print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=500)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--max-parallel", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.chain, args.fanout, args.max_parallel)), indent=2))
    exit_process(0)


if __name__ == "__main__":
    main()
