"""Benchmark: AnalysisWorkflow end to end with the offline LLM provider given an
artificial latency L per call, gates approved as soon as they open.

``python bench/analysis.py [--runs N] [--latency SECONDS] [--analysts 5]`` prints JSON
read from each run's history (median and p95 over the runs):

* ``analyst_phase_over_latency``: wall time of the analyst phase (first analyst
  call scheduled -> last one completed) divided by L. The analysts run in
  parallel, so the goal is at most 1.1 with 5 analysts (5 x L if sequential).
* ``overhead_per_llm_call_ms``: per LLM call, the time from the activity being
  scheduled to its completion being recorded, minus the time the provider spent
  inside the call (its ``latency_ms``): what orchestration adds to each call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from temporalio.api.enums.v1 import EventType

from cli.analysis import analysis_request, start_analysis
from models.common import GateDecision, Verdict
from settings import Settings
from temporal_plumbing.environments import start_local_env
from worker import make_worker
from workflows.analysis import AnalysisWorkflow

PROBLEM = ("Should our invoicing product enter the German market next year? Competitors are "
           "strong and the market and its growth depend on a regulation change.")


def summary(values: list[float]) -> dict[str, float]:
    """Median and p95 (nearest rank) of ``values``, rounded to 0.001."""
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {"median": round(statistics.median(ordered), 3), "p95": round(p95, 3)}


def payload(p: Any) -> Any:
    return json.loads(p.payloads[0].data) if p.payloads else None


def history_figures(events: list[Any]) -> dict[str, Any]:
    """Analyst phase wall time (ms) and per-LLM-call overheads (ms) of one history."""
    def ms(event: Any) -> float:
        return event.event_time.ToDatetime().timestamp() * 1000

    scheduled: dict[int, tuple[float, str]] = {}
    analyst_start, analyst_end = float("inf"), 0.0
    overheads: list[float] = []
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "llm_complete":
                phase = payload(attrs.input)["phase"]
                scheduled[event.event_id] = (ms(event), phase)
                if phase == "analysis_analyst":
                    analyst_start = min(analyst_start, ms(event))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            if attrs.scheduled_event_id in scheduled:
                at, phase = scheduled[attrs.scheduled_event_id]
                inside = payload(attrs.result)["usage"]["latency_ms"]
                overheads.append(ms(event) - at - inside)
                if phase == "analysis_analyst":
                    analyst_end = max(analyst_end, ms(event))
    return {"analyst_ms": analyst_end - analyst_start, "overheads": overheads,
            "wall_ms": ms(events[-1]) - ms(events[0])}


async def approve_gates(handle: Any) -> None:
    """Approve every gate as it opens (answering clarifying questions) until the end."""
    while True:
        desc = await handle.describe()
        if desc.status.name != "RUNNING":
            return
        for gate in await handle.query(AnalysisWorkflow.pending_gates):
            content = {"clarify": '{"answers": ["market entry"]}', "budget": "1000"}.get(
                gate.gate)
            await handle.execute_update(AnalysisWorkflow.decide_gate, GateDecision(
                gate=gate.gate, verdict=Verdict.APPROVE, actor="bench", content=content))
        await asyncio.sleep(0.005)


async def run(runs: int = 3, latency: float = 0.5, analysts: int = 5) -> dict[str, Any]:
    """Run the benchmark on a dev server of its own; returns the JSON figures."""
    env = await start_local_env()
    figures = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(_env_file=None, orchestrator_home=Path(tmp),
                                temporal_task_queue="bench-analysis", llm_provider="offline",
                                llm_offline_latency=timedelta(seconds=latency),
                                analysis_concurrency=analysts)
            async with make_worker(env.client, settings):
                for i in range(runs):
                    req = analysis_request(settings, problem=PROBLEM, title=f"bench {i}",
                                           budget_usd=None)
                    names = list(req.catalogue.analysts)[:analysts]
                    for synth in req.catalogue.synthesizers.values():
                        synth.analysts = names  # every synthesizer runs the same N analysts
                    handle = await start_analysis(env.client, settings, req,
                                                  slug=f"bench-{i}-{id(req)}")
                    await approve_gates(handle)
                    await handle.result()
                    figures.append(history_figures(list((await handle.fetch_history()).events)))
    finally:
        await env.shutdown()
    return {
        "benchmark": "analysis",
        "server": "dev server, tuned",
        "runs": runs,
        "latency_s": latency,
        "analysts": analysts,
        "analyst_phase_over_latency": summary([f["analyst_ms"] / (latency * 1000)
                                               for f in figures]),
        "goal_analyst_phase_over_latency": 1.1,
        "llm_calls_per_run": len(figures[0]["overheads"]),
        "overhead_per_llm_call_ms": summary([o for f in figures for o in f["overheads"]]),
        "wall_s": summary([f["wall_ms"] / 1000 for f in figures]),
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per LLM call")
    parser.add_argument("--analysts", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.runs, args.latency, args.analysts)), indent=2))


if __name__ == "__main__":
    main()
