"""Benchmark: the learning loop's time without the student, split by stage, on SQLite.

``python bench/learning_loop.py [--students N] [--p P]`` runs LearningLoopWorkflow
for N simulated students (default 1) on the fractions curriculum on a dev server
of its own, with a SQLite database and the offline LLM provider. The simulated
student answers as soon as a test opens. Each round (Assign -> Test -> Diagnose
-> Remediate -> Model, one workflow run) is read from its history, in ms:

* assign: run started -> the first item pick scheduled (loads the KCs in round 1).
  On the dev server nearly all of it (about 1 s) is the server's delay before the
  first workflow task of a continued-as-new run (its timer queue), not our code;
* test: item pick scheduled -> test row written (with item generation when short);
* student: test written -> answers accepted, the student's own time, EXCLUDED;
* diagnose: answers accepted -> responses scored;
* remediate, model: their activities, scheduled -> completed;
* continue_as_new: last activity completed -> the run's last event;
* loop: the run's wall time minus the student's time. The seed's budget is 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from temporalio.api.enums.v1 import EventType

from cli.learning import learning_config, start_learning
from settings import Settings
from simulation.student import SimulatedStudent
from temporal_plumbing.environments import start_local_env
from worker import make_worker

CURRICULUM = Path(__file__).resolve().parents[1] / "curricula" / "fractions.yaml"
BUDGET_MS = 30_000
STAGES = ["assign", "test", "diagnose", "remediate", "model", "continue_as_new"]


def _ms(event: Any) -> float:
    return event.event_time.ToDatetime().timestamp() * 1000


def round_figures(events: list[Any]) -> dict[str, float]:
    """Stage times (ms) of one run (one round) from its history events."""
    scheduled: dict[int, tuple[str, float]] = {}
    done: dict[str, tuple[float, float]] = {}  # activity type -> (scheduled, completed)
    accepted = None
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, _ms(event))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name, at = scheduled[event.activity_task_completed_event_attributes
                                 .scheduled_event_id]
            done.setdefault(name, (at, _ms(event)))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED and accepted is None \
                and "learning_open_test" in done:
            accepted = _ms(event)
    start, end = _ms(events[0]), _ms(events[-1])
    opened = done["learning_open_test"][1]
    student = (accepted or opened) - opened
    last = max(c for _, c in done.values())
    figures = {
        "assign": done["learning_pick_items"][0] - start,
        "test": opened - done["learning_pick_items"][0],
        "diagnose": done["learning_close_test"][1] - (accepted or opened),
        "remediate": (done["learning_remediate"][1] - done["learning_remediate"][0]
                      if "learning_remediate" in done else 0.0),
        "model": done["learning_update_mastery"][1] - done["learning_update_mastery"][0],
        "continue_as_new": end - last,
    }
    figures["loop"] = (end - start) - student
    figures["student_excluded"] = student
    return figures


async def run_histories(client: Any, workflow_id: str, first_run: str) -> list[list[Any]]:
    """The event lists of every run of a loop, following continue-as-new."""
    runs = []
    run_id: str | None = first_run
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        events = list(history.events)
        runs.append(events)
        last = events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
                  else None)
    return runs


def summary(values: list[float]) -> dict[str, float]:
    """Median and max, rounded to 0.1 ms."""
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}


async def run(students: int = 1, p: float = 0.8, max_rounds: int = 15) -> dict[str, Any]:
    """Run the benchmark; returns the JSON figures."""
    from activities.curriculum import import_curriculum_file
    from activities.learning_db import LearningDatabase

    env = await start_local_env()
    rounds: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'learning.db'}"
            db = LearningDatabase(url)
            spec, _ = import_curriculum_file(db, CURRICULUM)
            db.dispose()
            settings = Settings(orchestrator_home=Path(tmp) / "home", database_url=url,
                                temporal_task_queue="bench-learning")
            async with make_worker(env.client, settings):
                for n in range(students):
                    config = learning_config(settings, student=f"bench-{n}",
                                             curriculum=spec.id, max_rounds=max_rounds)
                    handle = await start_learning(env.client, settings, config)
                    student = SimulatedStudent(env.client.get_workflow_handle(handle.id), url,
                                               p=p, seed=n)
                    await student.run(spec.id, poll=0.002)
                    await env.client.get_workflow_handle(handle.id).result()
                    for events in await run_histories(env.client, handle.id,
                                                      handle.result_run_id or ""):
                        rounds.append(round_figures(events))
    finally:
        await env.shutdown()
    loop = summary([r["loop"] for r in rounds])
    return {
        "benchmark": "learning_loop",
        "database": "sqlite",
        "llm_provider": "offline",
        "students": students,
        "rounds": len(rounds),
        "loop_ms_excluding_student": loop,
        "stage_ms": {stage: summary([r[stage] for r in rounds]) for stage in STAGES},
        "student_ms_excluded": summary([r["student_excluded"] for r in rounds]),
        "budget_ms": BUDGET_MS,
        "within_budget": loop["max"] < BUDGET_MS,
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1)
    parser.add_argument("--p", type=float, default=0.8, help="P(right answer) of the student")
    parser.add_argument("--max-rounds", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.students, args.p, args.max_rounds)), indent=2))


if __name__ == "__main__":
    main()
